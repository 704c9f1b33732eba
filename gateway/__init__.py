"""Telegram Gateway: a Telegram bot behind a REST API."""

__version__ = "0.1.0"
