"""Ingest: verifies and normalizes inbound messages and publishes them to ``messages.inbound``."""
