"""A minimal reader of Prometheus text exposition, enough for vLLM's ``/metrics``.

Only sample lines are read (``name{labels} value``); each metric name maps to the sum of its
samples over all label sets (vLLM labels every sample with ``engine`` and ``model_name``).
"""

from __future__ import annotations

import math


def parse_prometheus(text: str, names: frozenset[str] | None = None) -> dict[str, float]:
    """Sum of the samples of each metric in ``text`` (only ``names`` when given)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        if brace >= 0:
            name = line[:brace]
            close = line.rfind("}")
            rest = line[close + 1 :] if close > brace else ""
        else:
            name, _, rest = line.partition(" ")
        name = name.strip()
        if names is not None and name not in names:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            value = float(parts[0])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        totals[name] = totals.get(name, 0.0) + value
    return totals
