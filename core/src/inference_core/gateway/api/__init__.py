"""Protocol modules: each serves one API's routes over the shared pipeline.

A module exposes ``routes(gateway) -> list[Route]``; :data:`MODULES` lists the ones the app
serves, in order.  A new protocol is one new module here and one entry in :data:`MODULES`.
"""

from __future__ import annotations

__all__ = ["MODULES"]

MODULES: tuple[str, ...] = ("chat", "messages", "responses", "status", "admin")
