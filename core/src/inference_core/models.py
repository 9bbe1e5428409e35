"""Request and response types in the OpenAI wire format.

Requests keep unknown fields (``extra="allow"``) so that backend-specific parameters such as
``top_k``, ``min_p`` or ``structured_outputs`` pass through to the OpenAI-compatible backends
that accept them; ``model_dump(exclude_none=True)`` gives the body to send.

Responses also keep unknown fields (vLLM adds ``token_ids``, llama.cpp ``timings``...).  A
response that came from an OpenAI-compatible backend may carry the exact bytes it was parsed
from (``raw``), so the gateway can relay them without serialising again.  Whoever changes a
field of such a response must call :meth:`WireModel.drop_raw` (or build a new object).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ._values import parse_bool, parse_int, parse_number
from .errors import ConfigError

__all__ = [
    "BackendConfig",
    "ChatChoice",
    "ChatChunk",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "ChunkChoice",
    "ChunkDelta",
    "CompletionChoice",
    "CompletionRequest",
    "CompletionResponse",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "Health",
    "HealthState",
    "ModelInfo",
    "Usage",
]

HealthState = Literal["ready", "loading", "down"]


class WirePart(BaseModel):
    """Base of the nested wire types (messages, choices, deltas, usage): unknown fields kept.

    No private attributes here: pydantic initialises private state for every instance of a
    model that has any, which for a stream chunk's half-dozen nested objects cost about a
    quarter of the relay's CPU.  Only the top-level types (:class:`WireModel`) carry ``raw``.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire dict: what ``json.dumps`` should send (``None`` fields dropped)."""
        return self.model_dump(mode="json", exclude_none=True)


class WireModel(WirePart):
    """Base of the top-level wire types: a :class:`WirePart` plus the raw bytes for relaying.

    The bytes live in pydantic's ``__pydantic_private__`` slot under ``"_raw"``, set directly
    rather than through a ``PrivateAttr``: a declared private attribute makes pydantic run its
    Python-level private-state initialiser (default lookup, deep copy, ``__setattr__``
    dispatch) for every instance, about 190 bytecodes per stream chunk, a fifth of what the
    gateway spends relaying one.  Read them with :attr:`raw`; change them with
    :meth:`set_raw` / :meth:`drop_raw`.
    """

    @classmethod
    def from_raw(cls, raw: bytes) -> Any:
        """Parse and validate ``raw`` JSON, remembering the bytes for a verbatim relay."""
        obj = cls.model_validate_json(raw)
        obj.set_raw(raw)
        return obj

    @property
    def raw(self) -> bytes | None:
        """The exact JSON bytes this object was parsed from, or None."""
        private = self.__pydantic_private__
        return private.get("_raw") if private else None

    def set_raw(self, raw: bytes) -> None:
        """Make ``raw`` the bytes relayed for this object (they must say what it says)."""
        private = self.__pydantic_private__
        if private is None:
            _set_private(self, {"_raw": raw})
        else:  # a subclass with private attributes of its own
            private["_raw"] = raw

    def drop_raw(self) -> None:
        """Forget the raw bytes (call after changing a field, so the change is not lost)."""
        private = self.__pydantic_private__
        if private:
            private.pop("_raw", None)
            if not private:  # as built without bytes (equality with such an object holds)
                _set_private(self, None)


def _set_private(obj: BaseModel, private: dict[str, Any] | None) -> None:
    """Set pydantic's private-state slot (its ``__setattr__`` would refuse the name)."""
    object.__setattr__(obj, "__pydantic_private__", private)


# ---------------------------------------------------------------------------------- requests


class ChatMessage(WirePart):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatRequest(WireModel):
    """``POST /v1/chat/completions``. ``model`` is an alias that each backend maps to its own."""

    model: str = "default"
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        """True when a streaming client asked for the final usage chunk."""
        return bool(self.stream_options and self.stream_options.get("include_usage"))

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` or, failing that, ``max_tokens``."""
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )


class CompletionRequest(WireModel):
    """``POST /v1/completions`` (legacy text completion)."""

    model: str = "default"
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    echo: bool | None = None
    logprobs: int | None = None
    user: str | None = None


class EmbeddingRequest(WireModel):
    """``POST /v1/embeddings``: a string, a list of strings, or token arrays."""

    model: str = "default"
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @property
    def inputs(self) -> list[Any]:
        """The input as a list (a single string or token array becomes a one-item list)."""
        inp = self.input
        if isinstance(inp, str):
            return [inp]
        if inp and isinstance(inp[0], int):
            return [inp]
        return list(inp)


# --------------------------------------------------------------------------------- responses


class Usage(WirePart):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatChoice(WirePart):
    index: int = 0
    message: ChatMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatResponse(WireModel):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ChunkDelta(WirePart):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(WirePart):
    index: int = 0
    delta: ChunkDelta = Field(default_factory=ChunkDelta)
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatChunk(WireModel):
    """One ``chat.completion.chunk``. The usage chunk has ``choices == []`` and ``usage`` set."""

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None


class CompletionChoice(WirePart):
    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class CompletionResponse(WireModel):
    """A ``text_completion`` object; a stream yields these too (one per chunk)."""

    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice] = Field(default_factory=list)
    usage: Usage | None = None


class Embedding(WirePart):
    object: str = "embedding"
    index: int
    embedding: list[float] | str  # str when encoding_format == "base64"


class EmbeddingResponse(WireModel):
    object: str = "list"
    data: list[Embedding]
    model: str
    usage: Usage | None = None


class ModelInfo(WireModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "inference-core"
    backend: str | None = None


class Health(WireModel):
    """What a ``health`` hook reports. ``loading`` means: up, but not ready to serve yet."""

    state: HealthState
    detail: str | None = None
    latency_ms: float | None = None
    models: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------------------ configuration


class BackendConfig(BaseModel):
    """One backend's resolved settings, as passed to every hook as ``config``.

    ``base_urls`` holds one URL per replica; a hook always talks to ``base_url`` (the router
    hands each call a config whose first URL is the replica it picked).  ``options`` holds
    every other ``INFERENCE_<NAME>_<KEY>`` variable, keyed by lower-case ``<key>``; those whose
    key ends in ``key``, ``token`` or ``secret`` are ``SecretStr``.  Plugins read them with
    :meth:`option` (text) and :meth:`option_bool` / :meth:`option_int` / :meth:`option_float`,
    whose :class:`~inference_core.errors.ConfigError` names ``INFERENCE_<NAME>_<KEY>``, the bad
    value and what is accepted.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    base_urls: tuple[str, ...] = ()
    model: str | None = None
    api_key: SecretStr | None = None
    timeout: float = 60.0
    connect_timeout: float = 5.0
    aliases: dict[str, str] = Field(default_factory=dict)
    models: tuple[str, ...] = ()
    """Models declared served (``INFERENCE_<NAME>_MODELS``): names, or ``("*",)`` for a
    backend that accepts any name; merged with what its ``list_models`` hook reports."""
    options: dict[str, str | SecretStr] = Field(default_factory=dict)

    @property
    def base_url(self) -> str | None:
        """The URL this call should use (the first replica), without a trailing slash."""
        return self.base_urls[0].rstrip("/") if self.base_urls else None

    def model_for(self, requested: str | None, *, default: str | None = None) -> str:
        """The name to send this backend for the model a request names.

        An alias entry (``INFERENCE_<NAME>_ALIASES``) maps to its model; no model or
        ``default`` is ``default`` when given (e.g. a plugin's ``EMBED_MODEL`` option for
        embeddings), else this backend's default model (``INFERENCE_<NAME>_MODEL``, else
        ``"default"``, which the plugin resolves, e.g. to the one model its server serves);
        any other name is sent as it is.  The configured model is the backend's *default*,
        never an override of a name the client asked for.  (The router resolves names before
        it calls a hook, so a plugin usually receives the concrete name already.)
        """
        if requested and requested in self.aliases:
            return self.aliases[requested]
        if not requested or requested == "default":
            return default or self.model or "default"
        return requested

    def option(self, key: str, default: str | None = None) -> str | None:
        """A plugin-declared option as plain text (secrets revealed: do not log the result).

        The value comes without surrounding white space; an unset or blank option gives
        ``default``.
        """
        value = self.options.get(key.lower())
        if value is None:
            return default
        text = (value.get_secret_value() if isinstance(value, SecretStr) else value).strip()
        return text if text else default

    def option_variable(self, key: str) -> str:
        """The variable that sets option ``key``: ``INFERENCE_<NAME>_<KEY>``."""
        return f"INFERENCE_{self.name.upper()}_{key.upper()}"

    def _typed_option(self, key: str, parse: Callable[..., Any], **kwargs: Any) -> Any:
        """``parse(variable, text, **kwargs)`` of option ``key``, or None when it is unset.

        The ConfigError of a secret option (``..._KEY``, ``_TOKEN``...) shows ``****``.
        """
        text = self.option(key)
        if text is None:
            return None
        variable = self.option_variable(key)
        try:
            return parse(variable, text, **kwargs)
        except ConfigError as exc:
            if not isinstance(self.options.get(key.lower()), SecretStr):
                raise
            message = exc.message.replace(repr(text), "'****'")
            raise ConfigError(message, variable=variable) from None

    def option_bool(self, key: str, default: bool) -> bool:
        """Option ``key`` as a boolean (``true/false/1/0/yes/no/on/off``, any case).

        Unset or blank gives ``default``; another word raises
        :class:`~inference_core.errors.ConfigError` naming ``INFERENCE_<NAME>_<KEY>``, the
        value and the accepted words.
        """
        value = self._typed_option(key, parse_bool)
        return default if value is None else value

    @overload
    def option_int(self, key: str, default: int, *, minimum: int | None = None) -> int: ...
    @overload
    def option_int(
        self, key: str, default: None = None, *, minimum: int | None = None
    ) -> int | None: ...
    def option_int(
        self, key: str, default: int | None = None, *, minimum: int | None = None
    ) -> int | None:
        """Option ``key`` as a whole number, ``>= minimum`` when given.

        Unset or blank gives ``default`` (not checked against ``minimum``); anything else
        raises :class:`~inference_core.errors.ConfigError` naming ``INFERENCE_<NAME>_<KEY>``,
        the value and what is accepted.
        """
        value = self._typed_option(key, parse_int, minimum=minimum)
        return default if value is None else value

    def option_float(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        positive: bool = False,
    ) -> float:
        """Option ``key`` as a finite number: ``>= minimum`` when given, ``> 0`` when ``positive``.

        Unset or blank gives ``default``; anything else raises
        :class:`~inference_core.errors.ConfigError` naming ``INFERENCE_<NAME>_<KEY>``, the
        value and what is accepted.
        """
        if positive and (minimum is None or minimum <= 0):
            value = self._typed_option(key, parse_number, minimum=0, exclusive=True)
        else:
            value = self._typed_option(key, parse_number, minimum=minimum)
        return default if value is None else value

    def secret(self) -> str | None:
        """The API key in clear text, for an ``Authorization`` header only."""
        return self.api_key.get_secret_value() if self.api_key else None

    def for_replica(self, url: str) -> BackendConfig:
        """A copy of this config whose ``base_url`` is ``url``."""
        return self.model_copy(update={"base_urls": (url,)})
