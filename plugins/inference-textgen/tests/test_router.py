"""The text-generation-webui plugin behind core's real Router, configured by environment."""

from __future__ import annotations

from inference_core import RequestTrace, Router

USER = [{"role": "user", "content": "Say hello"}]
OTHER = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"


async def test_autoload_and_admin_key_from_env(server):
    env = {
        "INFERENCE_PROVIDER": "textgen",
        "INFERENCE_TEXTGEN_BASE_URL": server.url,
        "INFERENCE_TEXTGEN_API_KEY": "tg-api-key",
        "INFERENCE_TEXTGEN_ADMIN_KEY": "tg-admin-key",
        "INFERENCE_TEXTGEN_MODEL": OTHER,
        "INFERENCE_TEXTGEN_AUTOLOAD": "true",
    }
    async with Router.from_env(env, env_file=None) as router:
        trace = RequestTrace()
        r = await router.chat({"model": "default", "messages": USER}, trace=trace)
        assert r.model == OTHER
        assert server.loads == [OTHER]
        models = await router.list_models()
        assert OTHER in [m.id for m in models]
        health = await router.health(refresh=True)
        assert health["textgen"]["state"] == "ready"
