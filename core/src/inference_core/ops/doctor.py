"""``inference doctor``: is the configured chain usable? And, with ``--vram``, does vLLM fit?

Without ``--vram`` it reads the configuration the way the gateway does (``Settings.from_env``),
loads the chain's plugins, and for every backend of the chain, every replica:

* the plugin loaded (or why not);
* the key is set where one is required (the OpenAI API);
* the backend answers its ``health`` hook (``ready`` / ``loading`` / ``down``, with latency);
* the configured model is among the models the backend lists (Ollama: pulled? vLLM: the name it
  serves?); llama.cpp and text-generation-webui serve whatever they loaded, so no check there.

It prints a table and exits 0 when the primary backend is usable, 1 when it is not (requests
would fall back, or fail), 2 on a configuration error. No request is sent and no ``startup`` hook
runs: a managed llama.cpp (no ``INFERENCE_LLAMACPP_BASE_URL``) is reported as started by
``inference serve``, not launched.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BackendCheck", "check_backends", "doctor_command", "render_checks"]

# Backends whose server serves one loaded model whatever the request names.
_MODEL_AGNOSTIC = {"llamacpp", "textgen"}
_KEY_REQUIRED = {"openai"}


@dataclass
class BackendCheck:
    """What ``doctor`` found for one backend of the chain."""

    name: str
    role: str  # primary / fallback N
    plugin: str
    urls: list[str] = field(default_factory=list)
    model: str | None = None
    state: str = "unknown"  # ready / loading / down / managed / not loaded
    latency_ms: float | None = None
    models: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.state in {"ready", "managed"} and not self.problems


def _model_listed(model: str, models: list[str]) -> bool:
    if model in models:
        return True
    # Ollama lists "llama3.1:latest" for "llama3.1"
    if ":" not in model and f"{model}:latest" in models:
        return True
    return model.endswith(":latest") and model.removesuffix(":latest") in models


async def _probe(hooks: Any, config: Any, http: Any, timeout: float) -> tuple[Any, float]:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            coro = hooks.health(config=config, http=http)
            result = await coro if coro is not None else None
    except TimeoutError:
        return {"state": "down", "detail": f"no answer within {timeout:g} s"}, timeout * 1000
    except Exception as exc:  # a plugin bug must not hide the other backends
        detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return {"state": "down", "detail": detail}, (time.perf_counter() - start) * 1000
    if result is None:
        return {"state": "unknown", "detail": "the plugin has no health hook"}, 0.0
    data = result.model_dump() if hasattr(result, "model_dump") else dict(result)
    return data, (time.perf_counter() - start) * 1000


async def _list_models(hooks: Any, config: Any, http: Any, timeout: float) -> list[str] | None:
    if not hooks.implements("list_models"):
        return None
    try:
        async with asyncio.timeout(timeout):
            coro = hooks.list_models(config=config, http=http)
            models = await coro if coro is not None else None
    except Exception:
        return None
    if not models:
        return None
    return [getattr(m, "id", str(m)) for m in models]


async def check_backends(
    settings: Any,
    *,
    transport: Any = None,
    extra_plugins: Mapping[str, object] | None = None,
    timeout: float | None = None,
) -> list[BackendCheck]:
    """Check every backend of ``settings.chain`` (see the module docstring)."""
    from ..http.client import create_client
    from ..plugins import load_backends
    from ..settings import mask_url

    chain = list(settings.chain)
    plugin_of = {n: settings.plugin_for(n) for n in chain}
    renamed = {n: p for n, p in plugin_of.items() if p != n}
    kwargs: dict[str, Any] = {"plugin_names": renamed} if renamed else {}
    plugins = load_backends(
        chain,
        allow=getattr(settings, "plugins_allow", None),
        extra_plugins=extra_plugins,
        **kwargs,
    )
    timeout = float(timeout or getattr(settings, "health_check_timeout", 5.0))
    checks: list[BackendCheck] = []
    http = create_client(transport=transport)
    try:
        for i, name in enumerate(chain):
            role = "primary" if i == 0 else f"fallback {i}"
            check = BackendCheck(name=name, role=role, plugin=plugin_of[name])
            checks.append(check)
            try:
                config = settings.backend(name)
            except Exception as exc:
                check.state = "down"
                check.problems.append(getattr(exc, "message", str(exc)))
                continue
            check.urls = [mask_url(u) for u in config.base_urls]
            check.model = config.model
            hooks = plugins.backends.get(name)
            if hooks is None:
                report = plugins.report(name)
                check.state = "not loaded"
                check.problems.append(
                    (report.error if report and report.error else None)
                    or f"the plugin for {name!r} is not installed (pip install "
                    f"inference-{plugin_of[name]})"
                )
                continue
            if check.plugin in _KEY_REQUIRED and config.api_key is None:
                env_name = name.upper()
                check.problems.append(
                    f"no API key: set OPENAI_API_KEY (or INFERENCE_{env_name}_API_KEY)"
                )
            if not config.base_urls and check.plugin == "llamacpp":
                check.state = "managed"
                check.notes.append(
                    "no INFERENCE_LLAMACPP_BASE_URL: `inference serve` starts a managed "
                    "llama-server (not started by doctor)"
                )
                continue
            replicas = (
                [config.model_copy(update={"base_urls": (u,)}) for u in config.base_urls]
                if len(config.base_urls) > 1
                else [config]
            )
            states: list[str] = []
            for replica in replicas:
                data, latency = await _probe(hooks, replica, http, timeout)
                state = str(data.get("state") or "unknown")
                states.append(state)
                label = mask_url(replica.base_urls[0]) if len(replicas) > 1 else ""
                if data.get("detail"):
                    check.notes.append(f"{label + ': ' if label else ''}{data['detail']}")
                if data.get("models"):
                    check.models.extend(m for m in data["models"] if m not in check.models)
                if state == "ready" and check.latency_ms is None:
                    check.latency_ms = data.get("latency_ms") or latency
            check.state = next((s for s in ("ready", "loading", "unknown") if s in states), "down")
            if len(replicas) > 1:
                ready = states.count("ready")
                check.notes.insert(0, f"{ready} of {len(replicas)} replicas ready")
            if check.state == "ready" and config.model and check.plugin not in _MODEL_AGNOSTIC:
                listed = check.models or await _list_models(hooks, config, http, timeout) or []
                check.models = listed
                if listed and not _model_listed(config.model, listed):
                    hint = (
                        f"; `inference pull {config.model} --backend ollama`"
                        if check.plugin == "ollama"
                        else ""
                    )
                    shown = ", ".join(listed[:5]) + (" ..." if len(listed) > 5 else "")
                    check.problems.append(
                        f"model {config.model!r} is not on the backend (it has: {shown}){hint}"
                    )
    finally:
        await http.aclose()
    return checks


def render_checks(checks: list[BackendCheck], console: Any) -> None:
    from rich.table import Table

    table = Table(title="inference backends (chain order)")
    for col in ("backend", "role", "state", "latency", "url", "model", "problems / notes"):
        table.add_column(col)
    colour = {"ready": "green", "managed": "green", "loading": "yellow"}
    for c in checks:
        style = colour.get(c.state, "red") if not c.problems else "red"
        remarks = [f"[red]{p}[/red]" for p in c.problems] + c.notes
        table.add_row(
            c.name,
            c.role,
            f"[{style}]{c.state}[/{style}]",
            f"{c.latency_ms:.0f} ms" if c.latency_ms is not None else "-",
            "\n".join(c.urls) or "-",
            c.model or "-",
            "\n".join(remarks) or "-",
        )
    console.print(table)


def _summary(checks: list[BackendCheck], console: Any) -> int:
    primary = checks[0]
    usable = [c.name for c in checks if c.usable]
    if primary.usable:
        console.print(f"[green]primary {primary.name} is usable[/green]")
        unusable = [c.name for c in checks[1:] if not c.usable]
        if unusable:
            console.print(f"[yellow]fallback(s) not usable: {', '.join(unusable)}[/yellow]")
        return 0
    why = "; ".join(primary.problems) or f"state {primary.state}"
    console.print(f"[red]primary {primary.name} is not usable[/red]: {why}")
    if len(checks) == 1:
        console.print("no fallback configured (ENABLE_FALLBACK / FALLBACK_CHAIN): requests fail")
    elif usable:
        console.print(f"requests fall back to: {', '.join(usable)}")
    else:
        console.print("[red]no backend of the chain is usable: requests fail[/red]")
    return 1


def doctor_command(
    *,
    vram: bool = False,
    model: str | None = None,
    gpus: str | None = None,
    dtype: str | None = None,
    quantization: str | None = None,
    kv_cache_dtype: str | None = None,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    gpu_memory_utilization: float | None = None,
    tensor_parallel_size: int | None = None,
    pipeline_parallel_size: int | None = None,
    params_b: float | None = None,
    layers: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
    as_json: bool = False,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    env_file: str | None = ".env",
    transport: Any = None,
    extra_plugins: Mapping[str, object] | None = None,
    console: Any = None,
) -> int:
    """``inference doctor [--vram ...]``: returns the exit code (see the module docstring;
    ``--vram``: 0 fits, 1 reduced concurrency, 2 does not fit, 3 bad input)."""
    if console is None:
        from rich.console import Console

        console = Console()
    if vram:
        from .vram import vram_command

        return vram_command(
            model=model,
            gpus=gpus,
            dtype=dtype,
            quantization=quantization,
            kv_cache_dtype=kv_cache_dtype,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
            params_b=params_b,
            layers=layers,
            kv_heads=kv_heads,
            head_dim=head_dim,
            env=env,
            console=console,
        )
    from ..errors import ConfigError, PluginLoadError
    from ..settings import Settings

    try:
        settings = Settings.from_env(env, env_file=env_file)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc.message}")
        return 2
    try:
        checks = asyncio.run(
            check_backends(
                settings, transport=transport, extra_plugins=extra_plugins, timeout=timeout
            )
        )
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc.message}")
        return 2
    except PluginLoadError as exc:
        console.print(f"[red]no backend of the chain could be loaded:[/red] {exc.message}")
        return 1
    if as_json:
        code = 0 if checks[0].usable else 1
        payload = [{**asdict(c), "usable": c.usable} for c in checks]
        console.print_json(json.dumps({"backends": payload, "primary_usable": code == 0}))
        return code
    render_checks(checks, console)
    return _summary(checks, console)
