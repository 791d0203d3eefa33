"""The locustfile's scenarios (bench/load/locustfile.py), in a locust process of their own:
locust monkey-patches the process with gevent, so it is never imported here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.load.summary import read_stats, summary

ROOT = Path(__file__).resolve().parents[2]
LOCUST = [str(Path(sys.executable).with_name("locust")), "-f", "bench/load/locustfile.py"]


def test_a_scenario_refuses_users_given_beside_it() -> None:
    options = ["--headless", "--scenario", "heavy", "-u", "5", "--host", "http://127.0.0.1:9"]
    run = subprocess.run(
        [*LOCUST, *options],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "--scenario heavy means 100 users spawned at 10/s; drop -u/-r" in run.stderr


def test_the_summary_reads_locusts_csv(tmp_path: Path) -> None:
    head = (
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
        "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
        "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
    )
    (tmp_path / "run_stats.csv").write_text(
        f"{head}\n"
        "WS,turn,41,1,3300,3300,2000,30000,90000,1.3,0.03,3300,3300,3300,3300,3400,3500,3600,3600,30000,30000,30000\n"
        "WS,v2v,40,0,780,790,700,1200,90000,1.3,0.03,780,790,790,800,820,850,900,1000,1200,1200,1200\n"
        "WS,connect,8,0,20,20,10,40,0,0.2,0,20,20,20,20,30,40,40,40,40,40,40\n"
        "WS,stage:stt_ms,39,0,150,150,140,160,0,1.3,0,150,150,150,150,150,160,160,160,160,160,160\n"
        ",Aggregated,128,1,700,700,10,1200,0,1.5,0.03,700,780,790,790,800,820,850,900,1200,1200,1200\n"
    )
    (tmp_path / "run_failures.csv").write_text(
        "Method,Name,Error,Occurrences,First Seen,Last Seen\n"
        "WS,turn,TurnFailed('no response.done within 30 s'),1,0,0\n"
    )
    rows = read_stats(tmp_path / "run")
    assert [r.label for r in rows] == [
        "WS turn",
        "WS v2v",
        "WS connect",
        "WS stage:stt_ms",
        "Aggregated",
    ]
    assert rows[1].percentiles == {"50%": 780, "90%": 820, "95%": 850, "99%": 1000}
    text = summary(tmp_path / "run")
    assert (
        "requests 49 (voice turns, connects, HTTP; V2V and stage rows not counted), failures 1"
        in text
    )
    assert (
        "voice-to-voice P50 / P90 / P95 / P99 ms: 780 / 820 / 850 / 1000 (40 answered turns)"
        in text
    )
    assert "failure x1: WS turn: TurnFailed('no response.done within 30 s')" in text
