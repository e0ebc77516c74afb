"""Pigeon: event-driven notification service."""

__version__ = "0.1.0"
