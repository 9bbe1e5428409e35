"""pytest11 plugin of inference-core: inert unless a test uses what it offers."""

from __future__ import annotations
