"""Admission control of an ingress replica (pipeline/web/admission.py) and the 503 it makes."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import BadInputError, OverloadedError
from pipeline.web.admission import Admission
from pipeline.web.http import error_response


def test_sessions_past_the_cap_are_refused_until_one_closes() -> None:
    admission = Admission(max_sessions=2, max_requests=10)
    assert admission.open_session() is None
    assert admission.open_session() is None
    refused = admission.open_session()
    assert refused == "this server holds its most voice sessions (2); try again later"
    assert (admission.sessions, admission.refused_sessions) == (2, 1)
    admission.close_session()
    assert admission.open_session() is None


def test_requests_past_the_cap_get_a_503_with_retry_after() -> None:
    admission = Admission(max_sessions=1, max_requests=1, retry_after_s=3)
    admission.start_request()
    with pytest.raises(OverloadedError) as refused:
        admission.start_request()
    response = error_response(refused.value)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"
    body = json.loads(bytes(response.body))
    assert body["error"]["type"] == "OverloadedError"
    assert "try again in 3 s" in body["error"]["message"]
    admission.end_request()
    admission.start_request()  # room again
    assert (admission.requests, admission.refused_requests) == (1, 1)


def test_other_errors_carry_no_retry_after() -> None:
    assert "Retry-After" not in error_response(BadInputError("no")).headers
