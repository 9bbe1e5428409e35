"""pytest11 plugin of inference-core: fixtures for backend plugin tests.

Inert unless a test asks for one of its fixtures: importing it costs nothing and imports no
part of the conformance kit.  The conformance checks themselves come from subclassing
:class:`inference_core.testing.BackendConformance`.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def inference_config() -> Any:
    """:func:`inference_core.testing.make_config`: build a ``BackendConfig`` for a test."""
    from .harness import make_config

    return make_config


@pytest.fixture
def inference_harness() -> Any:
    """A factory ``(plugin, name="test") -> HookHarness`` to call one plugin's hooks as core."""
    from .harness import HookHarness

    def factory(plugin: object, name: str = "test") -> Any:
        return HookHarness(plugin, name)

    return factory


@pytest.fixture
def inference_upstream() -> Any:
    """A fake upstream for a plugin's unit tests: ``.routes`` (a ``respx.Router`` on
    ``http://upstream.test``), ``.transport`` (a :class:`TrackingTransport` over it) and
    ``.client()`` (core's pooled client on that transport; use ``async with``)."""
    from .transport import FakeUpstream

    return FakeUpstream()
