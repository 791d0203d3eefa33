"""Keys, request ids and CORS without Ray: the pipeline's middleware and helpers composed as
the ingress composes them (deployments/ingress.py), served by Starlette's test client."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient

from pipeline.config import Settings
from pipeline.errors import JarvisError, NotFoundError
from pipeline.web.cors import LazyCors
from pipeline.web.http import check_bearer, error_response, key_owner
from pipeline.web.request_id import RequestIdMiddleware, install_log_filter
from pipeline.web.ws import key_check, session_refusal

KEY = "sk-unit-9c1d2e3f4a5b"
log = logging.getLogger("jarvis.test_security")


async def thing(request: Request) -> Response:
    log.info("serving %s", request.url.path)
    if request.path_params["name"] == "missing":
        raise NotFoundError("no such thing")
    return JSONResponse({"ok": True})


async def jarvis_error(_: Request, exc: Exception) -> Response:
    return error_response(exc)


def make_app(*, keys: frozenset[str], origins: frozenset[str] = frozenset()) -> FastAPI:
    app = FastAPI()
    app.add_api_route("/things/{name}", thing)
    app.add_exception_handler(JarvisError, jarvis_error)

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Response:
        try:
            check_bearer(request.headers.get("authorization"), keys)
        except JarvisError as e:
            return error_response(e)
        response: Response = await call_next(request)
        return response

    # As in the ingress: the last added is the outermost.
    app.add_middleware(LazyCors, origins=lambda: origins)
    app.add_middleware(RequestIdMiddleware)
    return app


def test_keys_are_never_logged_nor_echoed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    client = TestClient(make_app(keys=frozenset({KEY, "other-key-1234"})))
    answers = [
        client.get("/things/a", headers={"Authorization": f"Bearer {KEY}"}),
        client.get("/things/missing", headers={"Authorization": f"Bearer {KEY}"}),
        client.get("/things/a", headers={"Authorization": f"Bearer {KEY}x"}),
        client.get("/things/a", headers={"Authorization": f"Basic {KEY}"}),
        client.get(f"/things/a?api_key={KEY}"),
    ]
    assert [r.status_code for r in answers] == [200, 404, 401, 401, 401]
    refusals = [
        key_check(None, KEY[:-1], frozenset({KEY})),
        session_refusal(
            {"origin": "https://evil.test", "host": "127.0.0.1:8001"},
            {"api_key": KEY},
            keys=frozenset({KEY}),
            origins=frozenset(),
        ),
    ]
    assert all(refusals)
    # The server's records (the test client's own, httpx's, log the URL it asked for).
    served = [r for r in caplog.records if not r.name.startswith("httpx")]
    assert any(r.name == "jarvis.test_security" for r in served)  # the app did log
    text = "\n".join(f"{r.getMessage()} {r.args} {r.__dict__}" for r in served)
    assert KEY not in text and KEY[:-1] not in text
    for r in answers:
        assert KEY not in r.text and all(KEY not in v for v in r.headers.values())
    assert all(KEY not in why for why in refusals if why)


def test_every_key_is_compared() -> None:
    keys = frozenset({"a" * 20, "b" * 20, "c" * 20})
    for key in keys:
        check_bearer(f"Bearer {key}", keys)
    with pytest.raises(JarvisError):
        check_bearer("Bearer " + "a" * 19, keys)


def test_a_request_id_in_the_header_the_envelope_and_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jarvis")
    install_log_filter(logging.getLogger("jarvis.test_security"))
    flt = install_log_filter()
    caplog.handler.addFilter(flt)  # caplog's handler stands for the process's handlers
    client = TestClient(make_app(keys=frozenset()))
    r = client.get("/things/missing")
    rid = r.headers["x-request-id"]
    assert len(rid) == 32 and r.json()["error"]["request_id"] == rid
    assert r.json()["error"]["type"] == "NotFoundError"
    (record,) = [x for x in caplog.records if x.name == "jarvis.test_security"]
    assert record.request_id == rid  # type: ignore[attr-defined]
    # A caller's sane id is kept (a trace id); anything else gets a new one.
    r = client.get("/things/missing", headers={"X-Request-Id": "trace-42:a.b_c"})
    assert r.headers["x-request-id"] == r.json()["error"]["request_id"] == "trace-42:a.b_c"
    for bad in ("a b", "x" * 129, "<script>"):
        r = client.get("/things/missing", headers={"X-Request-Id": bad})
        assert r.headers["x-request-id"] != bad
        assert r.headers["x-request-id"] == r.json()["error"]["request_id"]
    r = client.get("/things/a")  # success answers carry one too
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32


def test_cors_only_for_the_configured_origins() -> None:
    keys = frozenset({KEY})
    closed = TestClient(make_app(keys=keys))
    preflight = {
        "Origin": "https://app.test",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    r = closed.options("/things/a", headers=preflight)
    assert "access-control-allow-origin" not in r.headers  # no origins: no CORS at all
    opened = TestClient(make_app(keys=keys, origins=frozenset({"https://app.test"})))
    r = opened.options("/things/a", headers=preflight)  # a preflight carries no key
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.test"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = opened.get("/things/a", headers={"Origin": "https://app.test", "Authorization": "x"})
    assert r.status_code == 401  # CORS lets the page read the answer, the key still decides
    assert r.headers["access-control-allow-origin"] == "https://app.test"
    assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
    r = opened.options("/things/a", headers={**preflight, "Origin": "https://evil.test"})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_allowed_origins_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().origin_set() == frozenset()
    monkeypatch.setenv("JARVIS_ALLOWED_ORIGINS", " https://App.test/ ,http://localhost:3000,")
    assert Settings().origin_set() == {"https://app.test", "http://localhost:3000"}


def test_what_a_key_owns_is_named_by_its_fingerprint_not_the_key() -> None:
    keys = frozenset({KEY, "other-key-1234"})
    owner = key_owner(f"Bearer {KEY}", keys)
    assert owner is not None and len(owner) == 64 and KEY not in owner
    assert key_owner(None, keys, KEY) == owner  # a WebSocket's ?api_key=
    assert key_owner("Bearer other-key-1234", keys) != owner
    assert key_owner(f"Bearer {KEY}", frozenset()) is None  # no keys: nobody owns anything
