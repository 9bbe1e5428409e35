#!/usr/bin/env python3
# ruff: noqa  (a stdlib-only harness script kept close to shared/bench/gateway-overhead)
"""Generate the fixed bodies the mock upstream (nginx) serves.

Deterministic: the same bytes on every run (seeded RNG, fixed timestamps).
Usage: gen_fixtures.py OUTDIR
"""

import json
import random
import sys
from pathlib import Path

CREATED = 1732600000
CHAT_ID = "chatcmpl-mock0123456789abcdefghijklmnop"
MODEL = "gpt-4o-mini-2024-07-18"
FP = "fp_mock0001"


def dumps(o):
    return json.dumps(o, separators=(",", ":"), ensure_ascii=False)


def chat_completion():
    return {
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! I am a mock upstream that answers at once, so the gateway's own overhead dominates.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 24,
            "completion_tokens": 21,
            "total_tokens": 45,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": FP,
    }


WORDS = (
    "Hello there , this is a mock stream of exactly thirty two chunk events "
    "sent by nginx so that a gateway must parse and re-emit every single one of them "
    "quickly"
).split()


def sse_stream(n_events=32):
    out = []

    def chunk(delta, finish=None):
        return {
            "id": CHAT_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "service_tier": "default",
            "system_fingerprint": FP,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    out.append(chunk({"role": "assistant", "content": "", "refusal": None}))
    for i in range(n_events - 2):
        w = WORDS[i % len(WORDS)]
        out.append(chunk({"content": (w if i == 0 else " " + w)}))
    out.append(chunk({}, "stop"))
    assert len(out) == n_events
    usage = {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": FP,
        "choices": [],
        "usage": {
            "prompt_tokens": 24,
            "completion_tokens": n_events - 2,
            "total_tokens": 24 + n_events - 2,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }
    body = "".join(f"data: {dumps(c)}\n\n" for c in out)
    body += f"data: {dumps(usage)}\n\n"
    body += "data: [DONE]\n\n"
    return body


def embeddings(dim=384, n=2):
    rng = random.Random(42)
    data = []
    for i in range(n):
        vec = [round(rng.uniform(-0.1, 0.1), 9) for _ in range(dim)]
        data.append({"object": "embedding", "index": i, "embedding": vec})
    return {
        "object": "list",
        "data": data,
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 10, "total_tokens": 10},
    }


def models(ids=("mock-chat", "mock-embed")):
    """What a port's /v1/models lists: each port only the models it serves, so that the
    gateway's model catalog routes each model to its own port (no failed first try)."""
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "mock"} for m in ids],
    }


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "static")
    out.mkdir(parents=True, exist_ok=True)
    (out / "chat.json").write_text(dumps(chat_completion()))
    (out / "stream.sse").write_text(sse_stream())
    (out / "embeddings.json").write_text(dumps(embeddings()))
    (out / "models.json").write_text(dumps(models()))
    (out / "models-stream.json").write_text(dumps(models(("mock-stream",))))
    for p in sorted(out.iterdir()):
        print(f"{p.name}\t{p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
