"""The OpenAI plugin behind core's real Router, configured by the seed's variables alone."""

from __future__ import annotations

import pytest

from inference_core import AllBackendsFailed, RequestTrace, Router

USER = [{"role": "user", "content": "Say hello"}]


@pytest.mark.parametrize("client", ["raw", "sdk"])
async def test_seed_variables(server, client):
    env = {
        "INFERENCE_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test-0123456789abcdef",
        "OPENAI_API_BASE": server.base_url,
        "OPENAI_TIMEOUT": "30",
        "INFERENCE_OPENAI_MODEL": "gpt-4o-mini",
        "INFERENCE_OPENAI_ORGANIZATION": "org-9",
        "INFERENCE_OPENAI_CLIENT": client,
    }
    async with Router.from_env(env, env_file=None) as router:
        trace = RequestTrace()
        r = await router.chat({"model": "default", "messages": USER}, trace=trace)
        assert r.choices[0].message.content == "Hello from the fake server."
        assert trace.backend == "openai"
        sent = server.last("/v1/chat/completions")
        assert sent.json["model"] == "gpt-4o-mini"
        assert sent.headers["openai-organization"] == "org-9"

        stream = await router.chat(
            {"messages": USER, "stream": True, "stream_options": {"include_usage": True}},
            trace=trace,
        )
        chunks = [c async for c in stream]
        assert chunks[-1].choices == []
        emb = await router.embed({"input": ["a", "b", "c"]})
        assert [d.index for d in emb.data] == [0, 1, 2]
        assert (await router.health(refresh=True))["openai"]["state"] == "ready"


async def test_rate_limit_retry_after_reaches_the_router(server):
    env = {
        "INFERENCE_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test-0123456789abcdef",
        "OPENAI_API_BASE": server.base_url,
        "INFERENCE_MAX_RETRIES": "1",
        "INFERENCE_RETRY_AFTER_CAP": "1",
    }
    async with Router.from_env(env, env_file=None) as router:
        server.retry_after = "0.05"  # honoured: the retry waits that long, no longer
        server.queue("429")
        trace = RequestTrace()
        r = await router.chat({"messages": USER}, trace=trace)
        assert r.choices
        assert trace.retries == 1
        server.behaviour = "401"
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat({"messages": USER})
        assert info.value.attempts[-1].kind == "authentication_failed"
