"""Switchboard conversation service."""
