"""The ``inference`` command: inspect plugins and configuration, talk to the backends, serve.

Exit codes a script can rely on:

* ``0``: success (``health``: at least one backend is ready);
* ``2``: usage or configuration error (the message names the variable);
* ``3``: no backend could serve the request (each attempt is printed); ``health``: none ready;
* ``4``: plugin load failure (no backend of the chain could be loaded).

An expected error never prints a traceback.  typer and rich are imported only when the command
runs (``main()``), never by ``import inference_core``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["EXIT_CONFIG", "EXIT_NO_BACKEND", "EXIT_OK", "EXIT_PLUGIN", "build_app", "main"]

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_NO_BACKEND = 3
EXIT_PLUGIN = 4

NO_PLUGIN_HINT = (
    "No backend plugin is installed. Install one, e.g.:\n"
    "  pip install inference-vllm      (or inference-ollama, inference-llamacpp,\n"
    "                                   inference-openai, inference-textgen)\n"
    "then name it in INFERENCE_PROVIDER or FALLBACK_CHAIN."
)
GATEWAY_HINT = "The gateway needs its extra: pip install 'inference-switchboard[gateway]'"


def build_app(
    *,
    env: Mapping[str, str] | None = None,
    extra_plugins: Mapping[str, object] | None = None,
    transport: Any = None,
) -> Any:
    """Build the typer application.

    ``env`` replaces ``os.environ`` (and the ``.env`` file), ``extra_plugins`` adds in-memory
    backends and ``transport`` an httpx transport: for tests and embedding applications.
    """
    import typer
    from rich.console import Console
    from rich.table import Table

    app = typer.Typer(
        name="inference",
        help="Switch LLM inference backends by environment variables; inspect, test and serve.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    state: dict[str, Any] = {"env_file": ".env"}

    @app.callback()
    def _options(
        env_file: str | None = typer.Option(
            None,
            "--env-file",
            help="Read variables from this file (default: ./.env when it exists; '' to skip).",
            metavar="PATH",
        ),
    ) -> None:
        import os

        if env_file is None:
            state["env_file"] = ".env"
        elif env_file == "":
            state["env_file"] = None
        elif not os.path.isfile(env_file):
            err.print(f"[bold red]Usage error:[/] --env-file {_esc(env_file)}: no such file")
            raise typer.Exit(EXIT_CONFIG)
        else:
            state["env_file"] = env_file

    # ------------------------------------------------------------------------ shared pieces

    def settings() -> Any:
        from .settings import Settings

        return Settings.from_env(env, env_file=state["env_file"])

    def router() -> Any:
        from .router import Router

        return Router.from_env(
            env, env_file=state["env_file"], transport=transport, extra_plugins=extra_plugins
        )

    def guard(func: Callable[..., Any]) -> Callable[..., Any]:
        """Turn expected errors into a message on stderr and a documented exit code."""

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from .errors import AllBackendsFailed, BackendError, ConfigError, PluginLoadError

            try:
                return func(*args, **kwargs)
            except ConfigError as exc:
                err.print(f"[bold red]Configuration error:[/] {_esc(exc.message)}")
                raise typer.Exit(EXIT_CONFIG) from None
            except PluginLoadError as exc:
                err.print(f"[bold red]Plugin load failure:[/] {_esc(exc.message)}")
                err.print("Run `inference plugins` to see the installed backends.")
                raise typer.Exit(EXIT_PLUGIN) from None
            except AllBackendsFailed as exc:
                err.print("[bold red]No backend could serve the request.[/] Attempts:")
                for i, attempt in enumerate(exc.attempts, 1):
                    status = f" HTTP {attempt.status}" if attempt.status else ""
                    err.print(
                        f"  {i}. {_esc(attempt.backend)}: {_esc(attempt.kind)}{status}: "
                        f"{_esc(attempt.message)}"
                    )
                if not exc.attempts:
                    err.print("  (no backend was tried)")
                raise typer.Exit(EXIT_NO_BACKEND) from None
            except BackendError as exc:
                where = f" ({exc.backend})" if exc.backend else ""
                err.print(
                    f"[bold red]Backend error{_esc(where)}:[/] {exc.kind}: {_esc(exc.message)}"
                )
                raise typer.Exit(EXIT_NO_BACKEND) from None
            except KeyboardInterrupt:
                err.print("interrupted")
                raise typer.Exit(130) from None

        return wrapper

    # ---------------------------------------------------------------------------- commands

    @app.command()
    @guard
    def plugins(
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """List the installed backend plugins: name, distribution, version, hooks, errors."""
        from .plugins import inspect_installed

        allow = None
        chain: list[str] = []
        try:
            s = settings()
            allow, chain = s.plugins_allow, s.chain
        except Exception as exc:  # still list what is installed
            err.print(f"[yellow]note:[/] configuration not usable ({_esc(str(exc))})")
        reports = inspect_installed(allow=allow)
        extra = sorted((extra_plugins or {}).items())
        if as_json:
            data = [
                {
                    "name": r.name,
                    "distribution": r.distribution,
                    "version": r.version,
                    "hooks": r.hooks,
                    "error": r.error,
                    "in_chain": r.name in chain,
                }
                for r in reports
            ]
            typer.echo(json.dumps(data, indent=2))
            return
        if not reports and not extra:
            out.print(NO_PLUGIN_HINT)
            return
        table = Table(title="Installed backend plugins")
        for col in ("backend", "distribution", "version", "hooks", "status"):
            table.add_column(col)
        for r in reports:
            status = "[green]ok[/]" if r.error is None else f"[red]{_esc(r.error)}[/]"
            if r.name in chain:
                status += " (in chain)"
            table.add_row(
                r.name, r.distribution or "-", r.version or "-", ", ".join(r.hooks), status
            )
        for name, _plugin in extra:
            table.add_row(name, "(in memory)", "-", "", "[green]ok[/]")
        out.print(table)

    @app.command()
    @guard
    def config(
        as_json: bool = typer.Option(False, "--json", help="Plain JSON output."),
    ) -> None:
        """Show the resolved configuration, secrets masked."""
        resolved = settings()
        data = resolved.redacted()
        data["sources"] = {name: resolved.sources(name) for name in resolved.chain}
        try:
            from .gateway.settings import GatewaySettings

            data["gateway"] = GatewaySettings.from_env(env, env_file=state["env_file"]).summary()
        except ImportError:
            pass
        text = json.dumps(data, indent=2, default=str)
        if as_json:
            typer.echo(text)
        else:
            out.print_json(text)

    @app.command()
    @guard
    def health(
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Probe every backend of the chain now; exit 0 when at least one is ready."""

        async def run() -> dict[str, Any]:
            r = router()
            try:
                return await r.health(refresh=True)
            finally:
                await r.aclose()

        result = asyncio.run(run())
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=str))
        else:
            for name, info in result.items():
                table = Table(title=f"{name} ({info.get('role', '')})", show_header=False)
                table.add_column("field")
                table.add_column("value")
                state_ = info.get("state")
                color = {"ready": "green", "loading": "yellow"}.get(str(state_), "red")
                table.add_row("state", f"[{color}]{_esc(str(state_))}[/]")
                for key in ("detail", "latency_ms", "models", "load_error", "breaker"):
                    value = info.get(key)
                    if value not in (None, [], ""):
                        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
                        table.add_row(key, _esc(str(shown)))
                out.print(table)
        if not any(info.get("state") == "ready" for info in result.values()):
            raise typer.Exit(EXIT_NO_BACKEND)

    @app.command()
    @guard
    def models(
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """List every model of every backend: where it lives, its aliases, its context."""

        async def run() -> list[Any]:
            r = router()
            try:
                return await r.list_models()
            finally:
                await r.aclose()

        found = asyncio.run(run())
        if as_json:
            typer.echo(json.dumps([m.to_dict() for m in found], indent=2))
            return
        if not found:
            out.print("No model reported by any backend.")
            return
        table = Table(title="Models (request one by id, alias or backend/id)")
        table.add_column("id")
        table.add_column("backend")
        table.add_column("aliases")
        table.add_column("context")
        for m in found:
            extra = m.model_extra or {}
            aliases = ", ".join(str(a) for a in extra.get("aliases") or []) or "-"
            context = str(extra.get("context_length") or "-")
            table.add_row(_esc(m.id), m.backend or "-", _esc(aliases), context)
        out.print(table)

    @app.command()
    @guard
    def chat(
        prompt: str = typer.Argument(..., help="The user message."),
        model: str = typer.Option(
            "default", "--model", "-m", help="A model id, alias or backend/model."
        ),
        max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
        system: str | None = typer.Option(None, "--system", "-s", help="A system message."),
        no_stream: bool = typer.Option(False, "--no-stream", help="Wait for the full answer."),
        temperature: float | None = typer.Option(None, "--temperature", min=0.0, max=2.0),
    ) -> None:
        """Send one chat message; stream the answer's tokens as they come."""
        from .models import ChatRequest
        from .router import RequestTrace

        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        request = ChatRequest(
            model=model,
            messages=messages,
            stream=not no_stream,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        trace = RequestTrace()
        served: dict[str, str] = {}  # the model the backend says it served

        async def run() -> None:
            r = router()
            try:
                result = await r.chat(request, trace=trace)
                if no_stream:
                    served["model"] = result.model
                    text = result.choices[0].message.content if result.choices else ""
                    sys.stdout.write(str(text or "") + "\n")
                    return
                async for chunk in result:
                    served["model"] = chunk.model
                    for choice in chunk.choices:
                        if choice.delta.content:
                            sys.stdout.write(choice.delta.content)
                            sys.stdout.flush()
                sys.stdout.write("\n")
            finally:
                sys.stdout.flush()
                await r.aclose()

        asyncio.run(run())
        extra = f", {trace.fallbacks} fallback(s)" if trace.fallbacks else ""
        model_name = served.get("model") or trace.model
        err.print(f"[dim]served by {trace.backend} ({model_name}){extra}[/]")

    @app.command()
    @guard
    def embed(
        text: str = typer.Argument(..., help="The text to embed."),
        model: str = typer.Option(
            "default", "--model", "-m", help="A model id, alias or backend/model."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the whole response as JSON."),
        show: int = typer.Option(5, "--show", min=0, help="How many leading values to print."),
    ) -> None:
        """Embed one text; print the vector's dimensions and first values."""
        from .models import EmbeddingRequest
        from .router import RequestTrace

        trace = RequestTrace()

        async def run() -> Any:
            r = router()
            try:
                return await r.embed(EmbeddingRequest(model=model, input=text), trace=trace)
            finally:
                await r.aclose()

        result = asyncio.run(run())
        if as_json:
            typer.echo(json.dumps(result.to_dict()))
            return
        vector = result.data[0].embedding if result.data else []
        if isinstance(vector, str):
            out.print(f"base64 embedding, {len(vector)} characters")
            return
        head = ", ".join(f"{v:.6g}" for v in vector[:show])
        more = ", ..." if len(vector) > show else ""
        out.print(f"dims: {len(vector)}")
        out.print(f"[{head}{more}]")
        err.print(f"[dim]served by {trace.backend} ({result.model})[/]")

    @app.command()
    @guard
    def serve(
        host: str | None = typer.Option(None, "--host", help="Default INFERENCE_GATEWAY_HOST."),
        port: int | None = typer.Option(None, "--port", help="Default INFERENCE_GATEWAY_PORT."),
        workers: int | None = typer.Option(None, "--workers", min=1),
        log_level: str | None = typer.Option(None, "--log-level"),
    ) -> None:
        """Serve the OpenAI-compatible gateway (needs the `gateway` extra)."""
        import importlib.util
        import os

        missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
        if missing:
            err.print(f"[bold red]Missing {', '.join(missing)}.[/] {_esc(GATEWAY_HINT)}")
            raise typer.Exit(EXIT_CONFIG)
        try:
            from .gateway import serve as gateway_serve
        except ImportError as exc:
            err.print(
                f"[bold red]Cannot import the gateway ({_esc(str(exc))}).[/] {_esc(GATEWAY_HINT)}"
            )
            raise typer.Exit(EXIT_CONFIG) from None
        env_file = state["env_file"]
        if env is None and env_file and os.path.isfile(env_file):
            # the gateway (and each of its worker processes) reads os.environ: load the file
            # into it, the process environment still winning
            from dotenv import load_dotenv

            load_dotenv(env_file, override=False)
        kwargs: dict[str, Any] = {"workers": workers, "log_level": log_level}
        if extra_plugins or env is not None or transport is not None:
            kwargs["router"] = router()
        gateway_serve(host, port, **kwargs)

    from .ops import register as register_ops

    register_ops(app, env=env, extra_plugins=extra_plugins, transport=transport)
    from .gateway.keys_cli import register as register_keys

    register_keys(app, env=env, env_file=lambda: state["env_file"])
    return app


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``inference``)."""
    app = build_app()
    app(args=argv, prog_name="inference")


if __name__ == "__main__":  # pragma: no cover
    main()
