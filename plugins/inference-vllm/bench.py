"""Bounded benchmark of inference-vllm: tokens/s through the plugin vs direct, probe latency.

    .venv/bin/python plugins/inference-vllm/bench.py --url http://127.0.0.1:28200

(vLLM's start-to-ready, 50-95 s on this machine, is measured by scripts/peers/vllm.sh start.)
1. tokens/s for one stream of ``--max-tokens`` tokens (``ignore_eos``), alternating a direct
   ``httpx`` stream to the server with the same request through the plugin's ``chat`` hook,
   ``--runs`` times each; medians of time to first token and of decode tokens/s.
2. latency of the ``health`` hook, plain and with ``health_deep`` (reads /metrics), 5 each.
At most 2 x runs + 1 generation requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import inference_vllm
from inference_core import BackendConfig
from inference_core.http import create_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from stream_bench import BODY, direct, summary, through_plugin


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a vLLM chat server")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    async with create_client() as http:
        plugin = inference_vllm.VLLMPlugin()
        config = BackendConfig(name="vllm", base_urls=(args.url.rstrip("/"),))
        config = await plugin.startup(config=config, http=http) or config
        url = config.base_url
        model = (await plugin.list_models(config=config, http=http))[0].id
        BODY["model"] = model
        await direct(url, 4)  # warm-up
        plain, plug = [], []
        for _ in range(args.runs):
            plain.append(await direct(url, args.max_tokens))
            plug.append(await through_plugin(plugin, config, http, args.max_tokens))
        print(f"one stream of {args.max_tokens} tokens against {url} ({model}):")
        print(summary("direct", plain))
        print(summary("plugin", plug))
        deep = config.model_copy(update={"options": {**config.options, "health_deep": "true"}})
        for label, cfg in (("health", config), ("deep", deep)):
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                state = (await plugin.health(config=cfg, http=http)).state
                times.append((time.perf_counter() - t0) * 1000)
            print(f"{label:>7}: {state}, median {statistics.median(times):.1f} ms per probe")


if __name__ == "__main__":
    asyncio.run(main())
