"""The installed distribution exposes the backend under the entry-point group core loads."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import inference_openai


def test_entry_point_resolves_to_the_plugin():
    (ep,) = [e for e in entry_points(group="inference_core.backends") if e.name == "openai"]
    assert ep.value == "inference_openai:plugin"
    assert ep.dist.name == "inference-openai"
    assert ep.load() is inference_openai.plugin


def test_distribution_metadata():
    dist = distribution("inference-openai")
    assert dist.metadata["Requires-Python"] == ">=3.11"
    assert any(r.startswith("inference-switchboard") for r in dist.requires or [])


def test_router_loads_it_by_name():
    from inference_core.plugins import load_backends

    plugins = load_backends(["openai"])
    assert "openai" in plugins.backends
    report = next(r for r in plugins.reports if r.name == "openai")
    assert report.error is None
    assert report.distribution == "inference-openai"
    assert {"chat", "embed", "health", "list_models"} <= set(report.hooks)
