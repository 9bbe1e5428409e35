"""Gateway settings: the ``INFERENCE_GATEWAY_*`` environment variables.

Read once at start-up (``GatewaySettings.from_env()``); nothing here is looked at per request
except through the precomputed attributes the app keeps.  A bad value is a start-up
:class:`~inference_core.errors.ConfigError` naming the variable.

Variables (defaults in brackets; the full table is in ``docs/gateway.md``, the security
limits in ``docs/security.md``): ``HOST`` [127.0.0.1], ``PORT`` [8080], ``WORKERS`` [1],
``API_KEYS`` (comma list; none = open gateway, refused on a non-loopback bind unless
``ALLOW_UNAUTHENTICATED`` [false]), ``PROTECT_METRICS`` [true] and ``PROTECT_HEALTH`` [true]
(need a key, when keys are set), ``DOCS`` [false] (``/docs``, ``/redoc``, ``/openapi.json``),
``HEADER_TIMEOUT`` [10 s], ``BODY_TIMEOUT`` [30 s], ``MAX_CONNECTIONS`` [4096],
``MAX_HEADER_BYTES`` [32 KiB], ``MAX_PROMPTS`` [64], ``MAX_MESSAGES`` [1024], ``MAX_TOOLS``
[128], ``MAX_MODEL_NAME`` [256],
``MAX_BODY_BYTES`` [4 MiB; 413 above], ``MAX_TOKENS_CAP`` [131072], ``MAX_N`` [16],
``MAX_EMBED_INPUTS`` [2048] (400 naming the field above; 0 = no cap), ``CORS_ORIGINS`` (comma
list, ``*`` for any; none = CORS off), ``LOG_FORMAT`` [json|text], ``LOG_LEVEL`` [info],
``ACCESS_LOG`` [true], ``DRAIN_TIMEOUT`` [30 s after SIGTERM], ``KEEPALIVE_TIMEOUT`` [75 s],
``METRICS`` [true], ``RESPONSES_STORE_MAX`` [1000 stored Responses] and
``RESPONSES_STORE_TTL`` [3600 s] (``previous_response_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ..errors import ConfigError

__all__ = ["ENV_PREFIX", "GatewaySettings"]

ENV_PREFIX = "INFERENCE_GATEWAY_"
_EXPLICIT_ENV: ContextVar[bool] = ContextVar("_EXPLICIT_ENV", default=False)


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class GatewaySettings(BaseSettings):
    """What the HTTP surface does; the backends themselves are configured by ``Settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        env_file=None,
        env_file_encoding="utf-8",
        validate_default=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    allow_unauthenticated: bool = False
    protect_metrics: bool = True
    protect_health: bool = True
    docs: bool = False
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=4096, ge=1)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    max_prompts: int = Field(default=64, ge=0)
    max_messages: int = Field(default=1024, ge=0)
    max_tools: int = Field(default=128, ge=0)
    max_model_name: int = Field(default=256, ge=16)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_tokens_cap: int = Field(default=131072, ge=0)
    max_n: int = Field(default=16, ge=0)
    max_embed_inputs: int = Field(default=2048, ge=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = True
    drain_timeout: float = Field(default=30.0, ge=0)
    keepalive_timeout: float = Field(default=75.0, gt=0)
    metrics: bool = True
    responses_store_max: int = Field(default=1000, ge=1)
    responses_store_ttl: float = Field(default=3600.0, gt=0)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _EXPLICIT_ENV.get():
            return (init_settings,)  # from_env(env=...): the given mapping only
        return (init_settings, env_settings, dotenv_settings)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, env_file: str | None = ".env", **overrides: Any
    ) -> GatewaySettings:
        """Build from ``env`` (default: ``os.environ`` plus the optional ``env_file``).

        With an explicit ``env`` mapping, only that mapping counts (tests, embedding apps).
        ``overrides`` (python names) win over both.  A bad value raises :class:`ConfigError`
        naming the ``INFERENCE_GATEWAY_*`` variable.
        """
        token = None
        try:
            if env is not None:
                env = {**_from_config_file(env), **env}  # the environment wins over the file
                values: dict[str, Any] = {}
                for key, value in env.items():
                    upper = key.upper()
                    if upper.startswith(ENV_PREFIX):
                        name = upper[len(ENV_PREFIX) :].lower()
                        if name in cls.model_fields:
                            values[name] = value
                values.update(overrides)
                token = _EXPLICIT_ENV.set(True)
                return cls(**values)
            file_values = _file_fields(cls, env_file)
            return cls(_env_file=env_file, **{**file_values, **overrides})  # type: ignore[call-arg]
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "?"
            variable = ENV_PREFIX + field.upper()
            shown = "" if field == "api_keys" else f" (got {err.get('input')!r})"
            raise ConfigError(
                f"{variable} is invalid: {err['msg']}{shown}", variable=variable
            ) from None
        finally:
            if token is not None:
                _EXPLICIT_ENV.reset(token)

    def summary(self) -> dict[str, Any]:
        """The settings with secrets masked (for logs and ``inference config``)."""
        data = self.model_dump()
        data["api_keys"] = ["****"] * len(self.api_keys)
        return data


def _from_config_file(env: Mapping[str, str]) -> dict[str, str]:
    """The ``INFERENCE_GATEWAY_*`` variables of the ``INFERENCE_CONFIG`` file ``env`` names."""
    from ..config_file import file_variables

    return {k: v for k, v in file_variables(env).items() if k.startswith(ENV_PREFIX)}


def _file_fields(cls: type[GatewaySettings], env_file: str | None) -> dict[str, str]:
    """Fields set by the config file and by neither the environment nor the ``.env`` file."""
    import os

    seen: dict[str, str] = {}
    if env_file and os.path.isfile(env_file):
        from dotenv import dotenv_values

        seen.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    seen.update(os.environ)
    present = {k.upper() for k, v in seen.items() if v.strip()}
    out: dict[str, str] = {}
    for variable, value in _from_config_file(seen).items():
        name = variable[len(ENV_PREFIX) :].lower()
        if variable not in present and name in cls.model_fields:
            out[name] = value
    return out
