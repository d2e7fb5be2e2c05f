"""Contracts shared by every Switchboard service."""
