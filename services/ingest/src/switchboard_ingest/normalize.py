"""Moved to ``switchboard_common.normalize``: the conversation service normalizes identities an agent links
exactly as ingest normalizes the ones customers send."""

from switchboard_common.normalize import normalize_email, normalize_phone

__all__ = ["normalize_email", "normalize_phone"]
