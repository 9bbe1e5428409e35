"""The installed distribution exposes the backend under the entry-point group core loads."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import inference_ollama


def test_entry_point_resolves_to_the_plugin():
    (ep,) = [e for e in entry_points(group="inference_core.backends") if e.name == "ollama"]
    assert ep.value == "inference_ollama:plugin"
    assert ep.dist.name == "inference-ollama"
    assert ep.load() is inference_ollama.plugin


def test_distribution_metadata():
    dist = distribution("inference-ollama")
    assert dist.metadata["Requires-Python"] == ">=3.11"
    assert any(r.startswith("inference-switchboard") for r in dist.requires or [])


def test_router_loads_it_by_name():
    from inference_core.plugins import load_backends

    plugins = load_backends(["ollama"])
    assert "ollama" in plugins.backends
    report = next(r for r in plugins.reports if r.name == "ollama")
    assert report.error is None
    assert report.distribution == "inference-ollama"
    assert {"chat", "embed", "health", "list_models"} <= set(report.hooks)
