"""Operations tooling: model pulls, configuration checks, the vLLM memory planner.

Importable without the gateway (no FastAPI here) and cheap to import: each module imports httpx,
rich and typer only inside the functions that need them.

* :mod:`inference_core.ops.pull`: ``pull_command`` (Ollama ``/api/pull``; GGUF downloads).
* :mod:`inference_core.ops.doctor`: ``doctor_command`` (reachability, models, keys; ``--vram``).
* :mod:`inference_core.ops.vram`: the memory planner behind ``doctor --vram``.
* :func:`register`: adds the ``pull`` and ``doctor`` commands to the ``inference`` Typer app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import typer

__all__ = ["register"]


def register(
    app: typer.Typer,
    *,
    env: Mapping[str, str] | None = None,
    extra_plugins: Mapping[str, object] | None = None,
    transport: Any = None,
) -> None:
    """Add ``pull`` and ``doctor`` to ``app`` (the ``inference`` CLI calls this once).

    ``env`` / ``extra_plugins`` / ``transport`` are passed on as ``cli.build_app`` received them.
    """
    from ._cli import register as _register

    _register(app, env=env, extra_plugins=extra_plugins, transport=transport)
