"""The fakes, checked against the official clients and their own types, so they cannot drift.

Every answer is parsed by ``openai`` / ``ollama`` exactly as an application would, then
validated strictly with those libraries' pydantic types.
"""

from __future__ import annotations

import base64
import struct

import httpx
import ollama
import openai
import pytest
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion import Completion

from tests.fakes import FakeOllamaServer, FakeOpenAIServer, FakeTextgenServer, fake_vector

MESSAGES = [{"role": "user", "content": "Say hello"}]


async def drain(stream, seen: list) -> None:
    async for item in stream:
        seen.append(item)


@pytest.fixture(scope="module")
def oai_server():
    with FakeOpenAIServer(api_key="sk-fake") as srv:
        yield srv


@pytest.fixture
def oai(oai_server):
    oai_server.reset()
    return oai_server


@pytest.fixture
async def client(oai):
    async with openai.AsyncOpenAI(
        base_url=oai.base_url, api_key="sk-fake", max_retries=0, timeout=5
    ) as c:
        yield c


@pytest.fixture(scope="module")
def ollama_server():
    with FakeOllamaServer() as srv:
        yield srv


@pytest.fixture
def oll(ollama_server):
    ollama_server.reset()
    return ollama_server


# ------------------------------------------------------------------------------------ OpenAI


async def test_openai_chat(client):
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    ChatCompletion.model_validate(completion.to_dict())
    assert completion.choices[0].message.content == "Hello from the fake server."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5


async def test_openai_chat_length_and_tool_call(client, oai):
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=2
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Hello from"
    oai.behaviour = "tool_call"
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=tools
    )
    ChatCompletion.model_validate(completion.to_dict())
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"location":"Paris","unit":"celsius"}'


async def test_openai_stream_with_usage(client):
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    for c in chunks:
        ChatCompletionChunk.model_validate(c.to_dict())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello from the fake server."
    )
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


async def test_openai_stream_tool_call_pieces_join(client, oai):
    oai.behaviour = "tool_call"
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True
    )
    chunks = [c async for c in stream]
    args = "".join(
        tc.function.arguments or "" for c in chunks for tc in (c.choices[0].delta.tool_calls or [])
    )
    assert args == '{"location":"Paris","unit":"celsius"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_openai_completions(client):
    completion = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
    Completion.model_validate(completion.to_dict())
    assert completion.choices[0].text == "Hello from the fake server."


@pytest.mark.parametrize("fmt", ["float", "base64"])
async def test_openai_embeddings(client, oai, fmt):
    result = await client.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format=fmt, dimensions=4
    )
    assert oai.last("/v1/embeddings").json["encoding_format"] == fmt
    if fmt == "float":
        CreateEmbeddingResponse.model_validate(result.to_dict())
        assert [len(d.embedding) for d in result.data] == [4, 4]
        assert result.data[0].embedding == pytest.approx(fake_vector("a", 4), abs=1e-6)
    else:  # asked for explicitly, the SDK hands back the wire string: little-endian float32
        floats = struct.unpack("<4f", base64.b64decode(result.data[0].embedding))
        assert floats == pytest.approx(fake_vector("a", 4), abs=1e-6)
    assert result.usage.prompt_tokens == 2


async def test_openai_models(client):
    page = await client.models.list()
    ids = [m.id for m in page.data]
    for m in page.data:
        Model.model_validate(m.to_dict())
    assert ids == ["gpt-4o-mini", "text-embedding-3-small"]


@pytest.mark.parametrize(
    ("behaviour", "exc"),
    [
        ("400", openai.BadRequestError),
        ("401", openai.AuthenticationError),
        ("403", openai.PermissionDeniedError),
        ("404", openai.NotFoundError),
        ("409", openai.ConflictError),
        ("422", openai.UnprocessableEntityError),
        ("429", openai.RateLimitError),
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("context_length", openai.BadRequestError),
        ("reset", openai.APIConnectionError),
        ("garbage", None),
    ],
)
async def test_openai_error_classes(client, oai, behaviour, exc):
    oai.behaviour = behaviour
    if exc is None:  # garbage: the SDK returns the text, it is not a ChatCompletion
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert raw.headers["content-type"].startswith("text/html")
        return
    with pytest.raises(exc) as info:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    if behaviour == "429":
        assert info.value.response.headers["retry-after"] == "1"
        assert info.value.code == "rate_limit_exceeded"
    if behaviour == "context_length":
        assert info.value.code == "context_length_exceeded"
    if behaviour == "404":
        assert info.value.code == "model_not_found"


async def test_openai_wrong_key(oai):
    async with openai.AsyncOpenAI(base_url=oai.base_url, api_key="sk-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            await c.models.list()


async def test_openai_midstream_error_raises_in_sdk(client, oai):
    oai.behaviour = "midstream_error"
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    seen: list = []
    with pytest.raises(openai.APIError):
        await drain(stream, seen)
    assert len(seen) == 2


async def test_openai_slow_times_out(client, oai):
    oai.behaviour = "slow"
    oai.delay = 2
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, timeout=0.3)


async def test_openai_queue_then_behaviour(client, oai):
    oai.queue("500")
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    ok = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert ok.choices[0].message.content
    assert [r.behaviour for r in oai.requests] == ["500", "normal"]


# ------------------------------------------------------------------------------------ Ollama


async def test_ollama_chat(oll):
    client = ollama.AsyncClient(host=oll.url)
    response = await client.chat(model="llama3.2:1b", messages=MESSAGES, options={"seed": 1})
    ollama.ChatResponse.model_validate(response.model_dump())
    assert response.done is True
    assert response.done_reason == "stop"
    assert response.message.content == "Hello from the fake server."
    assert response.eval_count == 5
    assert oll.last("/api/chat").json["stream"] is False


async def test_ollama_chat_stream(oll):
    client = ollama.AsyncClient(host=oll.url)
    parts = [
        p
        async for p in await client.chat(
            model="llama3.2:1b", messages=MESSAGES, stream=True, options={"num_predict": 3}
        )
    ]
    for p in parts:
        ollama.ChatResponse.model_validate(p.model_dump())
    assert "".join(p.message.content for p in parts) == "Hello from the"
    assert parts[-1].done
    assert parts[-1].done_reason == "length"
    assert not any(p.done for p in parts[:-1])


async def test_ollama_tool_call(oll):
    oll.behaviour = "tool_call"
    client = ollama.AsyncClient(host=oll.url)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    response = await client.chat(model="llama3.2:1b", messages=MESSAGES, tools=[tool])
    call = response.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"location": "Paris", "unit": "celsius"}


async def test_ollama_embed_list_ps(oll):
    client = ollama.AsyncClient(host=oll.url)
    emb = await client.embed(model="nomic-embed-text", input=["a", "b", "c"], dimensions=5)
    ollama.EmbedResponse.model_validate(emb.model_dump())
    assert [len(e) for e in emb.embeddings] == [5, 5, 5]
    assert emb.prompt_eval_count == 3
    listing = await client.list()
    ollama.ListResponse.model_validate(listing.model_dump())
    assert [m.model for m in listing.models] == ["llama3.2:1b", "nomic-embed-text:latest"]
    ps = await client.ps()
    assert ps.models[0].model == "llama3.2:1b"


async def test_ollama_version_and_root(oll):
    async with httpx.AsyncClient(base_url=oll.url) as http:
        assert (await http.get("/api/version")).json() == {"version": "0.12.6"}
        assert (await http.get("/")).text == "Ollama is running"
        assert (await http.get("/health")).status_code == 404


async def test_ollama_missing_model(oll):
    client = ollama.AsyncClient(host=oll.url)
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="nope:7b", messages=MESSAGES)
    assert info.value.status_code == 404
    assert info.value.error == 'model "nope:7b" not found, try pulling it first'


async def test_ollama_midstream_error(oll):
    oll.behaviour = "midstream_error"
    client = ollama.AsyncClient(host=oll.url)
    seen: list = []
    stream = await client.chat(model="llama3.2:1b", messages=MESSAGES, stream=True)
    with pytest.raises(ollama.ResponseError) as info:
        await drain(stream, seen)
    assert len(seen) == 2
    assert "unexpected EOF" in info.value.error


@pytest.mark.parametrize("status", ["400", "429", "500", "503"])
async def test_ollama_status_errors(oll, status):
    oll.behaviour = status
    client = ollama.AsyncClient(host=oll.url)
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="llama3.2:1b", messages=MESSAGES)
    assert info.value.status_code == int(status)
    assert isinstance(info.value.error, str)
    assert info.value.error


async def test_ollama_load_request(oll):
    client = ollama.AsyncClient(host=oll.url)
    response = await client.chat(model="llama3.2:1b", messages=[])
    assert response.done_reason == "load"


# ----------------------------------------------------------------------------------- textgen


async def test_textgen_with_openai_client():
    with FakeTextgenServer(api_key="k", admin_key="adm") as srv:
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=0) as c:
            completion = await c.chat.completions.create(model="whatever", messages=MESSAGES)
            ChatCompletion.model_validate(completion.to_dict())
            assert completion.model == "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"
            models = await c.models.list()
            assert [m.id for m in models.data] == ["Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"]
            emb = await c.embeddings.create(model="x", input="hi")
            assert emb.model == "sentence-transformers/all-mpnet-base-v2"
            with pytest.raises(openai.BadRequestError) as info:
                await c.chat.completions.create(model="x", messages=MESSAGES, n=2, stream=True)
            assert info.value.param == "n"
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="bad", max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError):
                await c.models.list()
        async with httpx.AsyncClient(base_url=srv.url) as http:
            assert (await http.get("/v1/internal/model/list")).status_code == 401
            user = {"authorization": "Bearer k"}
            admin = {"authorization": "Bearer adm"}
            assert (await http.get("/v1/internal/model/list", headers=user)).status_code == 401
            names = (await http.get("/v1/internal/model/list", headers=admin)).json()
            assert names == {"model_names": srv.available}
            r = await http.post(
                "/v1/internal/model/load",
                json={"model_name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf"},
                headers=admin,
            )
            assert r.json() == "OK"
            info = (await http.get("/v1/internal/model/info", headers=user)).json()
            assert info["model_name"] == "Llama-3.2-3B-Instruct-Q4_K_M.gguf"
            assert (await http.get("/v1/internal/health", headers=user)).json() == {"status": "ok"}


async def test_ollama_tools_unsupported(oll):
    oll.tool_models = []
    client = ollama.AsyncClient(host=oll.url)
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="llama3.2:1b", messages=MESSAGES, tools=[tool])
    assert info.value.status_code == 400
    assert info.value.error.endswith("does not support tools")
