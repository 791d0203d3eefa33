"""Locust load tests: HTTP turns, WebSocket voice sessions, OpenAI routes (scripts/load.sh)."""
