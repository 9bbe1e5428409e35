"""Stream resume (routing/resume.py): a stream cut after its first chunk goes on elsewhere.

Scripted upstreams (httpx.MockTransport) for every rule: replicas and same-model backends,
echo dropping, the client's id/model kept, usage carried, the three failure kinds (connection
lost, in-band 5xx, idle timeout), tool calls resumed only between argument objects, the
resume limit, the deadline, the first-token timeout of a resume, ``any-model``, ``off``, a
backend that cannot continue, and ``/v1/completions``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_router_helpers import CompatPlugin, Server, build, config, req

from inference_core.errors import BackendTimeout, BackendUnavailable, BadRequest, ConfigError
from inference_core.hookspecs import hookimpl
from inference_core.models import ChatRequest, CompletionRequest
from inference_core.resilience.policy import RouterPolicy
from inference_core.router import RequestTrace
from inference_core.settings import Settings

NO_RETRY = RouterPolicy(max_retries=0)


class Continuing(CompatPlugin):
    """A plugin that declares it continues a final assistant message."""

    continue_final_message: Any = True


class Echoing(CompatPlugin):
    continue_final_message: Any = "echo"


def chunk(
    text: str | None = None,
    *,
    id: str = "leg",
    model: str = "m",
    created: int = 1,
    role: bool = False,
    finish: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if text is not None:
        delta["content"] = text
    if tools is not None:
        delta["tool_calls"] = tools
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage(prompt: int, completion: int, *, id: str = "leg", model: str = "m") -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": 2,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def ev(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class Script(httpx.AsyncByteStream):
    """SSE parts; a float pauses, an exception is raised (the connection is lost)."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts
        self.closed = False

    async def __aiter__(self):
        for part in self.parts:
            if isinstance(part, float):
                await asyncio.sleep(part)
            elif isinstance(part, BaseException):
                raise part
            elif isinstance(part, bytes):
                yield part
            else:
                yield ev(part)

    async def aclose(self) -> None:
        self.closed = True


def streamed(*parts: Any):
    script = Script(*parts)

    def reply(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=script)

    reply.script = script  # type: ignore[attr-defined]
    return reply


LOST = httpx.ReadError("connection reset by peer")
DONE = b"data: [DONE]\n\n"


def cut(*texts: str, id: str = "first", model: str = "m", then: Any = LOST):
    """A first leg: the role chunk, ``texts``, then ``then`` (a lost connection)."""
    return streamed(
        chunk(role=True, text="", id=id, model=model, created=7),
        *(chunk(t, id=id, model=model, created=7) for t in texts),
        then,
    )


def finish(*texts: str, prompt: int = 20, model: str = "m2", role: bool = True):
    """A continuation leg: its own id/model, ``texts``, finish_reason, usage, [DONE]."""
    parts: list[Any] = [chunk(role=True, text="", model=model)] if role else []
    parts += [chunk(t, model=model) for t in texts]
    parts += [chunk(finish="stop", model=model), usage(prompt, len(texts), model=model), DONE]
    return streamed(*parts)


class Replicas(Server):
    """Both replicas of backend ``a``: the first request gets ``first``, the next ``second``."""

    def __init__(self, first: Any, *more: Any) -> None:
        super().__init__(more[-1] if more else first)
        self.then(first, *more)
        self.legs = [first, *more]

    @property
    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]


def replicas(server: Server, plugin: object | None = None, **policy: Any):
    cfg = config("a", base_urls=("http://a.test", "http://a2.test"))
    return build(
        {"a.test": server, "a2.test": server},
        configs=[cfg],
        plugins={"a": plugin if plugin is not None else Continuing()},
        policy=RouterPolicy(max_retries=0, **policy),
    )


def text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def run(router, request=None, trace=None):
    trace = trace if trace is not None else RequestTrace()
    request = request or req(stream=True, max_tokens=50, stream_options={"include_usage": True})
    async with router:
        stream = await router.chat(request, trace=trace)
        chunks = [c async for c in stream]
        assert router.in_flight == 0
        for b in router._chain:
            assert all(r.outstanding == 0 for r in b.replicas.replicas)
    return chunks, trace


# ------------------------------------------------------------------------ the seam


async def test_a_replica_continues_the_message_in_the_same_stream():
    a = Replicas(cut("Hello", " wor"), finish("ld", "!"))
    chunks, trace = await run(replicas(a))
    assert text_of(chunks) == "Hello world!"
    assert {c.id for c in chunks} == {"first"}  # the id the client saw first
    assert {c.model for c in chunks} == {"m"}
    assert {c.created for c in chunks} == {7}
    assert [c.choices[0].delta.role for c in chunks if c.choices].count("assistant") == 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes.count("stop") == 1
    assert finishes[-1] == "stop"
    # usage: the resume leg's prompt, every token the client received
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 2 + 2
    assert chunks[-1].usage.prompt_tokens == 20
    assert chunks[-1].usage.total_tokens == 24
    assert trace.usage.completion_tokens == 4
    # what the replica was asked: the prefill, flagged, the token budget reduced
    body = a.bodies[1]
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello wor"}
    assert body["messages"][0] == {"role": "user", "content": "hello"}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert body["max_tokens"] == 48
    # operators see it
    [resume] = trace.resumes
    assert (resume.backend, resume.outcome, resume.after_tokens, resume.to) == (
        "a",
        "resumed",
        2,
        "a",
    )
    assert resume.replica == f"http://{a.hosts[0]}"
    assert resume.error == "unavailable"
    assert a.hosts[1] != a.hosts[0]  # the other replica
    assert trace.attempts[-1].backend == "a"
    assert trace.backend == "a"


async def test_unedited_continuation_chunks_keep_their_bytes_with_the_clients_identity():
    a = Replicas(cut("Hello"), finish(" there", role=False))
    chunks, _ = await run(replicas(a))
    relayed = chunks[2]
    assert relayed.raw is not None
    data = json.loads(relayed.raw)
    assert (data["id"], data["model"], data["created"]) == ("first", "m", 7)
    assert data["choices"][0]["delta"] == {"content": " there"}


@pytest.mark.parametrize(
    "legs",
    [
        ["Hello wor", "ld", "!"],  # the whole prefix in one chunk
        ["Hel", "lo", " wor", "ld!"],  # the prefix over several chunks
        ["Hello world", "!"],  # the prefix and the first new text in one chunk
    ],
)
async def test_an_echoed_prefix_is_dropped(legs):
    a = Replicas(cut("Hello", " wor"), finish(*legs))
    chunks, _ = await run(replicas(a, Echoing()))
    assert text_of(chunks) == "Hello world!"


async def test_a_declared_echo_that_does_not_come_loses_nothing():
    a = Replicas(cut("Hello", " wor"), finish("l", "d!"))
    chunks, _ = await run(replicas(a, Echoing()))
    assert text_of(chunks) == "Hello world!"


async def test_a_continuation_that_repeats_the_prefix_is_kept_when_the_backend_does_not_echo():
    a = Replicas(cut("la", " "), finish("la", " ", "la"))
    chunks, _ = await run(replicas(a))
    assert text_of(chunks) == "la la la"


# ------------------------------------------------------------------------ what fails


async def test_an_in_band_5xx_event_is_resumed():
    error = {"error": {"message": "engine died", "type": "server_error", "code": 500}}
    a = Replicas(cut("Hello", then=ev(error)), finish(" you"))
    chunks, trace = await run(replicas(a))
    assert text_of(chunks) == "Hello you"
    assert trace.resumes[0].outcome == "resumed"


async def test_an_idle_timeout_is_resumed():
    a = Replicas(cut("Hello", then=5.0), finish(" you"))
    chunks, trace = await run(replicas(a, idle_timeout=0.1))
    assert text_of(chunks) == "Hello you"
    assert trace.resumes[0].error == "timeout"
    assert a.legs[0].script.closed  # the stalled leg was closed


async def test_a_stream_ended_without_done_is_resumed():
    a = Replicas(cut("Hello", then=b""), finish(" you"))
    chunks, _ = await run(replicas(a))
    assert text_of(chunks) == "Hello you"


async def test_a_bad_request_mid_stream_is_not_resumed():
    error = {"error": {"message": "bad", "type": "invalid_request_error", "code": 400}}
    a = Replicas(cut("Hello", then=ev(error)), finish(" you"))
    router = replicas(a)
    with pytest.raises(BadRequest):
        await run(router)
    assert len(a.bodies) == 1


# ------------------------------------------------------------------------ where it is honest


async def test_a_backend_that_cannot_continue_keeps_the_in_band_error():
    a = Replicas(cut("Hello"), finish(" you"))
    trace = RequestTrace()
    with pytest.raises(BackendUnavailable):
        await run(replicas(a, CompatPlugin()), trace=trace)
    assert len(a.bodies) == 1
    [resume] = trace.resumes
    assert resume.outcome == "skipped"
    assert "can continue" in resume.detail


async def test_off_keeps_the_in_band_error():
    a = Replicas(cut("Hello"), finish(" you"))
    trace = RequestTrace()
    with pytest.raises(BackendUnavailable):
        await run(replicas(a, stream_resume="off"), trace=trace)
    assert len(a.bodies) == 1
    assert trace.resumes is None


def two_backends(a: Server, b: Server, b_models: list[str], **policy: Any):
    a.models, b.models = ["m"], b_models
    return build(
        {"a.test": a, "b.test": b},
        configs=[config("a", model="m"), config("b", model=b_models[0])],
        plugins={"a": Continuing(), "b": Continuing()},
        policy=RouterPolicy(max_retries=0, **policy),
    )


async def test_a_backend_serving_the_same_model_continues():
    a, b = Server(cut("Hello")), Server(finish(" you", model="m"))
    chunks, trace = await run(two_backends(a, b, ["m"]), req("m", stream=True))
    assert text_of(chunks) == "Hello you"
    assert trace.resumes[0].to == "b"
    assert trace.backend == "b"
    assert b.bodies[0]["model"] == "m"


async def test_another_model_is_used_only_with_any_model():
    a, b = Server(cut("Hello")), Server(finish(" you", model="other"))
    with pytest.raises(BackendUnavailable):
        await run(two_backends(a, b, ["other"]), req("m", stream=True))
    assert not b.bodies
    a, b = Server(cut("Hello")), Server(finish(" you", model="other"))
    router = two_backends(a, b, ["other"], stream_resume="any-model")
    chunks, trace = await run(router, req("m", stream=True))
    assert text_of(chunks) == "Hello you"
    assert {c.model for c in chunks} == {"m"}  # the model the client saw
    assert b.bodies[0]["model"] == "other"
    assert trace.resumes[0].to == "b"


# ------------------------------------------------------------------------ tool calls


def call(index: int, *, id: str | None = None, name: str | None = None, args: str = ""):
    fn: dict[str, Any] = {"arguments": args}
    if name:
        fn["name"] = name
    out: dict[str, Any] = {"index": index, "function": fn}
    if id:
        out["id"] = id
        out["type"] = "function"
    return out


async def test_a_tool_call_cut_inside_its_arguments_is_not_resumed():
    first = streamed(
        chunk(role=True, text=None, id="first"),
        chunk(tools=[call(0, id="call_1", name="get", args='{"city": ')], id="first"),
        LOST,
    )
    a = Replicas(first, finish(" you"))
    trace = RequestTrace()
    with pytest.raises(BackendUnavailable):
        await run(replicas(a), trace=trace)
    assert "inside a tool call" in trace.resumes[0].detail
    assert len(a.bodies) == 1


async def test_tool_calls_resume_between_argument_objects():
    first = streamed(
        chunk(role=True, text=None, id="first"),
        chunk(tools=[call(0, id="call_1", name="get", args='{"city": ')], id="first"),
        chunk(tools=[call(0, args='"Oslo"}')], id="first"),
        LOST,
    )
    second = streamed(
        chunk(role=True, text=None),
        chunk(tools=[call(0, id="call_2", name="get", args='{"city": "Rome"}')]),
        chunk(finish="tool_calls"),
        DONE,
    )
    a = Replicas(first, second)
    chunks, _trace = await run(replicas(a))
    prefill = a.bodies[1]["messages"][-1]
    assert prefill["role"] == "assistant"
    assert prefill["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get", "arguments": '{"city": "Oslo"}'},
        }
    ]
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert [t["index"] for t in calls] == [0, 0, 1]  # the new call continues the numbering
    assert calls[-1]["id"] == "call_2"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# ------------------------------------------------------------------------ bounds


async def test_at_most_max_resumes_then_the_error():
    a = Replicas(cut("Hello"), cut(" my", id="x"))
    trace = RequestTrace()
    router = replicas(a)
    got: list[str] = []

    async def consume() -> None:
        async with router:
            async for c in await router.chat(req(stream=True), trace=trace):
                got.append(c.choices[0].delta.content or "")

    with pytest.raises(BackendUnavailable):
        await consume()
    assert "".join(got) == "Hello my"  # the second leg's text reached the client
    assert [r.outcome for r in trace.resumes] == ["resumed", "skipped"]
    assert "INFERENCE_STREAM_RESUME_MAX=1" in trace.resumes[1].detail
    assert router.in_flight == 0


async def test_two_resumes_when_allowed_carry_all_the_text():
    cfg = config("a", base_urls=("http://a.test", "http://a2.test", "http://a3.test"))
    a = Replicas(cut("Hello"), cut(" my", id="x"), finish(" dear"))
    router = build(
        {"a.test": a, "a2.test": a, "a3.test": a},
        configs=[cfg],
        plugins={"a": Continuing()},
        policy=RouterPolicy(max_retries=0, stream_resume_max=2),
    )
    chunks, trace = await run(router)
    assert text_of(chunks) == "Hello my dear"
    assert [r.outcome for r in trace.resumes] == ["resumed", "resumed"]
    assert chunks[-1].usage.completion_tokens == 2 + 1
    assert len(set(a.hosts)) == 3  # each resume on a replica not tried by this stream yet
    assert a.bodies[2]["messages"][-1]["content"] == "Hello my"


async def test_no_resume_after_the_request_deadline():
    a = Replicas(cut("Hello", then=0.3), finish(" you"))
    trace = RequestTrace()
    with pytest.raises(BackendTimeout):
        await run(replicas(a, idle_timeout=0.25, request_deadline=0.2), trace=trace)
    assert "deadline" in trace.resumes[0].detail
    assert len(a.bodies) == 1


async def test_a_resume_without_a_first_token_in_time_ends_with_the_error():
    a = Replicas(cut("Hello"), streamed(5.0, chunk(" late"), DONE))
    trace = RequestTrace()
    with pytest.raises(BackendUnavailable):
        await run(replicas(a, first_token_timeout=0.1), trace=trace)
    [resume] = trace.resumes
    assert resume.outcome == "failed"
    assert "first-token" in resume.detail


# ------------------------------------------------------------------------ completions


async def test_a_completion_stream_continues_from_prompt_plus_text():
    def text_chunk(text, id="first", finish=None, created=7):
        return {
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": "m",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
        }

    a = Replicas(
        streamed(text_chunk(" one,"), text_chunk(" two,"), LOST),
        streamed(
            text_chunk(" three", id="x", created=9),
            text_chunk("", id="x", finish="length", created=9),
            DONE,
        ),
    )
    router = replicas(a, plugin=CompatPlugin())  # completions need no declaration
    async with router:
        request = CompletionRequest(prompt="Count:", stream=True, max_tokens=3)
        chunks = [c async for c in await router.complete(request)]
    assert "".join(c.choices[0].text for c in chunks) == " one, two, three"
    assert {c.id for c in chunks} == {"first"}
    assert {c.created for c in chunks} == {7}
    assert a.bodies[1]["prompt"] == "Count: one, two,"
    assert a.bodies[1]["max_tokens"] == 1


# ------------------------------------------------------------------------ settings


def test_the_resume_variables_are_read_and_checked():
    s = Settings.from_env(
        {"INFERENCE_STREAM_RESUME": "Any-Model", "INFERENCE_STREAM_RESUME_MAX": "3"},
        env_file=None,
    )
    assert (s.policy.stream_resume, s.policy.stream_resume_max) == ("any-model", 3)
    assert Settings.from_env({}, env_file=None).policy.stream_resume == "same-model"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"INFERENCE_STREAM_RESUME": "sometimes"}, env_file=None)
    assert "INFERENCE_STREAM_RESUME" in str(info.value)
    assert "same-model" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"INFERENCE_STREAM_RESUME_MAX": "-1"}, env_file=None)
    assert "INFERENCE_STREAM_RESUME_MAX" in str(info.value)


def test_the_first_party_plugins_declare_what_is_honest():
    import inference_llamacpp
    import inference_ollama
    import inference_openai
    import inference_textgen
    import inference_vllm

    assert inference_llamacpp.plugin.continue_final_message is True
    assert inference_vllm.plugin.continue_final_message is True
    assert inference_ollama.plugin.continue_final_message is False
    assert inference_openai.plugin.continue_final_message is False
    assert inference_textgen.plugin.continue_final_message is False


async def test_a_stream_of_other_objects_is_not_resumed():
    """A plugin's own event objects (a native protocol, say) are relayed as they are: no
    resume, the error as before."""

    class Event:
        usage = None

    class Native(Continuing):
        @hookimpl
        async def chat(self, request, config, http):
            async def events():
                yield Event()
                raise BackendUnavailable("gone", backend=config.name)

            return events()

    cfg = config("a", base_urls=("http://a.test", "http://a2.test"))
    router = build({}, configs=[cfg], plugins={"a": Native()}, policy=NO_RETRY)
    trace = RequestTrace()
    got = []

    async def consume() -> None:
        async with router:
            async for item in await router.chat(req(stream=True), trace=trace):
                got.append(item)

    with pytest.raises(BackendUnavailable):
        await consume()
    assert len(got) == 1
    assert trace.resumes is None
    assert router.in_flight == 0


async def test_a_clients_own_prefill_is_extended_and_its_echo_dropped():
    a = Replicas(cut(" forty"), finish("The answer is forty", "-two"))
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "What is the answer?"},
            {"role": "assistant", "content": "The answer is"},
        ],
        stream=True,
        continue_final_message=True,
        add_generation_prompt=False,
    )
    chunks, _ = await run(replicas(a, Echoing()), request)
    assert text_of(chunks) == " forty-two"
    assert a.bodies[1]["messages"][-1] == {"role": "assistant", "content": "The answer is forty"}
    assert len(a.bodies[1]["messages"]) == 2


async def test_a_final_assistant_message_without_the_flag_is_not_resumed():
    a = Replicas(cut(" forty"), finish("-two"))
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "What is the answer?"},
            {"role": "assistant", "content": "The answer is"},
        ],
        stream=True,
    )
    with pytest.raises(BackendUnavailable):
        await run(replicas(a), request)
    assert len(a.bodies) == 1


async def test_a_client_gone_during_a_resume_releases_everything():
    a = Replicas(cut("Hello"), streamed(5.0, chunk(" late"), DONE))
    router = replicas(a)
    async with router:
        stream = await router.chat(req(stream=True))
        assert (await stream.__anext__()).choices[0].delta.role == "assistant"
        assert (await stream.__anext__()).choices[0].delta.content == "Hello"
        task = asyncio.ensure_future(stream.__anext__())  # the cut, then the slow resume
        for _ in range(100):
            if len(a.bodies) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(a.bodies) == 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert router.in_flight == 0
        assert all(r.outstanding == 0 for r in router._chain[0].replicas.replicas)


# ------------------------------------------------------------------------ every protocol


def _text_events(body: str, kind: str) -> str:
    out = []
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if kind == "chat" and event.get("choices"):
            out.append(event["choices"][0]["delta"].get("content") or "")
        elif kind == "messages" and event.get("type") == "content_block_delta":
            out.append(event["delta"].get("text", ""))
        elif kind == "responses" and event.get("type") == "response.output_text.delta":
            out.append(event["delta"])
    return "".join(out)


@pytest.mark.parametrize(
    ("path", "body", "kind", "end"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "chat",
         "data: [DONE]"),
        ("/v1/messages", {"max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
         "messages", '"type":"message_stop"'),
        ("/v1/responses", {"input": "hi"}, "responses", '"type":"response.completed"'),
    ],
)  # fmt: skip
async def test_every_protocol_of_the_gateway_gets_the_resume(path, body, kind, end, caplog):
    from inference_core.gateway import GatewaySettings, create_app
    from inference_core.gateway.logs import JsonFormatter

    a = Replicas(cut("Hello", " wor"), finish("ld", "!"))
    router = replicas(a)
    app = create_app(router, GatewaySettings.from_env(env={}))
    transport = httpx.ASGITransport(app)
    with caplog.at_level(logging.INFO, logger="inference_core.gateway.access"):
        async with router, httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            r = await http.post(path, json={"model": "a-model", "stream": True, **body})
            metrics = (await http.get("/metrics")).text
    assert r.status_code == 200
    assert _text_events(r.text, kind) == "Hello world!"
    assert '"error":{' not in r.text.replace(": ", ":")  # no in-band error event
    assert end in r.text or end in r.text.replace(": ", ":")
    assert 'inference_gateway_stream_resumes_total{backend="a",outcome="resumed"} 1.0' in metrics
    assert "inference_gateway_stream_errors_total{" not in metrics
    assert router.in_flight == 0
    [record] = [r for r in caplog.records if r.getMessage() == "request" and path in str(
        getattr(r, "fields", {}).get("path"))]  # fmt: skip
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 200
    assert line["resumes"] == [
        {"from": "a", "replica": f"http://{a.hosts[0]}", "error": "unavailable",
         "after_tokens": 2, "outcome": "resumed", "to": "a"}
    ]  # fmt: skip
