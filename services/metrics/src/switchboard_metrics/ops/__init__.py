"""The ops view of the system's health: every service's readiness, summarized in one answer."""
