"""Shared helpers for the deployment tests: compose.yaml parsing and Compose-style interpolation.

No Docker engine runs where these tests run, so what `docker compose config` would do (variable
interpolation, profile selection) is reimplemented here, small and strict, following the Compose
Specification's interpolation rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    pass


def _braced_end(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start`` (nesting aware)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"unclosed ${{ in {text!r}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``,
    ``${VAR:?e}``, ``${VAR?e}``, ``${VAR:+a}``, ``${VAR+a}``, with nested defaults."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            end = _braced_end(text, i + 2)
            body = text[i + 2 : end]
            m = NAME.match(body)
            if m is None:
                raise InterpolationError(f"bad variable in {text!r}")
            name, rest = m.group(0), body[m.end() :]
            value = env.get(name)
            if rest == "":
                out.append(value or "")
            else:
                op = rest[:2] if rest[:2] in {":-", ":?", ":+"} else rest[:1]
                arg = rest[len(op) :]
                unset_or_empty = not value
                if op == ":-":
                    out.append(interpolate(arg, env) if unset_or_empty else value)
                elif op == "-":
                    out.append(interpolate(arg, env) if value is None else value)
                elif op in {":?", "?"}:
                    missing = unset_or_empty if op == ":?" else value is None
                    if missing:
                        raise InterpolationError(f"{name}: {interpolate(arg, env)}")
                    out.append(value)
                elif op == ":+":
                    out.append("" if unset_or_empty else interpolate(arg, env))
                elif op == "+":
                    out.append("" if value is None else interpolate(arg, env))
                else:
                    raise InterpolationError(f"bad operator in ${{{body}}}")
            i = end + 1
            continue
        m = NAME.match(text, i + 1)
        if m is None:
            raise InterpolationError(f"lone $ in {text!r} (write $$ for a literal $)")
        out.append(env.get(m.group(0)) or "")
        i = m.end()
    return "".join(out)


def variables_in(text: str) -> set[str]:
    """Every variable name an interpolated string refers to (nested defaults included)."""
    names: set[str] = set()
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("${", i):
            end = _braced_end(text, i + 2)
            body = text[i + 2 : end]
            m = NAME.match(body)
            if m:
                names.add(m.group(0))
                names |= variables_in(body[m.end() :])
            i = end + 1
        elif text[i] == "$":
            m = NAME.match(text, i + 1)
            if m:
                names.add(m.group(0))
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return names


def walk_strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, Mapping):
        return [s for v in node.values() for s in walk_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in walk_strings(v)]
    return []


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    return node


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def active_services(compose: Mapping[str, Any], profiles: set[str]) -> set[str]:
    """Services `docker compose --profile P ... up` starts: profile-less ones plus matches."""
    return {
        name
        for name, svc in compose["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }


def container_env(
    compose: Mapping[str, Any], service: str, dotenv: Mapping[str, str]
) -> dict[str, str]:
    """The environment a service's container gets for a given ``.env`` (no shell variables).

    ``env_file`` (.env) first, then ``environment`` (which wins); a ``null`` value passes the
    variable through from the interpolation environment (here: the same .env), or leaves it
    unset.
    """
    svc = compose["services"][service]
    result: dict[str, str] = {}
    env_files = svc.get("env_file") or []
    if isinstance(env_files, str | dict):
        env_files = [env_files]
    for item in env_files:
        path = item["path"] if isinstance(item, dict) else item
        if path == ".env":
            result.update(dotenv)
    environment = svc.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(
            entry.split("=", 1) if "=" in entry else (entry, None) for entry in environment
        )
    for key, value in environment.items():
        if value is None:
            if key in dotenv:
                result[key] = dotenv[key]
            continue
        result[key] = interpolate(str(value), dotenv)
    return result


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="session")
def compose_tools() -> dict[str, Callable[..., Any]]:
    return {
        "interpolate": interpolate,
        "interpolate_tree": interpolate_tree,
        "variables_in": variables_in,
        "walk_strings": walk_strings,
        "active_services": active_services,
        "container_env": container_env,
        "InterpolationError": InterpolationError,
    }
