"""The inference-core conformance kit, run against the Ollama plugin (native API upstream)."""

from __future__ import annotations

import json

import httpx

import inference_ollama
from inference_core.testing import BackendConformance, canned

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
    return httpx.Response(
        200,
        json={
            "model": body["model"],
            "embeddings": [canned.embedding_for(text) for text in inputs],
            "prompt_eval_count": len(inputs),
        },
    )


TAGS = {"models": [{"name": MODEL, "model": MODEL, "modified_at": "2025-10-01T12:00:00Z"}]}


class TestOllamaConformance(BackendConformance):
    plugin = inference_ollama.plugin
    backend_name = "ollama"
    base_url = "http://ollama.test:11434"
    model = MODEL
    supports_embeddings = True

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
