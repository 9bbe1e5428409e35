"""Fallback across two REAL servers: chain llamacpp -> vllm.

A llama-server this test owns (fixed port, so it can be killed and restarted in place) is the
primary, the vLLM chat peer the fallback.  Kill the primary mid-run: every request still gets an
answer, from vLLM.  Restart it: once its health is ready, requests come back to llama.cpp.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from inference_core import ChatChunk, ChatResponse, RequestTrace, Router
from inference_llamacpp.managed import ManagedServer, ServerSpec

pytestmark = [pytest.mark.llamacpp, pytest.mark.vllm]


def request(stream: bool = False) -> dict:
    return {
        "model": "default",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 3,
        "temperature": 0,
        "stream": stream,
    }


async def served_by(router: Router, stream: bool = False) -> str:
    trace = RequestTrace()
    result = await router.chat(request(stream), trace=trace)
    if stream:
        chunks = [c async for c in result]
        assert chunks
        assert all(isinstance(c, ChatChunk) for c in chunks)
    else:
        assert isinstance(result, ChatResponse)
        assert result.choices
    return trace.backend


async def test_kill_primary_then_restart(llama_assets, vllm_chat_url, free_port, tmp_path, http):
    spec = ServerSpec(
        binary=llama_assets["server_bin"],
        model=llama_assets["model_path"],
        alias="gemma-3-270m",
        threads=1,
        chat_template=llama_assets["chat_template"],
    )
    llama = ManagedServer(spec, tmp_path, port=free_port)
    await llama.start(http, timeout=60)
    env = {
        "INFERENCE_PROVIDER": "llamacpp",
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "vllm",
        "INFERENCE_LLAMACPP_BASE_URL": llama.url,
        "INFERENCE_VLLM_BASE_URL": vllm_chat_url,
        "HEALTH_CHECK_INTERVAL": "0.5",
        "HEALTH_CHECK_TIMEOUT": "2",
        "INFERENCE_BREAKER_COOLDOWN": "1",
    }
    timeline: list[tuple[float, str, str]] = []
    t0 = time.monotonic()
    try:
        async with Router.from_env(env, env_file=None) as router:
            # 1. both up: the primary serves
            for stream in (False, True):
                assert await served_by(router, stream) == "llamacpp"

            # 2. kill the primary mid-run: nothing is dropped, vLLM serves
            os.kill(llama.pid, signal.SIGKILL)
            await asyncio.to_thread(llama.process.wait, 5)
            killed_at = time.monotonic()
            for i in range(4):
                backend = await served_by(router, stream=i % 2 == 1)
                timeline.append((round(time.monotonic() - t0, 2), "after kill", backend))
                assert backend == "vllm"
            health = await router.health(refresh=True)
            assert health["llamacpp"]["state"] == "down"
            assert health["vllm"]["state"] == "ready"

            # 3. restart it on the same port: once healthy, requests come back to llama.cpp
            await llama.start(http, timeout=60)
            restarted_at = time.monotonic()
            back = None
            for _ in range(60):
                backend = await served_by(router)
                timeline.append((round(time.monotonic() - t0, 2), "after restart", backend))
                if backend == "llamacpp":
                    back = time.monotonic()
                    break
                await asyncio.sleep(0.25)
            assert back is not None, f"requests never came back to llama.cpp: {timeline}"
            for stream in (False, True, False):
                assert await served_by(router, stream) == "llamacpp"
            health = await router.health(refresh=True)
            assert health["llamacpp"]["state"] == "ready"
            print(
                f"\nfailover: first request after the kill served by vLLM "
                f"{timeline[0][0] - (killed_at - t0):.2f}s after the kill; "
                f"back on llama.cpp {back - restarted_at:.2f}s after it was ready again; "
                f"timeline {timeline}"
            )
    finally:
        await asyncio.to_thread(llama.stop, 5.0)
