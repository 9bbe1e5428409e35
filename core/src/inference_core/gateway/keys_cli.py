"""``inference keys create|list|revoke``: manage the gateway's API keys.

The store is Redis when ``INFERENCE_REDIS_URL`` is set, else the TOML file
``INFERENCE_KEYS_FILE`` (one of them is needed).  ``create`` prints the new secret as its LAST
line of output, once: only its SHA-256 is stored.  Exit codes: 0 done, 1 unknown key (revoke)
or a name that exists (create), 2 configuration or usage error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import typer

__all__ = ["register"]


def register(
    app: typer.Typer,
    *,
    env: Mapping[str, str] | None,
    env_file: Callable[[], str | None],
) -> None:
    """Add the ``keys`` command group to the ``inference`` Typer app."""
    import typer
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    keys = typer.Typer(help="Manage the gateway's API keys (hashed; limits, budgets, models).",
                       no_args_is_help=True)  # fmt: skip
    app.add_typer(keys, name="keys")

    def environment() -> Mapping[str, str]:
        if env is not None:
            return env
        import os

        merged: dict[str, str] = {}
        path = env_file()
        if path and os.path.isfile(path):
            from dotenv import dotenv_values

            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
        merged.update(os.environ)
        return merged

    def run(action: Callable[[Any], Any]) -> Any:
        from ..errors import ConfigError
        from ..state.settings import StateSettings
        from .keys import KeyStoreError, open_store

        try:
            settings = StateSettings.from_env(environment())
            store = open_store(settings)
        except ConfigError as exc:
            err.print(f"[bold red]Configuration error:[/] {exc.message}")
            raise typer.Exit(2) from None
        if store is None:
            err.print(
                "[bold red]No key store:[/] set INFERENCE_KEYS_FILE (a TOML file) or "
                "INFERENCE_REDIS_URL (shared by every gateway replica)."
            )
            raise typer.Exit(2)

        async def go() -> Any:
            try:
                return await action(store)
            finally:
                client = getattr(store, "client", None)
                if client is not None:
                    await client.aclose()

        try:
            return asyncio.run(go())
        except KeyStoreError as exc:
            err.print(f"[bold red]Error:[/] {exc}")
            raise typer.Exit(1) from None
        except ConfigError as exc:
            err.print(f"[bold red]Configuration error:[/] {exc.message}")
            raise typer.Exit(2) from None
        except OSError as exc:
            err.print(f"[bold red]The key store cannot be reached:[/] {exc}")
            raise typer.Exit(2) from None

    @keys.command("create")
    def create(
        name: str = typer.Argument(..., help="The key's name (shown in metrics and usage)."),
        models: str | None = typer.Option(
            None, "--models", help="Comma list of model globs it may use (default: all)."
        ),
        rpm: int = typer.Option(0, "--rpm", min=0, help="Requests per minute (0: no limit)."),
        tpm: int = typer.Option(0, "--tpm", min=0, help="Tokens per minute (0: no limit)."),
        parallel: int = typer.Option(0, "--parallel", min=0, help="Requests at a time."),
        budget: int = typer.Option(0, "--budget", min=0, help="Tokens per --period."),
        period: str = typer.Option("month", "--period", help="day, week or month (UTC)."),
        expires: str | None = typer.Option(
            None, "--expires", help="YYYY-MM-DD (end of that UTC day) or ISO date-time."
        ),
        meta: list[str] | None = typer.Option(None, "--meta", help="key=value, repeatable"),  # noqa: B008
    ) -> None:
        """Create a key; its secret is printed once, as the last line."""
        from .keys import KeyStoreError, make_record, new_secret

        metadata: dict[str, str] = {}
        for item in meta or ():
            k, sep, v = item.partition("=")
            if not sep or not k.strip():
                err.print(f"[bold red]Error:[/] --meta {item!r}: use key=value")
                raise typer.Exit(2)
            metadata[k.strip()] = v.strip()
        secret = new_secret()
        try:
            record = make_record(
                name, secret, models=(models or "").split(","), rpm=rpm, tpm=tpm,
                parallel=parallel, budget=budget, period=period.strip().lower(),
                expires=expires, metadata=metadata,
            )  # fmt: skip
        except KeyStoreError as exc:
            err.print(f"[bold red]Error:[/] {exc}")
            raise typer.Exit(2) from None

        async def action(store: Any) -> None:
            await store.create(record)

        run(action)
        summary = ", ".join(
            f"{k}={v}" for k, v in record.public().items()
            if v not in (None, {}, ["*"]) and k not in ("name", "created")
        )  # fmt: skip
        out.print(f"Created key '{record.name}'" + (f" ({summary})" if summary else "") + ".")
        out.print("Its secret follows; it is shown only this once:")
        print(secret, flush=True)

    @keys.command("list")
    def list_(as_json: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
        """List the keys (never their secrets)."""

        async def action(store: Any) -> Any:
            return await store.load()

        records = run(action)
        rows = [records[n].public() for n in sorted(records)]
        if as_json:
            for row in rows:
                print(json.dumps(row))
            return
        if not rows:
            out.print("No keys.")
            return
        from rich.table import Table

        table = Table("name", "models", "rpm", "tpm", "parallel", "budget", "expires", "metadata")
        for row in rows:
            budget = f"{row['budget']}/{row['period']}" if row["budget"] else "-"
            table.add_row(
                row["name"], ",".join(row["models"]), str(row["rpm"] or "-"),
                str(row["tpm"] or "-"), str(row["parallel"] or "-"), budget,
                row["expires"] or "-", json.dumps(row["metadata"]) if row["metadata"] else "",
            )  # fmt: skip
        out.print(table)

    @keys.command("revoke")
    def revoke(name: str = typer.Argument(..., help="The key's name.")) -> None:
        """Revoke a key (gateways stop accepting it within INFERENCE_KEYS_REFRESH seconds)."""

        async def action(store: Any) -> bool:
            return bool(await store.revoke(name))

        if not run(action):
            err.print(f"[bold red]Error:[/] no key named {name!r}")
            raise typer.Exit(1)
        out.print(f"Revoked key '{name}'.")
