"""Live batching settings for deployments that use @serve.batch."""

from __future__ import annotations

from typing import Any

from pipeline.config import BatchConfig


def apply_batch_config(batched: Any, user_config: dict[str, Any]) -> None:
    """`batched` is the @serve.batch-wrapped method; Serve calls this from `reconfigure`."""
    cfg = BatchConfig(**user_config)
    batched.set_max_batch_size(cfg.max_batch_size)
    batched.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
