"""The optional native-protocol capability (``inference_core.protocols.native``).

A small plugin declares ``native_protocols`` for both protocols and, when offered, forwards the
client's request to an upstream's own ``/v1/messages`` / ``/v1/responses``.  Its upstream here
is a second gateway (itself over the OpenAI-compatible fake), whose answers keep the protocol.
Checked: the conformance kit's native checks pass for it; through the gateway the official
SDKs get the native answer (the chat route is never used); a native backend that fails falls
back to a translated one and the client sees the same protocol; ``previous_response_id`` still
works (the gateway keeps the store, the native backend gets the whole conversation).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from inference_core import hookimpl
from inference_core.http import openai_compat
from inference_core.models import Health
from inference_core.protocols import native
from inference_core.protocols.validate import check_messages_stream, check_responses_stream
from inference_core.testing import BackendConformance
from tests.fakes import FakeOpenAIServer

_PATHS = {"anthropic.messages": "/v1/messages", "openai.responses": "/v1/responses"}


class NativePlugin:
    """Answers Messages and Responses natively from ``config.base_url``; chat otherwise."""

    native_protocols = frozenset(native.PROTOCOLS)

    def __init__(self) -> None:
        self.native_calls = 0

    @hookimpl
    async def chat(self, request: Any, config: Any, http: httpx.AsyncClient) -> Any:
        offered = native.native_request()
        headers = {"x-api-key": "k", "authorization": "Bearer k"}
        if offered is not None and native.speaks(self, offered.protocol):
            self.native_calls += 1
            url = config.base_url + _PATHS[offered.protocol]
            body = {**offered.body, "model": config.model_for(offered.body.get("model"))}
            if request.stream:
                return self._stream(http, url, body, headers)
            r = await http.post(url, json=body, headers=headers)
            r.raise_for_status()
            return native.NativeAnswer.of(r.content)
        return await openai_compat.chat(http, config, request)  # the plain path: core's helper

    @staticmethod
    async def _stream(
        http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncIterator[native.NativeEvent]:
        async with http.stream("POST", url, json=body, headers=headers) as r:
            r.raise_for_status()
            buf = b""
            async for part in r.aiter_bytes():
                buf += part
                while b"\n\n" in buf:
                    frame, buf = buf.split(b"\n\n", 1)
                    yield native.NativeEvent.of(frame + b"\n\n")

    @hookimpl
    async def health(self, config: Any, http: Any) -> Health:
        return Health(state="ready")


# ------------------------------------------------------------------------- conformance kit

_MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "default",
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}  # fmt: skip
_MESSAGE_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
    b'"type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,'
    b'"usage":{"input_tokens":3,"output_tokens":0}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":1}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
_RESPONSE = {"id": "resp_1", "object": "response", "status": "completed", "output": [
    {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "Hi", "annotations": []}]}]}  # fmt: skip
_RESPONSE_STREAM = (
    b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
    b'"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}}\n\n'
    b'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
    b'"sequence_number":1,"output_index":0,"item":{"id":"msg_1","type":"message"}}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":2,"output_index":0,"content_index":0,"item_id":"msg_1","delta":"Hi"}\n\n'
    b'event: response.output_item.done\ndata: {"type":"response.output_item.done",'
    b'"sequence_number":3,"output_index":0,"item":{"id":"msg_1","type":"message"}}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed","sequence_number":4,'
    b'"response":' + orjson.dumps(_RESPONSE) + b"}\n\n"
)


class TestNativePluginConformance(BackendConformance):
    plugin = NativePlugin()
    backend_name = "native"
    supports_list_models = False
    native_protocols = native.PROTOCOLS

    def mock_chat(self, upstream: Any) -> None:
        from inference_core.testing import canned

        upstream.post("/v1/chat/completions").respond(json=canned.chat_completion("Hi"))

    def mock_chat_stream(self, upstream: Any) -> None:
        from inference_core.testing import canned

        upstream.post("/v1/chat/completions").respond(
            content=canned.chat_stream(["Hel", "lo"]),
            headers={"content-type": "text/event-stream"},
        )

    def mock_native(self, upstream: Any, protocol: str, stream: bool) -> None:
        if protocol == "anthropic.messages":
            body, events = _MESSAGE, _MESSAGE_STREAM
        else:
            body, events = _RESPONSE, _RESPONSE_STREAM
        route = upstream.post(_PATHS[protocol])
        if stream:
            route.respond(content=events, headers={"content-type": "text/event-stream"})
        else:
            route.respond(json=body)

    def mock_health(self, upstream: Any) -> None:
        upstream.get("/health").respond(200)

    # this toy plugin exists for the native checks: the kit's checks of a real backend's own
    # chat error handling (mapping, in-band errors, refusals) are not what it is about
    test_stream_refusal_before_first_chunk = None  # type: ignore[assignment]
    test_stream_in_band_error_raises = None  # type: ignore[assignment]
    test_shared_client_left_open = None  # type: ignore[assignment]
    test_chat_stream_closed_early_releases_upstream = None  # type: ignore[assignment]
    test_chat_stream_truncated_raises = None  # type: ignore[assignment]
    test_error_mapping = None  # type: ignore[assignment]
    test_health_never_raises = None  # type: ignore[assignment]


def test_the_validators_refuse_a_wrong_stream() -> None:
    # llama-server style: no event: lines; and a block delta before its start
    with pytest.raises(AssertionError, match="event"):
        check_messages_stream(b'data: {"type":"message_start"}\n\n')
    bad = _MESSAGE_STREAM.replace(b"event: content_block_start", b"event: ping", 1)
    with pytest.raises(AssertionError):
        check_messages_stream(bad)
    with pytest.raises(AssertionError, match="sequence_number"):
        check_responses_stream(
            _RESPONSE_STREAM.replace(b'"sequence_number":3', b'"sequence_number":7')
        )


# ------------------------------------------------------------------------- through the gateway


@pytest.fixture(scope="module")
def fake() -> Any:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def upstream_gateway(fake: FakeOpenAIServer, serve_gateway: Any) -> Any:
    fake.reset()
    env = {"INFERENCE_PROVIDER": "openai", "OPENAI_API_BASE": fake.base_url,
           "OPENAI_API_KEY": "sk-x", "HEALTH_CHECK_INTERVAL": "3600"}  # fmt: skip
    return serve_gateway(env)


def test_native_answers_reach_the_sdks(
    upstream_gateway: Any, serve_gateway: Any, fake: FakeOpenAIServer
) -> None:
    plugin = NativePlugin()
    env = {"INFERENCE_PROVIDER": "native", "INFERENCE_NATIVE_BASE_URL": upstream_gateway.url,
           "HEALTH_CHECK_INTERVAL": "3600"}  # fmt: skip
    gw = serve_gateway(env, extra_plugins={"native": plugin})
    with anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0) as client:
        message = client.messages.create(model="default", max_tokens=16, messages=[
            {"role": "user", "content": "hi"}])  # fmt: skip
        with client.messages.stream(model="default", max_tokens=16, messages=[
                {"role": "user", "content": "hi"}]) as stream:  # fmt: skip
            kinds = [e.type for e in stream]
            final = stream.get_final_message()
    with openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0) as oai:
        first = oai.responses.create(model="default", input="one")
        second = oai.responses.create(model="default", input="two", previous_response_id=first.id)
        streamed = list(oai.responses.create(model="default", input="three", stream=True))
    assert plugin.native_calls == 5  # every call was answered natively
    assert message.content[0].text == "Hello from the fake server."
    assert final.content[0].text == message.content[0].text
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert second.output_text == "Hello from the fake server."
    assert streamed[-1].type == "response.completed"
    # the native backend got the whole conversation, not previous_response_id
    sent = [r.json["messages"] for r in fake.requests if r.path == "/v1/chat/completions"]
    assert [{"role": "user", "content": "one"},
            {"role": "assistant", "content": "Hello from the fake server."},
            {"role": "user", "content": "two"}] in sent  # fmt: skip


def test_a_failing_native_backend_falls_back_to_a_translated_one(
    fake: FakeOpenAIServer, serve_gateway: Any
) -> None:
    fake.reset()
    plugin = NativePlugin()
    env = {
        "INFERENCE_PROVIDER": "native",
        "INFERENCE_NATIVE_BASE_URL": "http://127.0.0.1:9",  # nothing listens: refused
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "openai",
        "OPENAI_API_BASE": fake.base_url,
        "OPENAI_API_KEY": "sk-x",
        "INFERENCE_MAX_RETRIES": "0",
        "HEALTH_CHECK_INTERVAL": "3600",
    }
    gw = serve_gateway(env, extra_plugins={"native": plugin})
    with anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0) as client:
        raw = client.messages.with_raw_response.create(
            model="default", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert plugin.native_calls >= 1
    assert raw.headers["x-inference-backend"] == "openai"
    message = raw.parse()
    assert message.id.startswith("msg_")
    assert message.content[0].text == "Hello from the fake server."
