import subprocess
import sys
from pathlib import Path

import pytest
import ray

import pipeline


def test_every_pipeline_module_imports_without_ray() -> None:
    root = Path(pipeline.__file__).parent
    files = sorted(root.rglob("*.py"))
    modules = [
        ".".join(("pipeline", *f.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        for f in files
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'ray' not in sys.modules, 'pipeline imported ray'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    groups = {m.split(".")[1] for m in modules if m.count(".") >= 2}
    assert {"voice", "llm", "web", "providers", "tools", "cache", "store"} <= groups


def test_no_module_at_the_top_belongs_to_a_group() -> None:
    """The top of pipeline/ holds only the shared vocabulary, config, errors, metrics and
    the command line; everything else lives in its group."""
    root = Path(pipeline.__file__).parent
    top = {f.stem for f in root.glob("*.py")}
    assert top == {"__init__", "types", "config", "errors", "metrics", "cli"}


def test_the_voice_path_imports_neither_the_store_nor_the_tools() -> None:
    """Domain types come from pipeline/types.py, so the session loop and the stream helpers
    do not drag in asyncpg, the store or the tool definitions."""
    code = (
        "import sys, pipeline.voice.session, pipeline.voice.turn, pipeline.llm.wire\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('pipeline.store', 'pipeline.tools',"
        " 'asyncpg')))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_starting_ray_in_a_unit_test_fails() -> None:
    with pytest.raises(RuntimeError, match="must not start Ray"):
        ray.init()
