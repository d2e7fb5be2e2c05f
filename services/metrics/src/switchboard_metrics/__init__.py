"""Switchboard metrics service."""
