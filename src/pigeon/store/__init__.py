"""Persistence: the notification store and its SQL schema."""
