"""The inference-core conformance kit, run against the llama.cpp plugin."""

from __future__ import annotations

import inference_llamacpp
from inference_core.testing import BackendConformance, canned


class TestLlamaCppConformance(BackendConformance):
    plugin = inference_llamacpp.plugin
    backend_name = "llamacpp"
    base_url = "http://llama.test:8080"
    model = "upstream-model"
    supports_embeddings = True
    supports_complete = True

    def mock_chat(self, upstream):
        upstream.post("/v1/chat/completions").respond(json=canned.chat_completion("Hi"))

    def mock_chat_stream(self, upstream):
        upstream.post("/v1/chat/completions").respond(
            content=canned.chat_stream(["Hel", "lo"]),
            headers={"content-type": "text/event-stream"},
        )

    def mock_embed(self, upstream):
        upstream.post("/v1/embeddings").mock(side_effect=canned.embeddings_handler)

    def mock_complete(self, upstream):
        upstream.post("/v1/completions").respond(json=canned.completion())

    def mock_health(self, upstream):
        upstream.get("/health").respond(200, json={"status": "ok"})
        upstream.get("/props").respond(json={"model_alias": "upstream-model", "total_slots": 4})
        upstream.get("/slots").respond(json=[{"id": 0, "n_ctx": 2048, "is_processing": True}])

    def mock_list_models(self, upstream):
        upstream.get("/v1/models").respond(json=canned.models(["upstream-model"]))
