"""llama-cpp-python's `Llama` with saved states that leave out the logits matrix.

`Llama.save_state` copies `scores` (up to n_batch x n_vocab floats: 256 x 151,936 x 4 B =
155 MB for Qwen) into every state the prompt cache keeps, and `load_state` copies it back:
measured, that made each routing step pay a few hundred ms of memcpy, and a 1 GB cache
held six states. A restored state is always decoded again from at least its last token
before sampling (`_requires_eval`, see `Llama.generate`), so the saved logits are never
read; the KV data alone (~12 kB per token here) is what makes the prefix reusable.
Written against llama-cpp-python 0.3.x (pinned in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

import llama_cpp
import numpy as np
from llama_cpp import Llama, LlamaState


@contextlib.contextmanager
def without_extra_buffers() -> Iterator[None]:
    """Models loaded inside keep their weights in plain CPU buffers: no "extra buffer types"
    (weights repacked for AMX and friends). On a VM whose CPU reports AMX, llama.cpp 0.3.36's
    repacked path crashed the process on the first prompt longer than a batch; `Llama` has
    no argument for `use_extra_bufts`, so its default params are swapped while it loads."""
    import llama_cpp.llama_cpp as native  # what `Llama.__init__` calls

    default = native.llama_model_default_params

    def params() -> native.llama_model_params:
        p = default()
        p.use_extra_bufts = False
        return p

    native.llama_model_default_params = params
    try:
        yield
    finally:
        native.llama_model_default_params = default


class LeanStateLlama(Llama):
    def save_state(self) -> LlamaState:
        size = llama_cpp.llama_state_get_size(self._ctx.ctx)
        buffer = (ctypes.c_uint8 * int(size))()
        n_bytes = int(llama_cpp.llama_state_get_data(self._ctx.ctx, buffer, size))
        if n_bytes > int(size):
            raise RuntimeError("failed to copy the llama.cpp state")
        return LlamaState(
            scores=np.empty((0, self._n_vocab), dtype=np.single),
            input_ids=self.input_ids.copy(),
            n_tokens=self.n_tokens,
            llama_state=bytes(memoryview(buffer)[:n_bytes]),
            llama_state_size=n_bytes,
            seed=self._seed,
        )

    def load_state(self, state: LlamaState) -> None:
        self.input_ids = state.input_ids.copy()
        self.n_tokens = state.n_tokens
        self._requires_eval = True  # sampling waits for a fresh decode (logits not restored)
        self._seed = state.seed
        data = (ctypes.c_uint8 * state.llama_state_size).from_buffer_copy(state.llama_state)
        if llama_cpp.llama_state_set_data(self._ctx.ctx, data, state.llama_state_size) != (
            state.llama_state_size
        ):
            raise RuntimeError("failed to restore the llama.cpp state")
