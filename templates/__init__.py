"""Jinja2 message templates (data only; no logic beyond display)."""
