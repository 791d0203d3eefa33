"""Unit tests run without Ray: starting it here is a bug, and this fixture makes it fail."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _forbid_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*_: object, **__: object) -> None:
        raise RuntimeError("unit tests must not start Ray; put this test under tests/serve")

    monkeypatch.setattr(ray, "init", refuse)
