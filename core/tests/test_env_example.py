""".env.example and the settings agree, both ways, including the documented defaults."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from inference_core.settings import (
    BACKEND_KEYS,
    CORE_VARIABLES,
    DEFAULT_BASE_URLS,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.example"
LINE = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$")
BUILTIN = sorted(DEFAULT_BASE_URLS)
GATEWAY_PREFIX = "INFERENCE_GATEWAY_"


def documented() -> dict[str, str]:
    """Variable -> documented default ('' when none) for every variable line of the file."""
    out: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        match = LINE.match(line.strip())
        if match:
            name, value = match.groups()
            assert name not in out, f"{name} is listed twice in .env.example"
            out[name] = value.split(" #")[0].strip()
    return out


def source_text() -> str:
    parts = [
        (ROOT / name).read_text(errors="replace")
        for name in ("compose.yaml", "Dockerfile")
        if (ROOT / name).is_file()
    ]
    for base in ("core/src", "plugins", "scripts", "tests"):
        for path in (ROOT / base).rglob("*"):
            if path.suffix in (".py", ".sh") and path.is_file():
                parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def test_every_core_variable_is_documented():
    missing = [v for v in CORE_VARIABLES if v not in documented()]
    assert not missing, f"read by settings.py but not in .env.example: {missing}"


@pytest.mark.parametrize("backend", BUILTIN)
def test_every_builtin_backend_has_its_namespaced_variables(backend):
    names = documented()
    missing = [
        f"INFERENCE_{backend.upper()}_{key}"
        for key in BACKEND_KEYS
        if f"INFERENCE_{backend.upper()}_{key}" not in names
    ]
    assert not missing, f"not in .env.example: {missing}"


def test_every_documented_variable_is_read_by_someone():
    from_source = source_text()
    names = documented()
    gateway_fields = gateway_field_names()
    unread = []
    for name in names:
        if name in CORE_VARIABLES:
            continue
        if name.startswith(GATEWAY_PREFIX):
            if gateway_fields is None or name[len(GATEWAY_PREFIX) :].lower() in gateway_fields:
                continue
            unread.append(name)
            continue
        backend = next((b for b in BUILTIN if name.startswith(f"INFERENCE_{b.upper()}_")), None)
        if backend is not None:
            key = name[len(f"INFERENCE_{backend.upper()}_") :]
            if key in BACKEND_KEYS:
                continue
            plugin_src = ROOT / "plugins" / f"inference-{backend}" / "src"
            if plugin_src.is_dir() and any(
                f'"{key.lower()}"' in p.read_text(errors="replace")
                for p in plugin_src.rglob("*.py")
            ):
                continue
        if re.search(rf"\b{re.escape(name)}\b", from_source):
            continue
        unread.append(name)
    assert not unread, f"in .env.example but read by nothing: {unread}"


def test_documented_core_defaults_are_the_real_defaults():
    """Setting a core variable to its documented default changes nothing."""
    baseline = Settings.from_env({}, env_file=None).redacted()
    for name, value in documented().items():
        if name not in CORE_VARIABLES or not value:
            continue
        got = Settings.from_env({name: value}, env_file=None).redacted()
        assert got == baseline, f"{name}={value} in .env.example is not the default"


@pytest.mark.parametrize("backend", BUILTIN)
def test_documented_backend_defaults_are_the_real_defaults(backend):
    env = {"INFERENCE_PROVIDER": backend}
    baseline = Settings.from_env(env, env_file=None).backend(backend)
    for key in BACKEND_KEYS:
        name = f"INFERENCE_{backend.upper()}_{key}"
        value = documented().get(name, "")
        if not value:
            continue
        got = Settings.from_env({**env, name: value}, env_file=None).backend(backend)
        assert got == baseline, f"{name}={value} in .env.example is not the default"
    if DEFAULT_BASE_URLS[backend]:
        assert documented()[f"INFERENCE_{backend.upper()}_BASE_URL"] == DEFAULT_BASE_URLS[backend]
    else:
        assert documented()[f"INFERENCE_{backend.upper()}_BASE_URL"] == ""


def test_seed_openai_defaults():
    names = documented()
    env = {"INFERENCE_PROVIDER": "openai"}
    baseline = Settings.from_env(env, env_file=None).backend("openai")
    for name in ("OPENAI_API_BASE", "OPENAI_TIMEOUT"):
        got = Settings.from_env({**env, name: names[name]}, env_file=None).backend("openai")
        assert got == baseline, name
    env = {"INFERENCE_PROVIDER": "vllm"}
    baseline = Settings.from_env(env, env_file=None).backend("vllm")
    got = Settings.from_env(
        {**env, "LOCAL_INFERENCE_TIMEOUT": names["LOCAL_INFERENCE_TIMEOUT"]}, env_file=None
    ).backend("vllm")
    assert got == baseline


# ------------------------------------------------------------------------- plugin options

ACCESSORS = {"option": str, "option_bool": bool, "option_int": int, "option_float": float}
_UNRESOLVED = object()


def plugin_option_reads() -> list[tuple[str, str, type, object, str]]:
    """Every option a plugin reads: (plugin, key, type, default, where), from plugins/*/src.

    A read is a call ``<config>.option*("key", default, ...)``; ``default`` is the literal
    (or a module-level constant's) value, None when absent, ``_UNRESOLVED`` for an expression.
    """
    reads = []
    for src in sorted((ROOT / "plugins").glob("inference-*/src")):
        plugin = src.parent.name.removeprefix("inference-")
        for path in sorted(src.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            constants = {
                target.id: node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ACCESSORS
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    continue
                default: object = None
                if len(node.args) > 1:
                    arg = node.args[1]
                    if isinstance(arg, ast.Constant):
                        default = arg.value
                    elif isinstance(arg, ast.Name) and arg.id in constants:
                        default = constants[arg.id]
                    else:
                        default = _UNRESOLVED
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                kind = ACCESSORS[node.func.attr]
                reads.append((plugin, node.args[0].value, kind, default, where))
    return reads


def test_the_option_scan_sees_the_plugins():
    keys = {(plugin, key) for plugin, key, *_ in plugin_option_reads()}
    for expected in [("textgen", "autoload"), ("vllm", "health_deep"), ("ollama", "num_ctx")]:
        assert expected in keys, f"the scan missed {expected}: is the accessor renamed?"


def test_every_plugin_option_is_documented():
    names = documented()
    missing = sorted(
        {
            f"INFERENCE_{plugin.upper()}_{key.upper()}  (read at {where})"
            for plugin, key, _, _, where in plugin_option_reads()
            if f"INFERENCE_{plugin.upper()}_{key.upper()}" not in names
        }
    )
    assert not missing, "read by a plugin but not in .env.example:\n" + "\n".join(missing)


def test_documented_plugin_option_defaults_are_the_real_defaults():
    from inference_core.models import BackendConfig

    names = documented()
    wrong = []
    for plugin, key, kind, default, where in plugin_option_reads():
        name = f"INFERENCE_{plugin.upper()}_{key.upper()}"
        if kind is str or default is None or default is _UNRESOLVED or name not in names:
            continue
        if not names[name]:
            wrong.append(f"{name} shows no default but {where} defaults to {default!r}")
            continue
        config = BackendConfig(name=plugin, options={key: names[name]})
        value = getattr(config, f"option_{kind.__name__}")(key, default)
        if value != default:
            wrong.append(f"{name}={names[name]} but {where} defaults to {default!r}")
    assert not wrong, "\n".join(wrong)


# ------------------------------------------------------------------------------ the gateway


def gateway_field_names() -> set[str] | None:
    try:
        from inference_core.gateway.settings import GatewaySettings
    except ImportError:
        return None
    return set(GatewaySettings.model_fields)


def test_gateway_section_matches_gateway_settings():
    fields = gateway_field_names()
    assert fields is not None, "inference_core.gateway.settings is missing"
    listed = {
        n[len(GATEWAY_PREFIX) :].lower() for n in documented() if n.startswith(GATEWAY_PREFIX)
    }
    assert listed == fields, (
        f"missing from .env.example: {sorted(fields - listed)}; "
        f"not a gateway setting: {sorted(listed - fields)}"
    )


def test_gateway_documented_defaults_are_the_real_defaults():
    from inference_core.gateway.settings import GatewaySettings

    baseline = GatewaySettings.from_env({}).summary()
    for name, value in documented().items():
        if name.startswith(GATEWAY_PREFIX) and value:
            got = GatewaySettings.from_env({name: value}).summary()
            assert got == baseline, f"{name}={value} in .env.example is not the default"
