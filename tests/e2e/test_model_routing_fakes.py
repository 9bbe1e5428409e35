"""Model routing over the Ollama and OpenAI fakes, several models each, through a real gateway
with the official ``openai`` SDK: the issue's case (Ollama primary, an OpenAI-compatible
fallback that has the model), streamed and not, for chat, completions and embeddings; a model
pulled into Ollama after the start; and the same case through ``inference chat``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes import FakeOllamaServer, FakeOpenAIServer

MSG = [{"role": "user", "content": "Say hello"}]
OLLAMA_MODELS = ["llama3.2:1b", "qwen2.5:0.5b", "nomic-embed-text:latest"]
OPENAI_MODELS = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]


@pytest.fixture
def fleet() -> Iterator[tuple[FakeOllamaServer, FakeOpenAIServer]]:
    with (
        FakeOllamaServer(models=list(OLLAMA_MODELS)) as ollama,
        FakeOpenAIServer(api_key="sk-up", models=list(OPENAI_MODELS), strict_models=True) as up,
    ):
        yield ollama, up


def env_for(ollama: FakeOllamaServer, up: FakeOpenAIServer) -> dict[str, str]:
    return {  # the seed's variables, as a new user writes them
        "INFERENCE_PROVIDER": "ollama",
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "openai",
        "LOCAL_INFERENCE_URL": ollama.url,
        "OPENAI_API_BASE": up.base_url,
        "OPENAI_API_KEY": "sk-up",
        "INFERENCE_MAX_RETRIES": "0",
        "HEALTH_CHECK_INTERVAL": "3600",
    }


def posts(server: Any, path: str) -> int:
    return sum(1 for r in server.requests if r.path == path)


def test_each_model_reaches_the_server_that_has_it(serve_gateway: Any, fleet: Any) -> None:
    ollama, up = fleet
    gw = serve_gateway(env_for(ollama, up))
    client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
    # the case: a model only the fallback serves goes there first, streamed and not
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    assert (raw.headers["x-inference-backend"], raw.headers["x-inference-model"]) == (
        "openai",
        "gpt-4o",
    )
    assert raw.parse().model == "gpt-4o"
    stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the fake server."
    assert posts(ollama, "/api/chat") == 0  # the primary never saw a model it does not have
    assert [r.json["model"] for r in up.requests if r.path == "/v1/chat/completions"] == [
        "gpt-4o",
        "gpt-4o",
    ]
    # Ollama's models go to Ollama, by id and by implicit :latest form
    raw = client.chat.completions.with_raw_response.create(model="qwen2.5:0.5b", messages=MSG)
    assert raw.headers["x-inference-backend"] == "ollama"
    assert ollama.last("/api/chat").json["model"] == "qwen2.5:0.5b"
    emb = client.embeddings.with_raw_response.create(model="nomic-embed-text", input=["a", "b"])
    assert emb.headers["x-inference-backend"] == "ollama"
    assert ollama.last("/api/embed").json["model"] == "nomic-embed-text:latest"
    emb = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="a")
    assert emb.headers["x-inference-backend"] == "openai"
    done = client.completions.with_raw_response.create(model="gpt-4o-mini", prompt="Once")
    assert done.headers["x-inference-backend"] == "openai"
    # backend/model, and the 404 for a name nobody has
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=MSG)
    assert raw.headers["x-inference-backend"] == "openai"
    asked = posts(ollama, "/api/chat") + posts(up, "/v1/chat/completions")
    listings = posts(ollama, "/api/tags"), posts(up, "/v1/models")
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4.1", messages=MSG)
    assert info.value.code == "model_not_found"
    assert "gpt-4o" in info.value.message
    # the miss refreshed both catalogs (one listing each) and asked no backend for the model
    assert posts(ollama, "/api/chat") + posts(up, "/v1/chat/completions") == asked
    assert (posts(ollama, "/api/tags"), posts(up, "/v1/models")) == (
        listings[0] + 1,
        listings[1] + 1,
    )
    listed = {(m.id, m.owned_by) for m in client.models.list().data}
    assert {("llama3.2:1b", "ollama"), ("gpt-4o", "openai")} <= listed


def test_a_model_pulled_after_the_start_is_routable_without_a_restart(
    serve_gateway: Any, fleet: Any
) -> None:
    ollama, up = fleet
    gw = serve_gateway(env_for(ollama, up))
    client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="mistral:7b", messages=MSG)
    ollama.models.append("mistral:7b")  # `ollama pull mistral:7b` while the gateway runs
    # the refresh a miss triggers runs at most every INFERENCE_MODELS_REFRESH seconds (10 by
    # default): the next request after that finds it
    gw.router.catalog._last_miss_refresh -= 10
    for stream in (False, True):
        raw = client.chat.completions.with_raw_response.create(
            model="mistral:7b", messages=MSG, stream=stream
        )
        assert raw.headers["x-inference-backend"] == "ollama"
    assert ollama.last("/api/chat").json["model"] == "mistral:7b"


def test_inference_chat_reaches_the_fallback_server_that_has_the_model(fleet: Any) -> None:
    from typer.testing import CliRunner

    from inference_core import cli

    ollama, up = fleet
    app = cli.build_app(env=env_for(ollama, up))
    result = CliRunner().invoke(app, ["chat", "hi", "-m", "gpt-4o-mini", "--no-stream"])
    assert result.exit_code == 0, result.output
    assert "Hello from the fake server." in result.stdout
    assert "served by openai (gpt-4o-mini)" in result.stderr
    assert posts(ollama, "/api/chat") == 0
    result = CliRunner().invoke(app, ["chat", "hi", "-m", "no-such-model"])
    assert result.exit_code != 0
    assert "model_not_found" in result.output
