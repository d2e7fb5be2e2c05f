"""Ingest: verifies and normalizes inbound messages, commits them (receipt + outbox row) in group commits,
and its outbox relay publishes them to ``messages.inbound``."""
