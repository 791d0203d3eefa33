import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from starlette.responses import JSONResponse

from pipeline.config import AppArgs, BatchConfig, Settings
from pipeline.errors import AuthError, BadInputError
from pipeline.web import contract
from pipeline.web.http import (
    check_bearer,
    check_session_id,
    error_response,
    http_error_response,
    validation_error_response,
)
from pipeline.web.openai_shapes import ChatCompletionRequest

ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_args_validate() -> None:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    args = AppArgs.model_validate(app["args"])
    assert args.limits.max_body_bytes == 10 * 1024 * 1024
    assert args.limits.max_audio_seconds == 30
    for dep in app["deployments"]:
        if "user_config" in dep:
            BatchConfig.model_validate(dep["user_config"])


def test_unknown_args_are_refused() -> None:
    with pytest.raises(ValidationError):
        AppArgs.model_validate({"stt": {"model": "large-v3"}})
    with pytest.raises(ValidationError):
        AppArgs.model_validate({"sst": {}})


def test_api_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_API_KEYS", "k1, k2")
    assert Settings().api_key_set() == {"k1", "k2"}
    monkeypatch.setenv("JARVIS_API_KEYS", "changeme")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()
    monkeypatch.delenv("JARVIS_API_KEYS")
    assert Settings().api_key_set() == frozenset()


def test_bearer_check() -> None:
    check_bearer(None, frozenset())  # no keys: open
    check_bearer("Bearer k1", frozenset({"k1"}))
    for header in (None, "k1", "Basic k1", "Bearer wrong"):
        with pytest.raises(AuthError):
            check_bearer(header, frozenset({"k1"}))


def test_session_ids() -> None:
    assert check_session_id("demo-1:a.b_c") == "demo-1:a.b_c"
    for bad in ("", "x" * 129, "a b", "../etc"):
        with pytest.raises(BadInputError):
            check_session_id(bad)


def test_the_browser_client_files_are_served_and_nothing_else() -> None:
    from pipeline.errors import NotFoundError
    from pipeline.web.static import FILES, web_file

    for name in FILES:
        assert web_file(name).is_file(), name
    with pytest.raises(NotFoundError):
        web_file("../pyproject.toml")


def _body(response: JSONResponse) -> Any:
    return json.loads(bytes(response.body))


def test_every_error_answers_with_the_envelope() -> None:
    r = error_response(AuthError("invalid API key"))
    assert (r.status_code, r.headers["www-authenticate"]) == (401, "Bearer")
    body = _body(r)
    assert body["error"].pop("request_id")  # a fresh id: no request is being served here
    assert body == {"error": {"message": "invalid API key", "type": "AuthError"}}
    with pytest.raises(ValidationError) as caught:
        ChatCompletionRequest.model_validate({"messages": [], "model": 98765})
    errors = [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]
    r = validation_error_response(errors)
    assert r.status_code == 422
    error = _body(r)["error"]
    assert error["type"] == "RequestValidationError"
    assert "body.messages" in error["message"] and "body.model" in error["message"]
    assert "98765" not in error["message"]  # what was sent is not echoed
    r = http_error_response(405, {"Allow": "GET"})
    assert (r.status_code, r.headers["allow"]) == (405, "GET")
    error = _body(r)["error"]
    assert error.pop("request_id")
    assert error == {"message": "Method Not Allowed", "type": "MethodNotAllowedError"}


def test_openai_request_types_are_strict() -> None:
    ok = {"messages": [{"role": "user", "content": "hi"}]}
    assert ChatCompletionRequest.model_validate({**ok, "max_tokens": 8.0}).max_tokens == 8
    assert ChatCompletionRequest.model_validate({**ok, "temperature": 1}).temperature == 1.0
    for bad in (
        {"temperature": "0.5"},
        {"temperature": False},
        {"stream": 1},
        {"max_tokens": "8"},
        {"max_tokens": 8.5},
        {"model": 3},
    ):
        with pytest.raises(ValidationError):
            ChatCompletionRequest.model_validate({**ok, **bad})


def test_the_document_adds_bearer_auth_and_the_envelope_to_fastapi_s() -> None:
    fastapi_doc = {
        "paths": {
            "/healthz": {"get": {"responses": {"200": {}}}},
            "/v1/stats": {"get": {"responses": {"200": {}, "422": {"description": "detail"}}}},
        },
        "components": {"schemas": {"HTTPValidationError": {}, "ValidationError": {}}},
    }
    for required, security in ((True, [{"bearerAuth": []}]), (False, [{"bearerAuth": []}, {}])):
        doc = contract.finish(fastapi_doc, open_paths={"/healthz"}, keys_required=required)
        stats = doc["paths"]["/v1/stats"]["get"]
        assert stats["security"] == security
        envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
        assert stats["responses"]["401"]["content"]["application/json"]["schema"] == envelope
        assert stats["responses"]["422"]["content"]["application/json"]["schema"] == envelope
        assert "security" not in doc["paths"]["/healthz"]["get"]
        assert "401" not in doc["paths"]["/healthz"]["get"]["responses"]
        assert {"ErrorEnvelope", "ErrorDetail"} <= set(doc["components"]["schemas"])
        assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "security" not in fastapi_doc["paths"]["/v1/stats"]["get"]  # not changed in place


def test_a_405_names_every_method_of_the_path() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    from pipeline.web.http import allowed_methods

    app = FastAPI()
    app.get("/things/{name}")(lambda name: {})
    app.delete("/things/{name}", status_code=204)(lambda name: None)
    app.post("/other")(lambda: {})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        allow = allowed_methods(request.app.routes, request.url.path)
        return http_error_response(exc.status_code, {"Allow": allow})

    r = TestClient(app).request("OPTIONS", "/things/a")
    assert (r.status_code, r.headers["allow"]) == (405, "DELETE, GET")
    assert allowed_methods(app.routes, "/other") == "POST"
