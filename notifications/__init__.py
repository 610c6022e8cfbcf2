"""Render messages, deliver them through apprise, drain the outbox with retries."""
