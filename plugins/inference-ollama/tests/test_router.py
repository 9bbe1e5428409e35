"""The Ollama plugin behind core's real Router, configured by environment variables alone."""

from __future__ import annotations

import pytest

from inference_core import RequestTrace, Router

pytest.importorskip("inference_openai")

USER = [{"role": "user", "content": "Say hello"}]


async def test_seed_variables_and_options_reach_ollama(server):
    env = {
        "INFERENCE_PROVIDER": "ollama",
        "LOCAL_INFERENCE_URL": server.url,
        "LOCAL_MODEL_NAME": "llama3.2:1b",
        "INFERENCE_OLLAMA_NUM_CTX": "4096",
        "INFERENCE_OLLAMA_KEEP_ALIVE": "-1",
    }
    async with Router.from_env(env, env_file=None) as router:
        trace = RequestTrace()
        r = await router.chat({"model": "default", "messages": USER}, trace=trace)
        assert r.choices[0].message.content == "Hello from the fake server."
        assert trace.backend == "ollama"
        sent = server.last("/api/chat").json
        assert sent["model"] == "llama3.2:1b"
        assert sent["options"] == {"num_ctx": 4096, "num_predict": 8192}  # bounded by default
        assert sent["keep_alive"] == -1

        stream = await router.chat(
            {
                "messages": USER,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        chunks = [c async for c in stream]
        assert chunks[-1].usage.completion_tokens == 5

        emb = await router.embed({"input": ["a", "b"]})
        assert len(emb.data) == 2
        health = await router.health(refresh=True)
        assert health["ollama"]["state"] == "ready"
        models = await router.list_models()
        assert "llama3.2:1b" in [m.id for m in models]


async def test_falls_back_from_openai_to_ollama(server):
    from tests.fakes import FakeOpenAIServer

    with FakeOpenAIServer(api_key="sk-x") as upstream:
        env = {
            "INFERENCE_PROVIDER": "openai",
            "ENABLE_FALLBACK": "true",
            "FALLBACK_CHAIN": "ollama",
            "OPENAI_API_KEY": "sk-x",
            "OPENAI_API_BASE": upstream.base_url,
            "INFERENCE_OPENAI_MODEL": "gpt-4o-mini",
            "INFERENCE_OLLAMA_BASE_URL": server.url,
            "INFERENCE_OLLAMA_MODEL": "llama3.2:1b",
            "INFERENCE_MAX_RETRIES": "0",
        }
        async with Router.from_env(env, env_file=None) as router:
            upstream.behaviour = "503"  # healthy at start-up, failing now
            trace = RequestTrace()
            stream = await router.chat({"messages": USER, "stream": True}, trace=trace)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from the fake server."
        assert trace.backend == "ollama"
        assert trace.fallbacks == 1
        assert upstream.last("/v1/chat/completions").json["model"] == "gpt-4o-mini"
        assert server.last("/api/chat").json["model"] == "llama3.2:1b"  # never gpt-4o-mini
