"""Per-request caps the gateway enforces before a request reaches the router.

:class:`RequestLimits` is built once from :class:`~.settings.GatewaySettings`; its
:meth:`~RequestLimits.check` is called by the request pipeline on every parsed request and raises
an OpenAI-shaped 400 (:class:`~.errors.GatewayError` naming the field) when one is exceeded:

* ``n`` (``MAX_N``), ``max_tokens`` / ``max_completion_tokens`` (``MAX_TOKENS_CAP``),
  embedding inputs (``MAX_EMBED_INPUTS``);
* ``prompt`` list length of ``/v1/completions`` (``MAX_PROMPTS``): each prompt is one generation;
* chat ``messages`` (``MAX_MESSAGES``) and ``tools`` (``MAX_TOOLS``);
* the ``model`` name's length (``MAX_MODEL_NAME``): names are logged and matched, so they are
  bounded; :func:`shown` cuts any name to that length before it is logged.

A cap of 0 means none (except the model name's, which is always bounded).  Cheap: a few
``len()`` calls per request.
"""

from __future__ import annotations

from typing import Any

from .errors import GatewayError

__all__ = ["RequestLimits", "shown"]

_SHOWN = 256


def shown(model: Any, limit: int = _SHOWN) -> Any:
    """``model`` cut to ``limit`` characters (with a marker) for a log line; others unchanged."""
    if isinstance(model, str) and len(model) > limit:
        return model[:limit] + f"...(+{len(model) - limit} chars)"
    return model


def _too_many(param: str, got: int, cap: int, what: str) -> GatewayError:
    return GatewayError(
        400,
        f"Invalid value for '{param}': {got} {what} is above this gateway's limit of {cap}.",
        param=param,
        code="invalid_value",
    )


class RequestLimits:
    """The caps of one gateway (see the module docstring)."""

    __slots__ = ("max_embed_inputs", "max_messages", "max_model_name", "max_n", "max_prompts",
                 "max_tokens", "max_tools")  # fmt: skip

    def __init__(self, settings: Any) -> None:
        self.max_n: int = settings.max_n
        self.max_tokens: int = settings.max_tokens_cap
        self.max_embed_inputs: int = settings.max_embed_inputs
        self.max_prompts: int = getattr(settings, "max_prompts", 0)
        self.max_messages: int = getattr(settings, "max_messages", 0)
        self.max_tools: int = getattr(settings, "max_tools", 0)
        self.max_model_name: int = getattr(settings, "max_model_name", _SHOWN)

    def check(self, request: Any) -> None:
        """Raise a 400 :class:`GatewayError` for the first cap ``request`` exceeds."""
        # read the pydantic request's own fields (and its extras) directly: getattr() of a
        # name a request type does not have goes through pydantic's __getattr__ and an
        # AttributeError, microseconds each on the hot path
        fields = getattr(request, "__dict__", None) or {}
        get = fields.get
        model = get("model")
        if isinstance(model, str) and len(model) > self.max_model_name:
            raise GatewayError(
                400,
                f"Invalid value for 'model': the name is {len(model)} characters long; this "
                f"gateway accepts at most {self.max_model_name}.",
                param="model",
                code="invalid_value",
            )
        n = get("n")
        if self.max_n and isinstance(n, int) and n > self.max_n:
            raise _value("n", n, self.max_n)
        if "input" in fields and "encoding_format" in fields:  # embeddings
            inputs = request.inputs
            if self.max_embed_inputs and len(inputs) > self.max_embed_inputs:
                raise _too_many("input", len(inputs), self.max_embed_inputs, "inputs")
            return
        cap = self.max_tokens
        if cap:
            extra = getattr(request, "__pydantic_extra__", None) or {}
            for param in ("max_tokens", "max_completion_tokens"):
                value = get(param, extra.get(param))  # a declared field, else an extra
                if isinstance(value, int) and value > cap:
                    raise _value(param, value, cap)
        messages = get("messages")
        if messages is not None:
            if self.max_messages and len(messages) > self.max_messages:
                raise _too_many("messages", len(messages), self.max_messages, "messages")
            tools = get("tools")
            if self.max_tools and tools and len(tools) > self.max_tools:
                raise _too_many("tools", len(tools), self.max_tools, "tools")
            return
        prompt = get("prompt")
        # a list of strings or of token lists is a batch; a flat token list is one prompt
        batch = isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], int)
        if self.max_prompts and batch and len(prompt) > self.max_prompts:  # type: ignore[arg-type]
            raise _too_many("prompt", len(prompt), self.max_prompts, "prompts")  # type: ignore[arg-type]


def _value(param: str, value: int, cap: int) -> GatewayError:
    return GatewayError(
        400,
        f"Invalid value for '{param}': {value} is above this gateway's limit of {cap}.",
        param=param,
        code="invalid_value",
    )
