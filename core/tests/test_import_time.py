"""`import inference_core` stays cheap: fast, no heavy dependency, no environment read."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "rich",
    "typer",
    "click",
    "httpx",
    "pydantic",
    "pydantic_settings",
    "pluggy",
    "orjson",
    "openai",
    "respx",
)
BUDGET_US = 150_000  # generous: a typical run measures 20-40 ms


def run_python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=120
    )


def cumulative_us(stderr: str, module: str) -> int:
    """The cumulative import time of ``module`` from ``-X importtime`` output."""
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        _self_us, cumulative, name = line[len("import time:") :].split("|")
        if name.rstrip() == " " + module:  # top level: exactly one space before the name
            return int(cumulative)
    raise AssertionError(f"{module} not found in -X importtime output")


def test_import_time_under_budget():
    best = None
    for _ in range(3):  # the best of three: the machine is shared
        proc = run_python("import inference_core", "-X", "importtime")
        assert proc.returncode == 0, proc.stderr
        value = cumulative_us(proc.stderr, "inference_core")
        best = value if best is None else min(best, value)
    assert best < BUDGET_US, f"import inference_core took {best / 1000:.1f} ms"


def heavy_modules_after(imports: str) -> list[str]:
    code = (
        f"import sys, json; import {imports}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_import_pulls_no_heavy_module():
    assert heavy_modules_after("inference_core, inference_core.testing, inference_core.cli") == []


def test_pytest_plugin_is_inert():
    # pytest itself brings pluggy; the plugin module must add nothing else heavy
    found = heavy_modules_after("inference_core.testing.pytest_plugin")
    assert [m for m in found if m.split(".")[0] != "pluggy"] == []


def test_lazy_attribute_still_works_and_imports_on_demand():
    code = (
        "import sys, inference_core; assert 'pydantic' not in sys.modules; "
        "inference_core.ChatRequest; assert 'pydantic' in sys.modules; print('ok')"
    )
    proc = run_python(code)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_import_reads_no_environment_variable():
    code = """
import os, json
seen = []
class Spy(dict):
    def __getitem__(self, k): seen.append(k); return dict.__getitem__(self, k)
    def get(self, k, d=None): seen.append(k); return dict.get(self, k, d)
    def __contains__(self, k): seen.append(k); return dict.__contains__(self, k)
    def __iter__(self): seen.append('<iter>'); return dict.__iter__(self)
    def items(self): seen.append('<items>'); return dict.items(self)
    def keys(self): seen.append('<keys>'); return dict.keys(self)
os.environ = Spy(os.environ)
import inference_core, inference_core.testing, inference_core.cli
print(json.dumps(seen))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
