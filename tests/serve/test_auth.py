import httpx
import openai
import pytest

from tests.serve_cluster import ServeApp

pytestmark = pytest.mark.serve
CHAT = {"messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 3}


def test_open_when_no_keys_are_configured(serve_app: ServeApp) -> None:
    r = httpx.post(f"{serve_app.url}/v1/chat/completions", json=CHAT, timeout=60)
    assert r.status_code == 200


def test_keys_required_when_configured(serve_app: ServeApp, with_api_keys: str) -> None:
    url = serve_app.url
    r = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=60)
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    assert r.headers["www-authenticate"] == "Bearer"
    bad = {"Authorization": "Bearer nope"}
    assert (
        httpx.post(f"{url}/v1/audio/speech", json={"input": "hi"}, headers=bad).status_code == 401
    )
    assert httpx.post(f"{url}/v1/turn", content=b"x").status_code == 401
    assert httpx.get(f"{url}/healthz").status_code == 200  # health stays open
    assert httpx.get(f"{url}/readyz").status_code == 200
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=with_api_keys, max_retries=0)
    result = client.chat.completions.create(model="jarvis", messages=CHAT["messages"], max_tokens=3)  # type: ignore[arg-type]
    assert result.choices[0].message.content is not None
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
