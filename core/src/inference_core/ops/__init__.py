"""Operations tooling: model pulls, configuration checks, the vLLM memory planner.

Importable without the gateway (no FastAPI here) and cheap to import: each module imports httpx,
rich and typer only inside the functions that need them.

* :mod:`inference_core.ops.pull`: ``pull_command`` (Ollama ``/api/pull``; GGUF downloads).
* :mod:`inference_core.ops.doctor`: ``doctor_command`` (reachability, models, keys; ``--vram``).
* :mod:`inference_core.ops.vram`: the memory planner behind ``doctor --vram``.
* :func:`register`: adds the ``pull`` and ``doctor`` commands to the ``inference`` Typer app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``pull`` and ``doctor`` to ``app`` (the ``inference`` CLI calls this once)."""
    from ._cli import register as _register

    _register(app)
