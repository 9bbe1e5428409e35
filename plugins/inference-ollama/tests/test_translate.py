"""Pure translation checks: OpenAI requests -> Ollama bodies, Ollama answers -> OpenAI shapes."""

from __future__ import annotations

import json

import pytest
from ollama._types import ChatRequest as OllamaChatRequest
from ollama._types import EmbedRequest as OllamaEmbedRequest

from inference_core import (
    BadRequest,
    CapabilityNotSupported,
    ChatRequest,
    ConfigError,
    EmbeddingRequest,
)
from inference_core.testing import make_config
from inference_ollama import translate

CFG = make_config("ollama", base_url="http://ollama.test", model="llama3.2:1b")
USER = [{"role": "user", "content": "hi"}]


def body(options=None, **kw):
    cfg = make_config("ollama", base_url="http://o.test", model="llama3.2:1b", options=options)
    result = translate.chat_body(
        ChatRequest(model="default", messages=kw.pop("messages", USER), **kw), cfg
    )
    OllamaChatRequest.model_validate(result)  # the official client's own request schema
    return result


def test_minimal_body():
    assert body() == {
        "model": "llama3.2:1b",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        # never unbounded: Ollama's own default (-1) generates until the context is full
        "options": {"num_predict": translate.MAX_PREDICT_DEFAULT},
    }


def test_openai_params_become_options():
    b = body(
        max_tokens=12,
        temperature=0.3,
        top_p=0.9,
        seed=42,
        stop="END",
        presence_penalty=0.5,
        frequency_penalty=0.25,
    )
    assert b["options"] == {
        "num_predict": 12,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 42,
        "stop": ["END"],
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
    }


def test_max_completion_tokens_wins():
    assert body(max_tokens=5, max_completion_tokens=9)["options"]["num_predict"] == 9


def test_extras_pass_through_as_options():
    b = body(top_k=20, min_p=0.05, repeat_penalty=1.1, num_ctx=8192, stop=["a", "b"])
    assert b["options"] == {
        "top_k": 20,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
        "num_ctx": 8192,
        "stop": ["a", "b"],
        "num_predict": 8192,
    }


def test_num_ctx_from_option_and_request_wins():
    assert body(options={"num_ctx": "16384"})["options"]["num_ctx"] == 16384
    assert body(options={"num_ctx": "16384"}, num_ctx=2048)["options"]["num_ctx"] == 2048
    with pytest.raises(ConfigError, match="INFERENCE_OLLAMA_NUM_CTX"):
        body(options={"num_ctx": "big"})


def test_native_options_win():
    request = ChatRequest(messages=USER, temperature=0.1, options={"temperature": 0.9})
    out = translate.chat_body(request, CFG)
    assert out["options"] == {"temperature": 0.9, "num_predict": 8192}


# ------------------------------------------ client options within the gateway's caps (#11)


def test_server_resource_options_are_not_the_clients_to_set():
    for key in ("num_gpu", "num_thread", "num_batch", "main_gpu", "use_mmap", "low_vram"):
        request = ChatRequest(messages=USER, options={key: 1})
        with pytest.raises(BadRequest, match=key) as err:
            translate.chat_body(request, CFG)
        assert err.value.param == "options"


def test_num_predict_is_always_bounded():
    assert body(max_tokens=100)["options"]["num_predict"] == 100
    assert body(options={"max_predict": "256"})["options"]["num_predict"] == 256
    assert body(options={"max_predict": "256"}, max_tokens=5000)["options"]["num_predict"] == 256
    for native in (-1, -2, 0, 10**9, "lots"):
        request = ChatRequest(messages=USER, options={"num_predict": native})
        cfg = make_config("ollama", base_url="http://o.test", model="m",
                          options={"max_predict": "256"})  # fmt: skip
        out = translate.chat_body(request, cfg)
        assert out["options"]["num_predict"] == 256, native


def test_num_ctx_from_clients_is_capped():
    cfg = make_config("ollama", base_url="http://o.test", model="m", options={"num_ctx": "4096"})
    request = ChatRequest(messages=USER, options={"num_ctx": 131072})
    assert translate.chat_body(request, cfg)["options"]["num_ctx"] == 4096  # the operator's
    request = ChatRequest(messages=USER, num_ctx=2048)
    assert translate.chat_body(request, cfg)["options"]["num_ctx"] == 2048  # lower is fine
    assert body(num_ctx=10**7)["options"]["num_ctx"] == translate.MAX_NUM_CTX_DEFAULT
    with pytest.raises(BadRequest, match="num_ctx"):
        translate.chat_body(ChatRequest(messages=USER, options={"num_ctx": -5}), cfg)
    emb = translate.embed_body(EmbeddingRequest(input="x", num_ctx=10**7), cfg)
    assert emb["options"] == {"num_ctx": 4096}


def test_keep_alive_from_clients_is_capped():
    assert body(keep_alive=-1)["keep_alive"] == 1800  # forever is not the client's to ask
    assert body(keep_alive="2h")["keep_alive"] == 1800
    assert body(keep_alive="10m")["keep_alive"] == "10m"
    assert body(options={"keep_alive": "5m"}, keep_alive="1h")["keep_alive"] == 300
    assert body(options={"max_keep_alive": "1h"}, keep_alive="45m")["keep_alive"] == "45m"
    assert body(options={"keep_alive": "-1"}, keep_alive=-1)["keep_alive"] == -1  # operator's
    with pytest.raises(BadRequest, match="keep_alive"):
        body(keep_alive="soon")
    assert translate.duration_seconds("1h30m") == 5400
    assert translate.duration_seconds("-1") == -1
    assert translate.duration_seconds("10x") is None


def test_keep_alive_from_request_or_option():
    assert body(keep_alive="10m")["keep_alive"] == "10m"
    assert body(options={"keep_alive": "-1"})["keep_alive"] == -1
    assert body(options={"keep_alive": "0"})["keep_alive"] == 0
    assert body(options={"keep_alive": "30m"}, keep_alive=0)["keep_alive"] == 0
    assert "keep_alive" not in body()


def test_json_mode_and_schema():
    assert body(response_format={"type": "json_object"})["format"] == "json"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert body(response_format=rf)["format"] == schema
    assert "format" not in body(response_format={"type": "text"})
    with pytest.raises(BadRequest):
        body(response_format={"type": "json_schema", "json_schema": {"name": "x"}})


def test_n_above_one_is_a_capability_gap():
    with pytest.raises(CapabilityNotSupported):
        body(n=2)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_tools_and_tool_choice_none():
    assert body(tools=TOOLS)["tools"] == TOOLS
    assert body(tools=TOOLS, tool_choice="auto")["tools"] == TOOLS
    assert "tools" not in body(tools=TOOLS, tool_choice="none")


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_a_forced_tool_call_is_refused_never_silently_auto(choice):
    from inference_core import CapabilityNotSupported

    with pytest.raises(CapabilityNotSupported, match="cannot force a tool call"):
        body(tools=TOOLS, tool_choice=choice)


def test_tool_round_trip_messages():
    msgs = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    out = body(messages=msgs, tools=TOOLS)["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    }
    assert out[2] == {
        "role": "tool",
        "content": "18C",
        "tool_call_id": "call_1",
        "tool_name": "get_weather",
    }


def test_bad_tool_arguments():
    msgs = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1, 2]"}}],
        }
    ]
    with pytest.raises(BadRequest):
        body(messages=msgs)


def test_images_from_data_urls():
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    out = body(messages=[{"role": "user", "content": content}])["messages"][0]
    assert out == {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]}


def test_remote_image_url_is_a_capability_gap():
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(CapabilityNotSupported, match="data: URLs"):
        body(messages=[{"role": "user", "content": content}])


@pytest.mark.parametrize(
    ("done_reason", "calls", "expected"),
    [
        ("stop", False, "stop"),
        ("length", False, "length"),
        ("load", False, "stop"),
        ("unload", False, "stop"),
        (None, False, "stop"),
        ("stop", True, "tool_calls"),
    ],
)
def test_finish_reason(done_reason, calls, expected):
    assert translate.finish_reason(done_reason, calls) == expected


def test_chat_response_with_tool_calls_and_usage():
    data = {
        "model": "llama3.2:1b",
        "created_at": "2025-10-01T12:00:00.5Z",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
        },
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 7,
        "eval_count": 3,
    }
    r = translate.chat_response(data)
    assert r.created == 1759320000
    call = r.choices[0].message.tool_calls[0]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"x": 1}
    assert r.choices[0].message.content is None
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.usage.model_dump() == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_usage_when_prompt_was_cached():
    assert translate.usage({"eval_count": 4}).model_dump() == {
        "prompt_tokens": 0,
        "completion_tokens": 4,
        "total_tokens": 4,
    }


def test_stream_translator():
    t = translate.StreamTranslator(include_usage=True)
    lines = [
        {
            "model": "m",
            "created_at": "2025-10-01T12:00:00Z",
            "message": {"role": "assistant", "content": "Hel"},
            "done": False,
        },
        {"model": "m", "message": {"role": "assistant", "content": "lo"}, "done": False},
        {
            "model": "m",
            "message": {"role": "assistant", "content": "", "thinking": "hmm"},
            "done": False,
        },
        {
            "model": "m",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "length",
            "prompt_eval_count": 2,
            "eval_count": 2,
        },
    ]
    chunks = [c for line in lines for c in t.feed(line)]
    assert t.done
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == "Hel"
    assert chunks[1].choices[0].delta.role is None
    assert chunks[2].choices[0].delta.reasoning_content == "hmm"
    assert chunks[3].choices[0].finish_reason == "length"
    assert chunks[3].choices[0].delta.content is None
    assert chunks[4].choices == []
    assert chunks[4].usage.total_tokens == 4
    assert len(chunks) == 5


def test_stream_translator_tool_call_indexes():
    t = translate.StreamTranslator(include_usage=False)
    call = {"function": {"name": "f", "arguments": {}}}
    out = t.feed(
        {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [call]}}
    )
    out += t.feed(
        {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [call]}}
    )
    out += t.feed(
        {
            "model": "m",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
        }
    )
    assert [c.choices[0].delta.tool_calls[0]["index"] for c in out[:2]] == [0, 1]
    assert out[-1].choices[0].finish_reason == "tool_calls"


def test_embed_body():
    req = EmbeddingRequest(model="default", input=["a", "b"], dimensions=64, truncate=False)
    cfg = make_config(
        "ollama",
        base_url="http://o.test",
        model="nomic-embed-text",
        options={"keep_alive": "1h", "num_ctx": "2048"},
    )
    out = translate.embed_body(req, cfg)
    OllamaEmbedRequest.model_validate(out)
    assert out == {
        "model": "nomic-embed-text",
        "input": ["a", "b"],
        "dimensions": 64,
        "truncate": False,
        "keep_alive": "1h",
        "options": {"num_ctx": 2048},
    }
    with pytest.raises(CapabilityNotSupported, match="token"):
        translate.embed_body(EmbeddingRequest(input=[[1, 2, 3]]), cfg)


def test_same_model():
    assert translate.same_model("llama3.2", "llama3.2:latest")
    assert not translate.same_model("llama3.2:1b", "llama3.2:latest")


async def test_ollama_parallelism_becomes_the_admission_cap(monkeypatch):
    from inference_ollama import plugin

    monkeypatch.delenv("OLLAMA_NUM_PARALLEL", raising=False)
    cfg = make_config("ollama", base_url="http://o.test", model="m")
    assert await plugin.startup(config=cfg) is None  # nothing known: no cap
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "4")
    got = await plugin.startup(config=cfg)
    assert got.options["max_concurrency"] == "4"
    cfg = make_config("ollama", base_url="http://o.test", model="m", options={"num_parallel": "2"})
    assert (await plugin.startup(config=cfg)).options["max_concurrency"] == "2"
    cfg = make_config(
        "ollama", base_url="http://o.test", model="m",
        options={"num_parallel": "2", "max_concurrency": "8"},
    )  # fmt: skip
    assert await plugin.startup(config=cfg) is None  # the explicit cap wins
    bad = make_config("ollama", base_url="http://o.test", options={"max_keep_alive": "x"})
    with pytest.raises(ConfigError, match="INFERENCE_OLLAMA_MAX_KEEP_ALIVE"):
        await plugin.startup(config=bad)
