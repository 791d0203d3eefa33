"""The API contract: schemathesis (`--checks all`) against the deployed app finds nothing.

It reads /openapi.json, sends what the document allows and what it does not, and checks each
answer: status and content type documented, body matching its schema (the error envelope
too, SSE events one by one), schema-valid requests accepted and invalid ones refused, no 5xx,
other methods 405 with `Allow`, auth enforced where the document says so.
Settings (fixed seed, examples per operation, real speech for audio bodies) are in
tests/serve/contract.toml and contract_hooks.py; positive cases reach the real models.
"""

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.serve_cluster import BIN, ROOT, ServeApp
from tests.speech import QUESTIONS, speech_wav

pytestmark = pytest.mark.serve
CONFIG = ROOT / "tests" / "serve" / "contract.toml"
CONVERSATION = "contract-conversation"  # contract.toml's dictionary: one that exists


def run_schemathesis(app: ServeApp, workdir: Path, *args: str) -> str:
    """`st run` with the suite's settings and `--checks all`; its output."""
    command = [
        *(str(BIN / "st"), "--config-file", str(CONFIG), "run", f"{app.url}/openapi.json"),
        *("--checks", "all", "--no-color", "--report", "junit,har", "--report-dir", str(workdir)),
        *args,
    ]
    done = subprocess.run(
        command,
        cwd=workdir,  # schemathesis and hypothesis keep state in the working directory
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # for the hooks module
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "No issues found" in output, output[-20_000:]
    return output


def exchanges(workdir: Path) -> list[dict[str, Any]]:
    """The requests schemathesis sent and the answers, from its HAR report."""
    (har,) = workdir.glob("har-*.json")
    entries: list[dict[str, Any]] = json.loads(har.read_text())["log"]["entries"]
    return entries


def route(url: str, paths: set[str]) -> str:
    path = urlsplit(url).path
    if path.startswith("/v1/conversations/"):
        return "/v1/conversations/{conversation_id}"
    return path if path in paths else "?"


@contextlib.contextmanager
def the_conversation(app: ServeApp, headers: dict[str, str]) -> Iterator[None]:
    """contract.toml's conversation exists (made with `headers`' key: with keys configured
    only that key sees it) while schemathesis runs; deleted after (it may delete it too)."""
    r = httpx.post(
        f"{app.url}/v1/turn",
        params={"session_id": CONVERSATION},
        content=speech_wav(QUESTIONS[1]),
        headers={"Content-Type": "audio/wav", **headers},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    try:
        yield
    finally:
        r = httpx.delete(f"{app.url}/v1/conversations/{CONVERSATION}", headers=headers)
        assert r.status_code in (204, 404), r.text


def test_the_app_keeps_its_openapi_contract(serve_app: ServeApp, tmp_path: Path) -> None:
    document = httpx.get(f"{serve_app.url}/openapi.json", timeout=10).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    with the_conversation(serve_app, {}):
        output = run_schemathesis(serve_app, tmp_path)
    assert f"Selected: {operations}/{operations}" in output  # none left out


def test_auth_is_documented_and_enforced_with_keys(
    serve_app: ServeApp, with_api_keys: str, tmp_path: Path
) -> None:
    """With JARVIS_API_KEYS set, the document makes the bearer key required on every route
    but health, readiness and the sessions endpoint, and schemathesis's auth check probes
    each one without a key and with a wrong one (401 expected). Few examples: the open run
    above covers the rest."""
    document = httpx.get(f"{serve_app.url}/openapi.json", timeout=10).json()
    secured = {
        path
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if operation.get("security") == [{"bearerAuth": []}]
    }
    assert secured == set(document["paths"]) - {"/healthz", "/readyz", "/v1/sessions/endpoint"}
    key = {"Authorization": f"Bearer {with_api_keys}"}
    with the_conversation(serve_app, key):
        run_schemathesis(
            serve_app,
            tmp_path,
            *("--header", f"Authorization: Bearer {with_api_keys}"),
            *("--phases", "examples,fuzzing", "--max-examples", "3"),
        )
    keyless_refused = {
        route(e["request"]["url"], secured)
        for e in exchanges(tmp_path)
        if e["response"]["status"] == 401
        and not any(h["name"].lower() == "authorization" for h in e["request"]["headers"])
    }
    assert keyless_refused == secured  # every secured route was probed without a key: 401
