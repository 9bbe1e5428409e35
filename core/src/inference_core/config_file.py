"""``INFERENCE_CONFIG``: an optional TOML file holding anything the environment can.

For users with many backends and models.  The file is read once at start-up (stdlib
``tomllib``) and turned into environment variables, which the process environment (and the
``.env`` file) override: the environment always wins.  Layout::

    provider = "ollama"                      # INFERENCE_PROVIDER
    enable_fallback = true                   # ENABLE_FALLBACK
    fallback_chain = ["vllm", "openai"]      # FALLBACK_CHAIN
    strict_models = false                    # INFERENCE_STRICT_MODELS
    request_deadline = 120                   # INFERENCE_REQUEST_DEADLINE (every policy knob)
    OPENAI_API_KEY = "..."                   # an upper-case key is a variable name, as is

    [model_fallbacks]                        # INFERENCE_MODEL_FALLBACKS
    "llama3.1:8b" = ["vllm/meta-llama/Llama-3.1-8B-Instruct", "gpt-4o-mini"]

    [backends.ollama]                        # INFERENCE_OLLAMA_<KEY>
    base_url = "http://127.0.0.1:11434"
    model = "llama3.1:8b"
    aliases = { fast = "llama3.1:8b" }       # INFERENCE_OLLAMA_ALIASES=fast=llama3.1:8b
    num_ctx = 8192                           # a plugin option

    [gateway]                                # INFERENCE_GATEWAY_<KEY>
    port = 8080

A bad file (unreadable, not TOML, an unknown key, a value of the wrong kind) is a
:class:`~inference_core.errors.ConfigError` naming the file, the key and what it accepts.
``inference.example.toml`` at the repository root is a complete example, kept loadable by a test.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["FILE_KEYS", "FILE_VARIABLE", "load_config_file"]

FILE_VARIABLE = "INFERENCE_CONFIG"

#: Top-level keys of the file -> the variable each sets (the resilience knobs are added below).
FILE_KEYS: dict[str, str] = {
    "provider": "INFERENCE_PROVIDER",
    "enable_fallback": "ENABLE_FALLBACK",
    "fallback_chain": "FALLBACK_CHAIN",
    "strict_models": "INFERENCE_STRICT_MODELS",
    "model_fallbacks": "INFERENCE_MODEL_FALLBACKS",
    "models_refresh": "INFERENCE_MODELS_REFRESH",
    "health_check_interval": "HEALTH_CHECK_INTERVAL",
    "health_check_timeout": "HEALTH_CHECK_TIMEOUT",
    "plugins_allow": "INFERENCE_PLUGINS_ALLOW",
    "trace_plugins": "INFERENCE_TRACE_PLUGINS",
}
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_SCALAR = "a string, number or boolean"


def _fail(path: str, key: str, problem: str, accepted: str) -> ConfigError:
    return ConfigError(
        f"{FILE_VARIABLE}={path}: key {key!r}: {problem}; accepted: {accepted}",
        variable=FILE_VARIABLE,
    )


def _scalar(path: str, key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise _fail(path, key, f"a {type(value).__name__} is not allowed here", _SCALAR)


def _text(path: str, key: str, value: Any) -> str:
    """A scalar, or a list of scalars joined with commas."""
    if isinstance(value, list):
        return ",".join(_scalar(path, key, v) for v in value)
    return _scalar(path, key, value)


def _pairs(path: str, key: str, value: Any, accepted: str) -> str:
    """``{a = "x"}`` -> ``a=x,...`` (aliases)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise _fail(path, key, f"a {type(value).__name__} is not allowed here", accepted)
    return ",".join(f"{k}={_scalar(path, f'{key}.{k}', v)}" for k, v in value.items())


def _fallbacks(path: str, key: str, value: Any) -> str:
    """``{model = ["a", "b"]}`` -> ``model=a,b;...`` (INFERENCE_MODEL_FALLBACKS)."""
    accepted = 'a table: model = ["target", ...] (a model name or backend/model)'
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise _fail(path, key, f"a {type(value).__name__} is not allowed here", accepted)
    return ";".join(f"{k}={_text(path, f'{key}.{k}', v)}" for k, v in value.items())


def _policy_keys() -> dict[str, str]:
    from .settings import POLICY_VARIABLES

    return {field: variable for field, (variable, _) in POLICY_VARIABLES.items()}


def load_config_file(path: str) -> dict[str, str]:
    """The variables the TOML file at ``path`` sets; raises :class:`ConfigError` when bad."""
    file = Path(path).expanduser()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{FILE_VARIABLE}={path}: no such file; accepted: the path of a TOML file",
            variable=FILE_VARIABLE,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{FILE_VARIABLE}={path}: cannot read it ({type(exc).__name__}); "
            "accepted: a readable UTF-8 TOML file",
            variable=FILE_VARIABLE,
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{FILE_VARIABLE}={path}: not valid TOML ({exc}); accepted: a TOML file "
            "(docs/routing.md shows one)",
            variable=FILE_VARIABLE,
        ) from None
    top = {**FILE_KEYS, **_policy_keys()}
    out: dict[str, str] = {}
    for key, value in data.items():
        if key == "backends":
            out.update(_backends(path, value))
        elif key == "gateway":
            out.update(_section(path, "gateway", value, "INFERENCE_GATEWAY_"))
        elif key == "model_fallbacks":
            out[top[key]] = _fallbacks(path, key, value)
        elif key in top:
            out[top[key]] = _text(path, key, value)
        elif _VARIABLE.match(key):
            out[key] = _text(path, key, value)
        else:
            accepted = ", ".join([*sorted(top), "backends", "gateway", "any VARIABLE_NAME"])
            raise _fail(path, key, "unknown key", accepted)
    return out


def _section(path: str, name: str, value: Any, prefix: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(path, name, "must be a table", f"[{name}] with key = value lines")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not _KEY.match(key):
            raise _fail(path, f"{name}.{key}", "not a valid key", "lower_case_names")
        out[prefix + key.upper()] = _text(path, f"{name}.{key}", item)
    return out


def _backends(path: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(path, "backends", "must be a table", "[backends.NAME] tables")
    out: dict[str, str] = {}
    for name, table in value.items():
        where = f"backends.{name}"
        if not _KEY.match(name):
            raise _fail(path, where, "not a backend name", "names matching ^[a-z][a-z0-9_]*$")
        if not isinstance(table, dict):
            raise _fail(path, where, "must be a table", f"[{where}] with key = value lines")
        prefix = f"INFERENCE_{name.upper()}_"
        for key, item in table.items():
            if not _KEY.match(key):
                raise _fail(path, f"{where}.{key}", "not a valid key", "lower_case_names")
            if key == "aliases":
                accepted = 'a table: alias = "model"'
                out[prefix + "ALIASES"] = _pairs(path, f"{where}.{key}", item, accepted)
            else:
                out[prefix + key.upper()] = _text(path, f"{where}.{key}", item)
    return out


def file_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of the file ``env`` names in ``INFERENCE_CONFIG`` (none: ``{}``)."""
    path = (env.get(FILE_VARIABLE) or "").strip()
    return load_config_file(path) if path else {}
