from pathlib import Path

import pytest

from pipeline.config import SttModel
from pipeline.errors import ModelFileError
from pipeline.providers import model_files


def test_llm_gguf_is_assembled_once_and_verified(tmp_path: Path) -> None:
    path = model_files.llm_gguf(tmp_path)
    assert path.read_bytes()[:4] == b"GGUF"
    mtime = path.stat().st_mtime_ns
    assert model_files.llm_gguf(tmp_path) == path and path.stat().st_mtime_ns == mtime


def test_checksum_mismatch_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_files, "QWEN_GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelFileError, match="does not match the pinned"):
        model_files.llm_gguf(tmp_path)
    assert not list(tmp_path.glob("*.gguf"))  # nothing half-written left behind


def test_whisper_models_resolve(tmp_path: Path) -> None:
    assert (model_files.whisper_dir(SttModel.TINY_EN, tmp_path) / "model.bin").exists()
    base = model_files.whisper_dir(SttModel.BASE, tmp_path)
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in base.iterdir()}
