"""Schedules from the constitution, serve/worker entry points, and the `wct` CLI."""
