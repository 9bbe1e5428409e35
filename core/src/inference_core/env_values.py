"""Parsers for the environment's values: backend names, URLs, aliases, declared models, model
fallbacks (``settings`` turns variables into configuration with them).

Each parser takes the variable's name and its text and returns the typed value, or raises
:class:`~inference_core.errors.ConfigError` whose message names the variable, what is wrong and
what is accepted.  Secrets never pass through here (URLs are shown through :func:`mask_url`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from ._values import config_error, parse_number

__all__ = [
    "DEFAULT_BASE_URLS",
    "NAME_PATTERN",
    "RESERVED_NAMES",
    "ROOT_URL_PLUGINS",
    "api_root",
    "mask_url",
    "parse_aliases",
    "parse_float",
    "parse_model_fallbacks",
    "parse_models",
    "parse_name",
    "parse_names",
    "parse_url",
    "parse_urls",
]

_fail = config_error

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

#: Where each known backend listens when nothing is configured (llamacpp: embedded/managed).
DEFAULT_BASE_URLS: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://localhost:11434",
    "vllm": "http://localhost:8000",
    "llamacpp": None,
    "textgen": "http://localhost:5000",
}
#: First-party plugins whose paths start with /v1 (or /api): a base URL given with a trailing
#: /v1 (as vLLM's and the OpenAI SDK's examples write it) is taken without it.
ROOT_URL_PLUGINS = frozenset({"vllm", "llamacpp", "textgen", "ollama"})

#: Names a backend cannot have: their variables belong to another part of the project.
RESERVED_NAMES = frozenset({"gateway"})


def parse_float(variable: str, value: str, *, positive: bool = True) -> float:
    """Seconds: a finite number > 0 (``positive``) or >= 0."""
    return parse_number(variable, value, minimum=0, exclusive=positive, unit=" (seconds)")


def parse_name(variable: str, value: str) -> str:
    name = value.strip()
    if name in RESERVED_NAMES:
        raise _fail(
            variable,
            value,
            f"{name!r} is reserved (INFERENCE_{name.upper()}_* configures another part)",
            "any other backend name",
        )
    if not NAME_PATTERN.match(name):
        raise _fail(
            variable,
            value,
            f"{name!r} is not a valid backend name",
            "lower-case names matching ^[a-z][a-z0-9_]*$ (e.g. openai, vllm, llamacpp)",
        )
    return name


def parse_names(variable: str, value: str) -> list[str]:
    """A comma-separated list of backend names (empty items ignored, duplicates dropped)."""
    names: list[str] = []
    for part in value.split(","):
        if part.strip():
            name = parse_name(variable, part)
            if name not in names:
                names.append(name)
    return names


def mask_url(url: str) -> str:
    """``url`` safe to print: a ``user:password@`` part becomes ``****@``, every query value
    ``****`` (``?key=****&token=****``: tokens travel there), a fragment is dropped."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url
    if "@" in parts.netloc:
        parts = parts._replace(netloc="****@" + parts.netloc.rsplit("@", 1)[1])
    if parts.query:
        masked = [
            (item.split("=", 1)[0] + "=****") if item else item
            for item in parts.query.replace(";", "&").split("&")
        ]
        parts = parts._replace(query="&".join(masked))
    return urlunsplit(parts._replace(fragment=""))


def parse_url(variable: str, value: str) -> str:
    url = value.strip()
    accepted = "an http:// or https:// URL with a host, e.g. http://localhost:8000"
    shown = mask_url(url)
    if not url or any(c.isspace() for c in url):
        raise _fail(variable, shown, "not a URL (empty or contains spaces)", accepted)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise _fail(variable, shown, f"malformed URL ({exc})", accepted) from None
    if parts.scheme not in ("http", "https"):
        raise _fail(
            variable, shown, f"the scheme must be http or https, not {parts.scheme!r}", accepted
        )
    if not parts.hostname:
        raise _fail(variable, shown, "the URL has no host", accepted)
    return url.rstrip("/")


def parse_urls(variable: str, value: str) -> tuple[str, ...]:
    urls = tuple(parse_url(variable, part) for part in value.split(",") if part.strip())
    if not urls:
        raise _fail(variable, value, "no URL given", "one URL, or a comma-separated list")
    return urls


def parse_aliases(variable: str, value: str) -> dict[str, str]:
    accepted = "alias=model pairs separated by commas, e.g. fast=llama3.1:8b,smart=gpt-4o"
    table: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        alias, sep, model = item.partition("=")
        alias, model = alias.strip(), model.strip()
        if not sep or not alias or not model:
            raise _fail(variable, value, f"{item.strip()!r} is not alias=model", accepted)
        if any(c.isspace() for c in alias):
            raise _fail(variable, value, f"alias {alias!r} contains a space", accepted)
        if alias in table:
            raise _fail(variable, value, f"alias {alias!r} is given twice", accepted)
        table[alias] = model
    return table


def parse_models(variable: str, value: str) -> tuple[str, ...]:
    """``INFERENCE_<NAME>_MODELS``: ``*`` (any name) or a comma-separated list of names."""
    names = tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
    accepted = "* (the backend accepts any model name) or a comma-separated list of model names"
    if not names:
        raise _fail(variable, value, "no model given", accepted)
    if "*" in names and len(names) > 1:
        raise _fail(variable, value, "* cannot be combined with names", accepted)
    for name in names:
        if any(c.isspace() for c in name) or len(name) > 256:
            raise _fail(variable, value, f"{name[:40]!r} is not a model name", accepted)
    return names


def parse_model_fallbacks(
    variable: str, value: str, backends: Iterable[str] = ()
) -> dict[str, tuple[str, ...]]:
    """``INFERENCE_MODEL_FALLBACKS``: ``model=target[,target...][;model=target...]``.

    Each target is a model name or ``backend/model``.  A target whose first segment names one
    of the first-party backends that is not configured (``backends``) is an error: it would
    never be reached.
    """
    accepted = (
        "model=target[,target...][;model=target...], each target a model name or "
        "backend/model, e.g. llama3:8b=vllm/meta-llama/Llama-3.1-8B,gpt-4o-mini"
    )
    configured = set(backends)
    table: dict[str, tuple[str, ...]] = {}
    for entry in value.split(";"):
        if not entry.strip():
            continue
        model, sep, targets_text = entry.partition("=")
        model = model.strip()
        targets = tuple(t.strip() for t in targets_text.split(",") if t.strip())
        if not sep or not model or not targets:
            raise _fail(
                variable, value, f"{entry.strip()!r} is not model=target[,target...]", accepted
            )
        if any(c.isspace() for c in model) or any(any(c.isspace() for c in t) for t in targets):
            raise _fail(variable, value, f"{entry.strip()!r} contains a space", accepted)
        if model in table:
            raise _fail(variable, value, f"model {model!r} is given twice", accepted)
        for target in targets:
            head, slash, rest = target.partition("/")
            if slash and not rest:
                raise _fail(variable, value, f"target {target!r} names no model", accepted)
            if slash and head in DEFAULT_BASE_URLS and configured and head not in configured:
                raise _fail(
                    variable,
                    value,
                    f"target {target!r}: backend {head!r} is not configured "
                    f"(configured: {', '.join(sorted(configured))})",
                    accepted,
                )
            if target == model:
                raise _fail(variable, value, f"{model!r} falls back to itself", accepted)
        table[model] = targets
    return table


def api_root(url: str, plugin: str) -> str:
    """Accept both ways of writing an OpenAI-compatible server's URL.

    The ``openai`` plugin appends its paths to the API root (``https://api.openai.com/v1``):
    a URL with no path at all (the seed's ``LOCAL_INFERENCE_URL`` style) gets ``/v1``.  The
    plugins whose paths carry ``/v1`` themselves (vLLM, llama.cpp, text-generation-webui,
    Ollama) take the server's root: a trailing ``/v1`` (the OpenAI SDK style) is dropped, so
    no request ever goes to ``/v1/v1/...``.
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if plugin == "openai" and not path:
        return urlunsplit(parts._replace(path="/v1"))
    if plugin in ROOT_URL_PLUGINS and path.endswith("/v1"):
        return urlunsplit(parts._replace(path=path[: -len("/v1")])).rstrip("/")
    return url
