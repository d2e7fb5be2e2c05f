"""Switchboard development stack."""
