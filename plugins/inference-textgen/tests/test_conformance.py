"""The inference-core conformance kit, run against the text-generation-webui plugin."""

from __future__ import annotations

import json

import httpx

import inference_textgen
from inference_core.testing import BackendConformance, canned

LOADED = "upstream-model"
INFO = {"model_name": LOADED, "lora_names": [], "loader": "llama.cpp"}


class TestTextgenConformance(BackendConformance):
    plugin = inference_textgen.plugin
    backend_name = "textgen"
    base_url = "http://textgen.test:5000"
    model = LOADED
    supports_embeddings = True
    supports_complete = True

    def _info(self, upstream):
        upstream.get("/v1/internal/model/info").respond(json=INFO)

    def mock_chat(self, upstream):
        self._info(upstream)
        upstream.post("/v1/chat/completions").respond(json=canned.chat_completion("Hi"))

    def mock_chat_stream(self, upstream):
        self._info(upstream)
        upstream.post("/v1/chat/completions").respond(
            content=canned.chat_stream(["Hel", "lo"]),
            headers={"content-type": "text/event-stream"},
        )

    def mock_embed(self, upstream):
        upstream.post("/v1/embeddings").mock(side_effect=canned.embeddings_handler)

    def mock_complete(self, upstream):
        self._info(upstream)
        upstream.post("/v1/completions").respond(json=canned.completion())

    def mock_health(self, upstream):
        self._info(upstream)
        upstream.get("/v1/internal/health").respond(json={"status": "ok"})

    def mock_list_models(self, upstream):
        self._info(upstream)


class TestTextgenAdminConformance(TestTextgenConformance):
    """With an admin key and autoload: the fake server loads whatever model it is asked for."""

    options = {"admin_key": "admin-secret-k3y", "autoload": "true"}

    def _info(self, upstream):
        loaded = {"name": LOADED}

        def load(request):
            loaded["name"] = json.loads(request.content)["model_name"]
            return httpx.Response(200, json={"status": "ok"})

        upstream.get("/v1/internal/model/info").mock(
            side_effect=lambda request: httpx.Response(
                200, json={**INFO, "model_name": loaded["name"]}
            )
        )
        upstream.post("/v1/internal/model/load").mock(side_effect=load)

    def mock_list_models(self, upstream):
        upstream.get("/v1/internal/model/list").respond(json={"model_names": [LOADED, "other"]})
