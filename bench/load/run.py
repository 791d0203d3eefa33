"""Run one load scenario headless and summarize it (`scripts/load.sh`).

    scripts/load.sh SCENARIO [--minutes N | --seconds N] [--host URL] [--simulated]
                    [--sessions-url auto|proxy|ws://...] [--out DIR] [-- LOCUST ARGS...]

Prepares the speech once (bench/load/speech.py, in its own process), then runs locust
against a running app (default http://127.0.0.1:8000), or with `--simulated` against an app
it starts on simulated providers (as `scripts/bench.sh capacity` does: no model CPU, two
ingress replicas; stopped afterwards). CSV and HTML go to `--out` (artifacts/load/) as
`<scenario>-<time>_stats.csv` etc. Exit status: locust's (1 if any request failed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.load import speech
from bench.load.summary import summary

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("light", "medium", "heavy", "stress")  # the locustfile maps them to users


@contextlib.contextmanager
def simulated_app(ingress: int) -> Iterator[str]:
    from bench.capacity import app, simulated_config

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "serve_config.simulated.yaml"
        simulated_config(config, "socket", ingress_replicas=ingress)
        print(f"starting an app on simulated providers ({ingress} ingress replicas)", flush=True)
        with app(config, "socket") as url:
            yield url


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help="run time (default 2)")
    length.add_argument("--seconds", type=float, default=None, help="run time in seconds")
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="the app's HTTP URL")
    parser.add_argument("--sessions-url", default="auto", help="see the locustfile")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "load")
    parser.add_argument(
        "--simulated", action="store_true", help="start an app on simulated providers for the run"
    )
    parser.add_argument("--ingress", type=int, default=2, help="--simulated: ingress replicas")
    parser.add_argument("locust_args", nargs="*", help="after --: passed to locust")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes or 2)

    speech_dir = speech.default_dir()
    if not speech.is_current(speech_dir):
        print(f"preparing speech in {speech_dir}", flush=True)
        subprocess.run([sys.executable, "-m", "bench.load.speech", str(speech_dir)], check=True)

    prefix = args.out / f"{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    app = simulated_app(args.ingress) if args.simulated else contextlib.nullcontext(args.host)
    with app as host:
        command = [
            str(Path(sys.executable).with_name("locust")),
            *("-f", str(ROOT / "bench" / "load" / "locustfile.py")),
            *("--headless", "--only-summary", "--scenario", args.scenario),
            *("-t", f"{seconds:g}s", "--host", host),
            *("--csv", str(prefix), "--html", f"{prefix}.html"),
            *("--speech-dir", str(speech_dir), "--sessions-url", args.sessions_url),
            *args.locust_args,
        ]
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        before, start = _children_cpu_s(), time.monotonic()
        rc = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": path}).returncode
        load_cpu = 100 * (_children_cpu_s() - before) / (time.monotonic() - start)
    if Path(f"{prefix}_stats.csv").exists():
        print(f"\n## {args.scenario}, {seconds:g} s against {host}\n\n{summary(prefix)}")
        print(f"load generator CPU: {load_cpu:.0f}% of one core (locust runs on one)")
        print(f"\nfiles: {prefix}_stats.csv, {prefix}.html")
    return rc


if __name__ == "__main__":
    sys.exit(main())
