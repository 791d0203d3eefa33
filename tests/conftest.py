"""Fixtures shared by the serve and e2e tests (a session-scoped real local Ray cluster)."""

from tests.serve_cluster import serve_app, with_api_keys

__all__ = ["serve_app", "with_api_keys"]
