"""Bounded benchmark of inference-llamacpp: start-to-ready and tokens/s, plugin vs direct.

    .venv/bin/python plugins/inference-llamacpp/bench.py                 # managed child
    .venv/bin/python plugins/inference-llamacpp/bench.py --url http://127.0.0.1:28210

1. start-to-ready (managed mode only): ``startup`` of a fresh plugin instance, ``--starts``
   times (binary and model already provisioned: the "later starts" case), then ``shutdown``.
2. tokens/s for one stream of ``--max-tokens`` tokens (``ignore_eos``), alternating a direct
   ``httpx`` stream to the server with the same request through the plugin's ``chat`` hook,
   ``--runs`` times each; medians of time to first token and of decode tokens/s.
At most starts + 2 x runs requests; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import inference_llamacpp
from inference_core import BackendConfig
from inference_core.http import create_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from stream_bench import direct, summary, through_plugin


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an external llama-server (else a managed child)")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", default="1")
    args = parser.parse_args()

    async with create_client() as http:
        plugin = inference_llamacpp.LlamaCppPlugin()
        managed = BackendConfig(name="llamacpp", options={"threads": args.threads})
        if not args.url:
            for i in range(args.starts):
                fresh = inference_llamacpp.LlamaCppPlugin()
                t0 = time.perf_counter()
                await fresh.startup(config=managed, http=http)
                total = time.perf_counter() - t0
                server = fresh.managed_server()
                print(
                    f"start {i + 1}: startup() {total:.2f}s, spawn -> /health 200 "
                    f"{server.ready_after:.2f}s"
                )
                await fresh.shutdown(config=managed)
            config = await plugin.startup(config=managed, http=http)
        else:
            config = BackendConfig(name="llamacpp", base_urls=(args.url,))
        try:
            url = config.base_url
            await direct(url, 4)  # warm-up (prompt cache, first allocation)
            plain, plug = [], []
            for _ in range(args.runs):
                plain.append(await direct(url, args.max_tokens))
                plug.append(await through_plugin(plugin, config, http, args.max_tokens))
            print(f"one stream of {args.max_tokens} tokens against {url}:")
            print(summary("direct", plain))
            print(summary("plugin", plug))
        finally:
            await plugin.shutdown(config=managed)


if __name__ == "__main__":
    asyncio.run(main())
