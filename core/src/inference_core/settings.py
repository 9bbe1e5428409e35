"""Environment -> configuration: which backends, in which order, and how each is reached.

``Settings.from_env()`` reads ``os.environ`` plus an optional ``.env`` file (the process
environment wins over the file), or, when given, an explicit ``env`` mapping alone.  Every bad
value is a :class:`~inference_core.errors.ConfigError` at start-up whose message names the
variable, what is wrong with the value and what is accepted.  Secrets (API keys, tokens) are
``SecretStr`` and never appear in a repr, an error message or :meth:`Settings.redacted`.

The seed document's variables work as it documents them (``INFERENCE_PROVIDER``,
``ENABLE_FALLBACK``, ``FALLBACK_CHAIN``, ``OPENAI_*``, ``LOCAL_*``, ``VLLM_MODEL_NAME``,
``HEALTH_CHECK_*``; for the ``openai`` plugin also ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID``,
the openai package's names for the ``organization`` / ``project`` options); each backend also
has namespaced ``INFERENCE_<NAME>_*`` variables, which win over the seed's shared ones:

* ``INFERENCE_<NAME>_BASE_URL``: comma-separated list = replicas;
* ``INFERENCE_<NAME>_MODEL``, ``_API_KEY``, ``_TIMEOUT``, ``_CONNECT_TIMEOUT``;
* ``INFERENCE_<NAME>_ALIASES``: ``alias=model,alias2=model2``;
* ``INFERENCE_<NAME>_PLUGIN``: the entry point this backend instance uses (default: ``NAME``);
* every other ``INFERENCE_<NAME>_<KEY>`` lands in ``BackendConfig.options[<key lower>]``
  (a ``SecretStr`` when ``KEY`` ends in ``KEY``, ``TOKEN`` or ``SECRET``).

Whether a named backend is installed is checked by :func:`inference_core.plugins.load_backends`
(which also knows in-memory plugins); this module checks syntax and values only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any

from pydantic import Field, PrivateAttr, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ._values import BOOL_ACCEPTED, config_error, parse_bool, parse_int
from .env_values import (
    DEFAULT_BASE_URLS,
    NAME_PATTERN,
    api_root,
    mask_url,
    parse_aliases,
    parse_float,
    parse_model_fallbacks,
    parse_models,
    parse_name,
    parse_names,
    parse_url,
    parse_urls,
)
from .errors import ConfigError
from .models import BackendConfig
from .resilience.policy import RESUME_MODES, RouterPolicy

__all__ = [
    "BOOL_ACCEPTED",
    "CORE_VARIABLES",
    "DEFAULT_BASE_URLS",
    "NAME_PATTERN",
    "POLICY_VARIABLES",
    "SEED_VARIABLES",
    "Settings",
    "mask_url",
]


OPENAI_TIMEOUT_DEFAULT = 60.0
LOCAL_TIMEOUT_DEFAULT = 120.0

#: RouterPolicy field -> (variable, kind); kinds: int (>= 0), int1 (>= 1), pos (> 0),
#: nonneg (>= 0), fraction (0..1), bool, resume (one of RESUME_MODES)
POLICY_VARIABLES: dict[str, tuple[str, str]] = {
    "max_retries": ("INFERENCE_MAX_RETRIES", "int"),
    "backoff_base": ("INFERENCE_RETRY_BACKOFF", "nonneg"),
    "backoff_max": ("INFERENCE_RETRY_BACKOFF_MAX", "nonneg"),
    "retry_after_cap": ("INFERENCE_RETRY_AFTER_CAP", "nonneg"),
    "request_deadline": ("INFERENCE_REQUEST_DEADLINE", "pos"),
    "first_token_timeout": ("INFERENCE_FIRST_TOKEN_TIMEOUT", "pos"),
    "idle_timeout": ("INFERENCE_IDLE_TIMEOUT", "pos"),
    "breaker_threshold": ("INFERENCE_BREAKER_THRESHOLD", "int1"),
    "breaker_window": ("INFERENCE_BREAKER_WINDOW", "nonneg"),
    "breaker_cooldown": ("INFERENCE_BREAKER_COOLDOWN", "nonneg"),
    "breaker_failure_rate": ("INFERENCE_BREAKER_FAILURE_RATE", "fraction"),
    "breaker_min_requests": ("INFERENCE_BREAKER_MIN_REQUESTS", "int1"),
    "context_fallback": ("INFERENCE_CONTEXT_FALLBACK", "bool"),
    "stream_resume": ("INFERENCE_STREAM_RESUME", "resume"),
    "stream_resume_max": ("INFERENCE_STREAM_RESUME_MAX", "int"),
}

#: The seed document's variable names, honoured as documented.
SEED_VARIABLES = (
    "INFERENCE_PROVIDER",
    "ENABLE_FALLBACK",
    "FALLBACK_CHAIN",
    "OPENAI_API_KEY",
    "OPENAI_API_BASE",
    "OPENAI_TIMEOUT",
    "LOCAL_INFERENCE_URL",
    "LOCAL_MODEL_NAME",
    "LOCAL_INFERENCE_TIMEOUT",
    "VLLM_MODEL_NAME",
    "HEALTH_CHECK_INTERVAL",
    "HEALTH_CHECK_TIMEOUT",
)

#: Seed-style fallbacks for options of every ``openai``-plugin backend (the names the openai
#: package itself reads): option -> variable. ``INFERENCE_<NAME>_<OPTION>`` wins.
OPENAI_OPTION_FALLBACKS = {"organization": "OPENAI_ORG_ID", "project": "OPENAI_PROJECT_ID"}

#: Every fixed-name variable core settings read (per-backend ``INFERENCE_<NAME>_*`` aside).
CORE_VARIABLES = (
    *SEED_VARIABLES,
    *OPENAI_OPTION_FALLBACKS.values(),
    "INFERENCE_PLUGINS_ALLOW",
    "INFERENCE_TRACE_PLUGINS",
    "INFERENCE_STRICT_MODELS",
    "INFERENCE_MODEL_FALLBACKS",
    "INFERENCE_MODELS_REFRESH",
    "INFERENCE_CONFIG",
    *(var for var, _ in POLICY_VARIABLES.values()),
)

#: The per-backend keys with a field of their own in BackendConfig.
BACKEND_KEYS = ("BASE_URL", "MODEL", "MODELS", "API_KEY", "TIMEOUT", "CONNECT_TIMEOUT", "ALIASES")
_SECRET_SUFFIXES = ("KEY", "KEYS", "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD")
#: Variables of other parts of the project that look like INFERENCE_<NAME>_<KEY>.
_RESERVED_PREFIXES = (
    "INFERENCE_GATEWAY_",
    # keys, limits and shared state (inference_core.state.settings, docs/teams.md)
    "INFERENCE_REDIS_",
    "INFERENCE_KEYS_",
    "INFERENCE_ADMIN_KEYS",
    "INFERENCE_STATE_SYNC_INTERVAL",
    "INFERENCE_LIMITS_LEASE",
)
_DEV_VARIABLES = frozenset(
    {
        "INFERENCE_TEST_LLAMACPP_URL",
        "INFERENCE_TEST_VLLM_CHAT_URL",
        "INFERENCE_TEST_VLLM_EMBED_URL",
        "INFERENCE_TEST_NO_PEERS",
        "INFERENCE_REQUIRE_PEERS",
        "INFERENCE_CACHE_DIR",
        "INFERENCE_DOCTOR_GPUS",
    }
)


# ----------------------------------------------------------------------------- value parsers


_fail = config_error  # the parsers live in env_values and _values (BackendConfig uses them too)


def _is_secret_var(variable: str) -> bool:
    return variable.upper().endswith(_SECRET_SUFFIXES)


# ---------------------------------------------------------------------------------- settings


class Settings(BaseSettings):
    """The resolved configuration. Build it with :meth:`from_env`."""

    model_config = SettingsConfigDict(frozen=True, arbitrary_types_allowed=True)

    provider: str = "llamacpp"
    enable_fallback: bool = False
    fallback_chain: list[str] = Field(default_factory=list)
    health_check_interval: float = 60.0
    health_check_timeout: float = 5.0
    plugins_allow: list[str] | None = None
    trace_plugins: bool = False
    strict_models: bool = False
    model_fallbacks: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    models_refresh: float = 10.0
    policy: RouterPolicy = Field(default_factory=RouterPolicy)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)

    _env: dict[str, str] = PrivateAttr(default_factory=dict)
    _sources: dict[str, dict[str, str]] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # from_env() reads and validates the environment itself (to name each bad variable
        # and to read the dynamic INFERENCE_<NAME>_* family); the constructor takes values only.
        return (init_settings,)

    # ----------------------------------------------------------------------------- the API

    @property
    def chain(self) -> list[str]:
        """The provider, then (when fallback is enabled) the fallback chain, without repeats."""
        names = [self.provider]
        if self.enable_fallback:
            names += [n for n in self.fallback_chain if n not in names]
        return names

    def plugin_for(self, name: str) -> str:
        """The entry point backend instance ``name`` uses (``INFERENCE_<NAME>_PLUGIN``)."""
        config = self.backends.get(name)
        plugin = config.options.get("plugin") if config else None
        return plugin if isinstance(plugin, str) and plugin else name

    def backend(self, name: str) -> BackendConfig:
        """The resolved :class:`BackendConfig` of backend ``name``.

        Backends of the chain are resolved (and validated) by :meth:`from_env`; any other name
        is resolved on demand from the same environment.
        """
        if name in self.backends:
            return self.backends[name]
        parse_name("backend name", name)
        config, _ = _resolve_backend(name, self._env, self.chain, self.provider)
        return config

    def sources(self, name: str) -> dict[str, str]:
        """For backend ``name``: field -> the variable it came from (``default`` if none)."""
        if name not in self._sources:
            self.backend(name)
            _, src = _resolve_backend(name, self._env, self.chain, self.provider)
            return src
        return dict(self._sources[name])

    def redacted(self) -> dict[str, Any]:
        """Everything, printable: secrets as ``"****"`` (not even their last characters)."""
        return {
            "provider": self.provider,
            "enable_fallback": self.enable_fallback,
            "fallback_chain": list(self.fallback_chain),
            "chain": self.chain,
            "health_check_interval": self.health_check_interval,
            "health_check_timeout": self.health_check_timeout,
            "plugins_allow": None if self.plugins_allow is None else list(self.plugins_allow),
            "trace_plugins": self.trace_plugins,
            "strict_models": self.strict_models,
            "model_fallbacks": {k: list(v) for k, v in self.model_fallbacks.items()},
            "models_refresh": self.models_refresh,
            "policy": asdict(self.policy),
            "backends": {name: redact_backend(cfg) for name, cfg in self.backends.items()},
        }

    # ------------------------------------------------------------------------ construction

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, env_file: str | None = ".env"
    ) -> Settings:
        """Read and validate the configuration.

        ``env`` given: that mapping only (tests, embedding apps).  Otherwise ``os.environ`` on
        top of ``env_file`` when it exists (pass ``None`` to skip the file).  Empty values
        count as unset.  Raises :class:`ConfigError` on the first bad value.
        """
        raw = _gather(env, env_file)

        def get(name: str) -> str | None:
            value = raw.get(name)
            return value if value is not None and value.strip() != "" else None

        provider = parse_name("INFERENCE_PROVIDER", get("INFERENCE_PROVIDER") or "llamacpp")
        enable_fallback = parse_bool("ENABLE_FALLBACK", get("ENABLE_FALLBACK") or "false")
        chain_value = get("FALLBACK_CHAIN")
        fallback_chain = parse_names("FALLBACK_CHAIN", chain_value) if chain_value else []
        interval = get("HEALTH_CHECK_INTERVAL")
        timeout = get("HEALTH_CHECK_TIMEOUT")
        allow_value = get("INFERENCE_PLUGINS_ALLOW")
        allow = None
        if allow_value is not None:
            allow = [p.strip() for p in allow_value.split(",") if p.strip()]
            for dist in allow:
                if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", dist):
                    raise _fail(
                        "INFERENCE_PLUGINS_ALLOW",
                        allow_value,
                        f"{dist!r} is not a distribution name",
                        "comma-separated distribution names, e.g. inference-vllm,inference-echo",
                    )

        policy_kwargs: dict[str, Any] = {}
        for fname, (var, kind) in POLICY_VARIABLES.items():
            value = get(var)
            if value is None:
                continue
            if kind == "bool":
                policy_kwargs[fname] = parse_bool(var, value)
            elif kind == "resume":
                mode = value.strip().lower()
                if mode not in RESUME_MODES:
                    raise _fail(var, value, "not a resume mode", " | ".join(RESUME_MODES))
                policy_kwargs[fname] = mode
            elif kind == "int":
                policy_kwargs[fname] = parse_int(var, value, minimum=0)
            elif kind == "int1":
                policy_kwargs[fname] = parse_int(var, value, minimum=1)
            elif kind == "fraction":
                rate = parse_float(var, value, positive=False)
                if rate > 1:
                    raise _fail(var, value, "above 1", "a fraction from 0 to 1, e.g. 0.25")
                policy_kwargs[fname] = rate
            else:
                policy_kwargs[fname] = parse_float(var, value, positive=kind == "pos")
        try:
            policy = RouterPolicy(**policy_kwargs)
        except ValueError as exc:  # pragma: no cover - parsers above check the same bounds
            raise ConfigError(f"resilience settings: {exc}") from None
        if policy.backoff_max < policy.backoff_base:
            raise _fail(
                "INFERENCE_RETRY_BACKOFF_MAX",
                str(policy.backoff_max),
                f"smaller than INFERENCE_RETRY_BACKOFF ({policy.backoff_base})",
                "a number >= INFERENCE_RETRY_BACKOFF",
            )

        chain = [provider] + (
            [n for n in fallback_chain if n != provider] if enable_fallback else []
        )
        backends: dict[str, BackendConfig] = {}
        sources: dict[str, dict[str, str]] = {}
        for name in chain:
            if name in backends:
                continue
            backends[name], sources[name] = _resolve_backend(name, raw, chain, provider)
        fallbacks_value = get("INFERENCE_MODEL_FALLBACKS")
        model_fallbacks = (
            parse_model_fallbacks("INFERENCE_MODEL_FALLBACKS", fallbacks_value, chain)
            if fallbacks_value
            else {}
        )
        refresh_value = get("INFERENCE_MODELS_REFRESH")

        settings = cls(
            provider=provider,
            enable_fallback=enable_fallback,
            fallback_chain=fallback_chain,
            health_check_interval=parse_float("HEALTH_CHECK_INTERVAL", interval)
            if interval
            else 60.0,
            health_check_timeout=parse_float("HEALTH_CHECK_TIMEOUT", timeout) if timeout else 5.0,
            plugins_allow=allow,
            trace_plugins=parse_bool(
                "INFERENCE_TRACE_PLUGINS", get("INFERENCE_TRACE_PLUGINS") or "false"
            ),
            strict_models=parse_bool(
                "INFERENCE_STRICT_MODELS", get("INFERENCE_STRICT_MODELS") or "false"
            ),
            model_fallbacks=model_fallbacks,
            models_refresh=parse_float("INFERENCE_MODELS_REFRESH", refresh_value)
            if refresh_value
            else 10.0,
            policy=policy,
            backends=backends,
        )
        settings._env = {
            k: v for k, v in raw.items() if k in CORE_VARIABLES or k.startswith("INFERENCE_")
        }
        settings._sources = sources
        return settings

    def validate_installed(self, installed: Iterable[str]) -> None:
        """Raise :class:`ConfigError` naming the variable when a chain name is not installed."""
        known = sorted(set(installed))
        for name in self.chain:
            plugin = self.plugin_for(name)
            if plugin in known:
                continue
            if plugin != name:
                variable = f"INFERENCE_{name.upper()}_PLUGIN"
            elif name == self.provider:
                variable = "INFERENCE_PROVIDER"
            else:
                variable = "FALLBACK_CHAIN"
            raise _fail(
                variable,
                plugin,
                f"no backend plugin named {plugin!r} is installed",
                (", ".join(known) or "no backend is installed")
                + f" (pip install inference-{plugin.replace('_', '-')}?)",
            )


def redact_backend(config: BackendConfig) -> dict[str, Any]:
    """A :class:`BackendConfig` as a printable dict (secrets ``"****"``, URL credentials masked)."""
    return {
        "base_urls": [mask_url(u) for u in config.base_urls],
        "model": config.model,
        "api_key": "****" if config.api_key is not None else None,
        "timeout": config.timeout,
        "connect_timeout": config.connect_timeout,
        "aliases": dict(config.aliases),
        "models": list(config.models),
        "options": {
            k: "****" if isinstance(v, SecretStr) else v for k, v in config.options.items()
        },
    }


# ----------------------------------------------------------------------------------- helpers


def _gather(env: Mapping[str, str] | None, env_file: str | None) -> dict[str, str]:
    """The variables: ``env`` alone, or ``os.environ`` over the ``.env`` file; both over the
    ``INFERENCE_CONFIG`` TOML file they name (the environment wins)."""
    if env is not None:
        merged = {str(k): str(v) for k, v in env.items() if v is not None}
    else:
        merged = {}
        if env_file and os.path.isfile(env_file):
            from dotenv import dotenv_values

            merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        merged.update(os.environ)
    from .config_file import file_variables

    from_file = file_variables(merged)
    if not from_file:
        return merged
    return {**from_file, **{k: v for k, v in merged.items() if v is not None and v.strip()}}


_GLOBAL_NAMES = frozenset(CORE_VARIABLES)


def _backend_vars(name: str, raw: Mapping[str, str], chain: list[str]) -> dict[str, str]:
    """``INFERENCE_<NAME>_<KEY>`` -> {KEY: value}, skipping global variables and the variables
    of another chain member whose name extends this one (``vllm`` vs ``vllm_large``)."""
    prefix = f"INFERENCE_{name.upper()}_"
    longer = [
        f"INFERENCE_{other.upper()}_"
        for other in chain
        if other != name and f"INFERENCE_{other.upper()}_".startswith(prefix)
    ]
    out: dict[str, str] = {}
    for var, value in raw.items():
        if not var.startswith(prefix) or var in _GLOBAL_NAMES:
            continue
        if var in _DEV_VARIABLES or var.startswith(_RESERVED_PREFIXES):
            continue
        if any(var.startswith(p) for p in longer):
            continue
        if value is None or value.strip() == "":
            continue
        out[var[len(prefix) :]] = value
    return out


def _local_target(chain: list[str], provider: str, plugin_of: Mapping[str, str]) -> str | None:
    """The one backend the seed's ``LOCAL_*`` variables configure."""
    if plugin_of.get(provider, provider) != "openai":
        return provider
    for name in chain:
        if plugin_of.get(name, name) != "openai":
            return name
    return None


def _resolve_backend(
    name: str, raw: Mapping[str, str], chain: list[str], provider: str
) -> tuple[BackendConfig, dict[str, str]]:
    own = _backend_vars(name, raw, chain)
    prefix = f"INFERENCE_{name.upper()}_"

    def seed(var: str) -> str | None:
        value = raw.get(var)
        return value if value is not None and value.strip() != "" else None

    plugin = parse_name(prefix + "PLUGIN", own["PLUGIN"]) if "PLUGIN" in own else name
    plugin_of = {}
    for member in chain:
        member_plugin = raw.get(f"INFERENCE_{member.upper()}_PLUGIN", "").strip()
        plugin_of[member] = member_plugin or member
    is_openai = plugin == "openai"
    is_local_target = not is_openai and _local_target(chain, provider, plugin_of) == name
    src: dict[str, str] = {}

    # base URL(s)
    if "BASE_URL" in own:
        base_urls = parse_urls(prefix + "BASE_URL", own["BASE_URL"])
        src["base_urls"] = prefix + "BASE_URL"
    elif is_openai and seed("OPENAI_API_BASE"):
        base_urls = (parse_url("OPENAI_API_BASE", seed("OPENAI_API_BASE") or ""),)
        src["base_urls"] = "OPENAI_API_BASE"
    elif is_local_target and seed("LOCAL_INFERENCE_URL"):
        base_urls = parse_urls("LOCAL_INFERENCE_URL", seed("LOCAL_INFERENCE_URL") or "")
        src["base_urls"] = "LOCAL_INFERENCE_URL"
    else:
        default = DEFAULT_BASE_URLS.get(plugin)
        base_urls = (default,) if default else ()
        src["base_urls"] = "default"
    base_urls = tuple(api_root(url, plugin) for url in base_urls)

    # model
    model: str | None = None
    if "MODEL" in own:
        model, src["model"] = own["MODEL"].strip(), prefix + "MODEL"
    elif plugin == "vllm" and seed("VLLM_MODEL_NAME"):
        model, src["model"] = (seed("VLLM_MODEL_NAME") or "").strip(), "VLLM_MODEL_NAME"
    elif is_local_target and seed("LOCAL_MODEL_NAME"):
        model, src["model"] = (seed("LOCAL_MODEL_NAME") or "").strip(), "LOCAL_MODEL_NAME"
    elif plugin == "ollama" and seed("OLLAMA_MODEL"):
        # compose.yaml's pull variable, after the seed's LOCAL_MODEL_NAME (never over it)
        model, src["model"] = (seed("OLLAMA_MODEL") or "").strip(), "OLLAMA_MODEL"
    else:
        src["model"] = "default"

    # API key
    api_key: SecretStr | None = None
    if "API_KEY" in own:
        api_key, src["api_key"] = SecretStr(own["API_KEY"].strip()), prefix + "API_KEY"
    elif is_openai and seed("OPENAI_API_KEY"):
        api_key, src["api_key"] = (
            SecretStr((seed("OPENAI_API_KEY") or "").strip()),
            "OPENAI_API_KEY",
        )
    else:
        src["api_key"] = "default"

    # timeouts
    if "TIMEOUT" in own:
        timeout, src["timeout"] = (
            parse_float(prefix + "TIMEOUT", own["TIMEOUT"]),
            prefix + "TIMEOUT",
        )
    elif is_openai and seed("OPENAI_TIMEOUT"):
        timeout = parse_float("OPENAI_TIMEOUT", seed("OPENAI_TIMEOUT") or "")
        src["timeout"] = "OPENAI_TIMEOUT"
    elif is_local_target and seed("LOCAL_INFERENCE_TIMEOUT"):
        timeout = parse_float("LOCAL_INFERENCE_TIMEOUT", seed("LOCAL_INFERENCE_TIMEOUT") or "")
        src["timeout"] = "LOCAL_INFERENCE_TIMEOUT"
    else:
        timeout = OPENAI_TIMEOUT_DEFAULT if is_openai else LOCAL_TIMEOUT_DEFAULT
        src["timeout"] = "default"
    if "CONNECT_TIMEOUT" in own:
        connect_timeout = parse_float(prefix + "CONNECT_TIMEOUT", own["CONNECT_TIMEOUT"])
        src["connect_timeout"] = prefix + "CONNECT_TIMEOUT"
    else:
        connect_timeout, src["connect_timeout"] = 5.0, "default"

    models: tuple[str, ...] = ()
    if "MODELS" in own:
        models, src["models"] = parse_models(prefix + "MODELS", own["MODELS"]), prefix + "MODELS"

    aliases: dict[str, str] = {}
    if "ALIASES" in own:
        aliases, src["aliases"] = (
            parse_aliases(prefix + "ALIASES", own["ALIASES"]),
            prefix + "ALIASES",
        )

    options: dict[str, str | SecretStr] = {}
    for key, value in own.items():
        if key in BACKEND_KEYS:
            continue
        if not re.match(r"^[A-Z0-9][A-Z0-9_]*$", key):
            continue  # lower-case or odd spellings are not ours
        options[key.lower()] = SecretStr(value) if _is_secret_var(key) else value
        src[f"options.{key.lower()}"] = prefix + key
    if is_openai:
        for key, variable in OPENAI_OPTION_FALLBACKS.items():
            if key not in options and seed(variable):
                options[key] = (seed(variable) or "").strip()
                src[f"options.{key}"] = variable
    if plugin != name:
        options["plugin"] = plugin

    config = BackendConfig(
        name=name,
        base_urls=base_urls,
        model=model or None,
        api_key=api_key,
        timeout=timeout,
        connect_timeout=connect_timeout,
        aliases=aliases,
        models=models,
        options=options,
    )
    return config, src


def policy_field_names() -> list[str]:
    """The :class:`RouterPolicy` fields (a test checks each has a variable)."""
    return [f.name for f in fields(RouterPolicy)]
