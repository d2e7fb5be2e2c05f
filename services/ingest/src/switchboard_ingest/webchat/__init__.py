"""The web chat / in-app channel: visitors' sessions and tokens, their messages through the group commit,
agents' replies on a resumable Server-Sent Events stream, and the embeddable widget page.

Kept free of imports: ``switchboard_ingest.models`` imports ``webchat.models`` so Alembic sees its tables.
"""
