"""The installed distribution exposes the backend under the entry-point group core loads."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import inference_textgen


def test_entry_point_resolves_to_the_plugin():
    (ep,) = [e for e in entry_points(group="inference_core.backends") if e.name == "textgen"]
    assert ep.value == "inference_textgen:plugin"
    assert ep.dist.name == "inference-textgen"
    assert ep.load() is inference_textgen.plugin


def test_distribution_metadata():
    dist = distribution("inference-textgen")
    assert dist.metadata["Requires-Python"] == ">=3.11"
    assert any(r.startswith("inference-switchboard") for r in dist.requires or [])


def test_router_loads_it_by_name():
    from inference_core.plugins import load_backends

    plugins = load_backends(["textgen"])
    assert "textgen" in plugins.backends
    report = next(r for r in plugins.reports if r.name == "textgen")
    assert report.error is None
    assert report.distribution == "inference-textgen"
    assert {"chat", "embed", "health", "list_models"} <= set(report.hooks)
