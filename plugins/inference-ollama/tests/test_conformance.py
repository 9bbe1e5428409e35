"""The inference-core conformance kit, run against the Ollama plugin (native API upstream)."""

from __future__ import annotations

import json

import httpx

import inference_ollama
from inference_core.testing import BackendConformance, canned
from inference_core.testing.wire import Wire

MODEL = "upstream-model"


def _line(content: str, done: bool = False, **extra) -> dict:
    return {
        "model": MODEL,
        "created_at": "2025-10-01T12:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": done,
        **extra,
    }


def _embed(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dims = body.get("dimensions") or 8
    return httpx.Response(
        200,
        json={
            "model": body["model"],
            "embeddings": [canned.embedding_for(text, dims=dims) for text in inputs],
            "prompt_eval_count": len(inputs),
        },
    )


def _ndjson(lines: list[dict]) -> httpx.Response:
    content = "".join(json.dumps(x) + "\n" for x in lines).encode()
    return httpx.Response(200, content=content, headers={"content-type": "application/x-ndjson"})


class OllamaWire(Wire):
    """Ollama's native API, as the conformance kit's wire-level checks need it."""

    not_forwarded = {
        "stream_options": "Ollama has none: the plugin builds the usage chunk from the done line",
        "tool_choice": "Ollama has none: 'none' drops the tools, a forced call is refused",
        "encoding_format": "Ollama answers floats only: the plugin encodes base64 itself",
    }

    def answer(self, request, scenario):
        path = request.url.path
        if request.method != "POST" or path not in ("/api/chat", "/api/embed"):
            return None
        body = json.loads(request.content)
        if path == "/api/embed":
            return _embed(request)
        if not body.get("stream"):
            return httpx.Response(200, json=_line("Hi", True, done_reason="stop", eval_count=1))
        if scenario == "stream_error":
            return _ndjson([_line("Hel"), {"error": "CUDA out of memory while generating"}])
        done = _line("", True, done_reason="stop", prompt_eval_count=3, eval_count=2)
        return _ndjson([_line("Hel"), _line("lo"), done])

    def fields(self, request):
        if request.method != "POST" or request.url.path not in ("/api/chat", "/api/embed"):
            return None
        body = json.loads(request.content)
        options = body.get("options") or {}
        fmt = body.get("format")
        fields = {
            "model": body.get("model"),
            "tools": body.get("tools"),
            "response_format": {"type": "json_object"} if fmt == "json" else fmt,
            "dimensions": body.get("dimensions"),
        }
        fields.update({k: options[k] for k in ("seed", "stop", "top_k") if k in options})
        return fields


TAGS = {"models": [{"name": MODEL, "model": MODEL, "modified_at": "2025-10-01T12:00:00Z"}]}


class TestOllamaConformance(BackendConformance):
    plugin = inference_ollama.plugin
    backend_name = "ollama"
    base_url = "http://ollama.test:11434"
    model = MODEL
    supports_embeddings = True
    wire = OllamaWire()

    def mock_chat(self, upstream):
        upstream.post("/api/chat").respond(
            json=_line("Hi", True, done_reason="stop", prompt_eval_count=3, eval_count=1)
        )

    def mock_chat_stream(self, upstream):
        lines = [_line("Hel"), _line("lo"), _line("", True, done_reason="stop", eval_count=2)]
        upstream.post("/api/chat").respond(
            content="".join(json.dumps(x) + "\n" for x in lines).encode(),
            headers={"content-type": "application/x-ndjson"},
        )

    def mock_embed(self, upstream):
        upstream.post("/api/embed").mock(side_effect=_embed)

    def mock_health(self, upstream):
        upstream.get("/api/version").respond(json={"version": "0.12.6"})
        upstream.get("/api/tags").respond(json=TAGS)

    def mock_list_models(self, upstream):
        upstream.get("/api/tags").respond(json=TAGS)
