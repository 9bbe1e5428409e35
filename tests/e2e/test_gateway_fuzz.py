"""Property-based fuzz of the gateway's request bodies: no input gives a 5xx.

Hypothesis generates, per inference endpoint, bodies of three kinds: arbitrary JSON values,
near-valid objects (the request schema's field names with values of any JSON type, messages
with random roles and contents, unknown extra fields), and raw bytes (broken JSON, other
encodings).  They go to the real app over the real Router, whose one backend is an
OpenAI-compatible relay answering from an in-memory upstream (``httpx.MockTransport``) that
always succeeds, so a 5xx could only come from the gateway or the router themselves.  Every
answer must be a 2xx or an OpenAI-shaped 4xx error.  Bounded: about 500 cases, well under a
minute; the case count and the status histogram are printed (visible in CI logs).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference_core import hookimpl
from inference_core.http import openai_compat

CHUNK = (
    b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"content":"x"},"finish_reason":null}],"usage":null}'
)
CHAT = (
    b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}'
)
COMPLETION = (
    b'{"id":"t","object":"text_completion","created":1,"model":"m","choices":[{"text":"ok"}]}'
)

STATS: Counter[int] = Counter()


def upstream(request: httpx.Request) -> httpx.Response:
    """Always a valid answer shaped after what was asked."""
    if request.url.path.endswith("/health"):
        return httpx.Response(200, json={"status": "ok"})
    body = json.loads(request.content)
    if request.url.path.endswith("/embeddings"):
        inp = body.get("input")
        single = isinstance(inp, str) or (inp and isinstance(inp[0], int))
        n = 1 if single else len(inp or [])
        data = [{"object": "embedding", "index": i, "embedding": [0.0, 1.0]} for i in range(n)]
        return httpx.Response(200, json={"object": "list", "data": data, "model": "e"})
    if body.get("stream"):
        sse = b"data: " + CHUNK + b"\n\ndata: " + CHUNK + b"\n\ndata: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse)
    if request.url.path.endswith("/completions") and "chat" not in request.url.path:
        return httpx.Response(200, content=COMPLETION)
    return httpx.Response(200, content=CHAT)


class Relay:
    @hookimpl
    async def chat(self, request: Any, config: Any, http: Any) -> Any:
        return await openai_compat.chat(http, config, request)

    @hookimpl
    async def complete(self, request: Any, config: Any, http: Any) -> Any:
        return await openai_compat.complete(http, config, request)

    @hookimpl
    async def embed(self, request: Any, config: Any, http: Any) -> Any:
        return await openai_compat.embed(http, config, request)

    @hookimpl
    async def health(self, config: Any, http: Any) -> Any:
        return await openai_compat.probe_health(http, config, path="/health")


@pytest.fixture(scope="module")
def gateway(request: pytest.FixtureRequest) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from inference_core.gateway import GatewaySettings, create_app
    from inference_core.router import Router

    router = Router.from_env(
        {
            "INFERENCE_PROVIDER": "relay",
            "INFERENCE_RELAY_BASE_URL": "http://upstream.test",
            "HEALTH_CHECK_INTERVAL": "3600",
            "INFERENCE_MAX_RETRIES": "0",
        },
        env_file=None,
        transport=httpx.MockTransport(upstream),
        extra_plugins={"relay": Relay()},
    )
    app = create_app(router, GatewaySettings.from_env(env={}, access_log=False, max_n=4))
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client
    total = sum(STATS.values())
    line = f"gateway fuzz: {total} cases, statuses {dict(sorted(STATS.items()))}"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:  # shown in the test log even with output capture on
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ strategies

json_scalar = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(
    allow_nan=False, allow_infinity=False
) | st.text(max_size=20)  # fmt: skip
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)  # fmt: skip
roles = st.sampled_from(["user", "system", "assistant", "tool", "developer", "", "x" * 50])


def mostly(valid: st.SearchStrategy[Any], junk: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` about 4 times in 5, else ``junk``."""
    return st.one_of(valid, valid, valid, valid, junk)


content = st.none() | st.text(max_size=40) | st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=10)}
    ),
    max_size=2,
) | json_value  # fmt: skip
message = st.fixed_dictionaries(
    {"role": mostly(roles, json_scalar)},
    optional={"content": content, "name": json_scalar, "tool_calls": json_value},
)
common = {
    "model": st.text(max_size=12) | json_scalar,
    "stream": st.booleans() | json_scalar,
    "stream_options": st.none()
    | st.fixed_dictionaries({"include_usage": st.booleans()})
    | json_value,
    "max_tokens": st.integers(-5, 300000) | json_scalar,
    "temperature": st.floats(-1, 3, allow_nan=False) | json_scalar,
    "top_p": st.floats(-1, 2, allow_nan=False) | json_scalar,
    "n": st.integers(-2, 10) | json_scalar,
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=3) | json_scalar,
    "seed": st.integers() | json_scalar,
    "user": json_scalar,
    "top_k": json_value,  # unknown extras pass through
}
chat_body = st.fixed_dictionaries(
    {"messages": mostly(st.lists(message, min_size=1, max_size=3), json_value)},
    optional={**common, "max_completion_tokens": st.integers(-5, 300000) | json_scalar,
              "tools": json_value, "tool_choice": json_value, "response_format": json_value},
)  # fmt: skip
completion_body = st.fixed_dictionaries(
    {"prompt": st.text(max_size=20) | st.lists(st.text(max_size=5), max_size=3)
     | st.lists(st.integers(0, 50000), max_size=4) | json_value},
    optional={**common, "echo": json_scalar, "logprobs": json_scalar},
)  # fmt: skip
embed_body = st.fixed_dictionaries(
    {"input": st.text(max_size=20) | st.lists(st.text(max_size=10), max_size=5)
     | st.lists(st.integers(0, 50000), max_size=4)
     | st.lists(st.lists(st.integers(0, 100), max_size=3), max_size=3) | json_value},
    optional={"model": common["model"], "dimensions": st.integers(-3, 4096) | json_scalar,
              "encoding_format": st.sampled_from(["float", "base64", "binary"]) | json_scalar,
              "user": json_scalar},
)  # fmt: skip
raw_bytes = st.binary(max_size=200) | json_value.map(
    lambda v: json.dumps(v).encode()
)  # fmt: skip

PATHS = {
    "chat": ("/v1/chat/completions", chat_body),
    "completions": ("/v1/completions", completion_body),
    "embeddings": ("/v1/embeddings", embed_body),
}


def check(response: httpx.Response, case: Any) -> None:
    STATS[response.status_code] += 1
    assert response.status_code < 500, (case, response.status_code, response.text[:500])
    assert response.headers.get("x-request-id")
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    elif response.headers["content-type"].startswith("text/event-stream"):
        events = [ln for ln in response.text.split("\n") if ln.startswith("data: ")]
        assert events[-1] == "data: [DONE]", response.text[:300]


FUZZ = settings(
    max_examples=int(os.environ.get("INFERENCE_FUZZ_EXAMPLES", "130")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.mark.parametrize("endpoint", list(PATHS))
def test_structured_bodies_never_5xx(gateway: Any, endpoint: str) -> None:
    path, strategy = PATHS[endpoint]

    @FUZZ
    @given(body=strategy)
    def run(body: Any) -> None:
        check(gateway.post(path, json=body), body)

    run()


@FUZZ
@given(data=raw_bytes, endpoint=st.sampled_from(list(PATHS)))
def test_raw_bodies_never_5xx(gateway: Any, data: bytes, endpoint: str) -> None:
    path = PATHS[endpoint][0]
    check(gateway.post(path, content=data, headers={"content-type": "application/json"}), data)
