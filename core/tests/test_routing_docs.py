"""docs/routing.md's example table is what the planner really does (each row planned)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inference_core import ModelInfo, hookimpl
from inference_core.errors import ModelNotFound
from inference_core.router import Router
from inference_core.routing.planner import Miss

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"

#: the setup the doc's examples are written for
ENV = {
    "INFERENCE_PROVIDER": "ollama",
    "ENABLE_FALLBACK": "true",
    "FALLBACK_CHAIN": "vllm,openai",
    "INFERENCE_OLLAMA_MODEL": "llama3.1:8b",
    "INFERENCE_VLLM_BASE_URL": "http://gpu:8000/v1",
    "INFERENCE_OPENAI_MODEL": "gpt-4o-mini",
    "INFERENCE_OPENAI_API_KEY": "sk-doc",
    "INFERENCE_OPENAI_ALIASES": "fast=gpt-4o-mini",
    "INFERENCE_MODEL_FALLBACKS": (
        "llama3.1:8b=vllm/meta-llama/Llama-3.1-8B-Instruct;gpt-4o=gpt-4o-mini"
    ),
    "HEALTH_CHECK_INTERVAL": "3600",
}
LISTED = {
    "ollama": ["llama3.1:8b", "qwen2.5:7b", "nomic-embed-text:latest"],
    "vllm": ["meta-llama/Llama-3.1-8B-Instruct"],
    "openai": ["gpt-4o-mini", "gpt-4o"],
}


class Lists:
    """A backend that only lists its models (the planner never calls anything else)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    async def list_models(self, config):
        return [ModelInfo(id=m, backend=self.name) for m in LISTED[self.name]]


def rows() -> list[tuple[str, str]]:
    text = DOC.read_text()
    block = text.split("<!-- routing-examples")[1].split("<!-- /routing-examples -->")[0]
    out = []
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            out.append((cells[0].strip("`"), cells[1]))
    return out


def expected_steps(cell: str) -> list[tuple[str, str]] | None:
    if cell.startswith("404"):
        return None
    return [(backend, model) for backend, model in re.findall(r"`([a-z_]+): ([^`]+)`", cell)]


def test_the_doc_has_examples():
    assert len(rows()) >= 10


@pytest.mark.parametrize(("model", "cell"), rows())
async def test_each_documented_example(model: str, cell: str) -> None:
    router = Router.from_env(
        ENV, env_file=None, extra_plugins={n: Lists(n) for n in ("ollama", "vllm", "openai")}
    )
    async with router:
        assert router.settings.backend("vllm").base_url == "http://gpu:8000"  # /v1 dropped
        plan = router.planner.plan(model)
        want = expected_steps(cell)
        if want is None:
            assert isinstance(plan, Miss)
            with pytest.raises(ModelNotFound):
                await router.chat({"model": model, "messages": [{"role": "user", "content": "x"}]})
            return
        assert not isinstance(plan, Miss), f"{model!r} planned as a 404"
        assert [(s.backend.name, s.model) for s in plan] == want


async def test_strict_models_stops_before_the_rest_of_the_chain() -> None:
    env = {**ENV, "INFERENCE_STRICT_MODELS": "true"}
    router = Router.from_env(
        env, env_file=None, extra_plugins={n: Lists(n) for n in ("ollama", "vllm", "openai")}
    )
    async with router:
        plan = router.planner.plan("llama3.1:8b")
    assert [(s.backend.name, s.model) for s in plan] == [
        ("ollama", "llama3.1:8b"),
        ("vllm", "meta-llama/Llama-3.1-8B-Instruct"),
    ]
