"""Prefect flows and tasks: orchestration only (when, in what order, retried how)."""
