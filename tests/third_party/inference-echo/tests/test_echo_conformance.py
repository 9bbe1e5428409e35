"""The example plugin passes the conformance kit (it makes no HTTP call: talks_http = False)."""

from __future__ import annotations

import inference_echo

from inference_core.testing import BackendConformance


class TestEchoConformance(BackendConformance):
    plugin = inference_echo.plugin
    backend_name = "echo"
    talks_http = False
