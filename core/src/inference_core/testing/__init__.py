"""Conformance kit for inference-core backend plugins (being written)."""

from __future__ import annotations
