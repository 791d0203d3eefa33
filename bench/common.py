"""What the benchmarks share: the spoken questions, the app's lifecycle, result files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SENTENCES = [
    "How many pallets of bottled water are in the north warehouse?",
    "Which dock doors are open right now?",
    "When will the truck from Denver arrive?",
    "Please tell me the status of the morning delivery.",
    "How many trailers are parked at the south yard?",
    "What time does the night shift start?",
    "Are there any delayed shipments this afternoon?",
    "Is the cold storage room at the right temperature?",
    "Who should I call about a broken pallet jack?",
    "Can you remind me where the spare batteries are kept?",
    "What should I do if a driver arrives early?",
    "How long does it take to unload a full trailer?",
]

# Company questions, each asked once per run (first-time: no cache hit), all answered by the
# read-only tools: loads, stock, equipment.
COMPANY_QUESTIONS = [
    "What is the status of load 427?",
    "How much rice do we have in the south warehouse?",
    "Is forklift FL-07 working?",
    "Where is load two hundred fifteen?",
    "Which trucks are available?",
    "How many cases of batteries are in the east warehouse?",
    "Is load 333 delayed?",
    "Which dock doors are open in the north warehouse?",
    "Do we have any coffee beans?",
    "When will load one hundred twenty arrive?",
    "Are any trailers in maintenance?",
    "How many drums of motor oil are in the west warehouse?",
    "Who is driving load 300?",
    "Is truck TRK-05 on route?",
    "How much sugar is in the north warehouse?",
]


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(1)
    raise TimeoutError(f"{url} did not become ready")


def config_with(overrides: list[str], path: Path) -> Path:
    """serve_config.yaml with the app's args changed by `overrides` ("llm.tools=false",
    "stt.provider=moonshine"; values parsed as YAML), written to `path`."""
    import yaml

    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    args = config["applications"][0]["args"]
    for item in overrides:
        dotted, _, value = item.partition("=")
        *parents, leaf = dotted.split(".")
        node = args
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def app_running(url: str | None, config: Path | None = None) -> Iterator[str]:
    """Use the app at `url`, or run `serve run` on `config` (default serve_config.yaml; env
    from scripts/env.sh)."""
    app = None
    if url is None:
        url = "http://127.0.0.1:8000"
        app = subprocess.Popen(
            [
                *(str(ROOT / ".venv/bin/serve"), "run", "--address", "local"),
                str(config or ROOT / "serve_config.yaml"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_ready(url)
        yield url
    finally:
        if app is not None:
            os.killpg(app.pid, signal.SIGTERM)
            app.wait(timeout=60)


def write_results(stem: str, md: str, raw: Any, out: Path = RESULTS) -> None:
    print(md)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stem}-{stamp}.md").write_text(md)
    (out / f"{stem}-{stamp}.json").write_text(json.dumps(raw, indent=1))
    print(f"wrote {out}/{stem}-{stamp}.md and .json")
