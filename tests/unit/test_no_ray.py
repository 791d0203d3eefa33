import subprocess
import sys

import pytest
import ray


def test_pipeline_imports_without_ray() -> None:
    code = (
        "import importlib, pkgutil, sys, pipeline, pipeline.providers\n"
        "for pkg in (pipeline, pipeline.providers):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "assert 'ray' not in sys.modules, 'pipeline imported ray'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_starting_ray_in_a_unit_test_fails() -> None:
    with pytest.raises(RuntimeError, match="must not start Ray"):
        ray.init()
