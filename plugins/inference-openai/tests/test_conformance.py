"""The inference-core conformance kit, run against the OpenAI plugin in both client modes."""

from __future__ import annotations

import inference_openai
from inference_core.testing import BackendConformance, canned


class TestOpenAIConformance(BackendConformance):
    plugin = inference_openai.plugin
    backend_name = "openai"
    base_url = "http://openai.test/v1"  # the OpenAI base URL includes /v1
    model = "upstream-model"
    supports_embeddings = True
    supports_complete = True

    def mock_chat(self, upstream):
        upstream.post("/chat/completions").respond(json=canned.chat_completion("Hi"))

    def mock_chat_stream(self, upstream):
        upstream.post("/chat/completions").respond(
            content=canned.chat_stream(["Hel", "lo"]),
            headers={"content-type": "text/event-stream"},
        )

    def mock_embed(self, upstream):
        upstream.post("/embeddings").mock(side_effect=canned.embeddings_handler)

    def mock_complete(self, upstream):
        upstream.post("/completions").respond(json=canned.completion())

    def mock_health(self, upstream):
        upstream.get("/models").respond(json=canned.models(["upstream-model"]))

    def mock_list_models(self, upstream):
        upstream.get("/models").respond(json=canned.models(["upstream-model"]))


class TestOpenAISDKConformance(TestOpenAIConformance):
    options = {"client": "sdk"}
