"""Plugins of two correct designs, each with one seeded bug per mode, for the kit's own tests.

``test_testing_kit.py`` writes this module's source into a pytester directory, adds one
``class TestX(Base): plugin = ...`` and runs the conformance kit on it: the ``"ok"`` modes
must pass every check (no false alarm), every other mode must fail the check of its rule.

* :class:`Compat`: built on core's ``inference_core.http.openai_compat`` (core's SSE decoder
  and error mapping), as the first-party plugins are.
* :class:`Raw`: raw ``httpx``, its own SSE parser and status table, the request sent on the
  stream's first ``__anext__``, and a stream accepted as complete after a ``finish_reason``
  even without ``[DONE]``; as a careful third-party author writes it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time

import httpx

import inference_core
from inference_core import (
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    ChatChunk,
    ChatResponse,
    ContextLengthExceeded,
    Embedding,
    EmbeddingResponse,
    Health,
    ModelInfo,
    ModelNotFound,
    RateLimited,
)
from inference_core.http import openai_compat
from inference_core.testing import BackendConformance, canned

log = logging.getLogger("conformance_plugins")


# ------------------------------------------------------------------ design 1: core's helpers


class Compat:
    """An OpenAI-compatible backend on ``openai_compat``; ``mode`` seeds one bug."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        if mode == "native_claims":  # declares a protocol it never answers natively
            self.native_protocols = ("anthropic.messages",)

    @inference_core.hookimpl
    async def chat(self, request, config, http):
        mode = self.mode
        if mode == "raw_errors":
            r = await http.post(config.base_url + "/v1/chat/completions", json={})
            r.raise_for_status()  # httpx errors leak out
        if mode == "chat_dict":
            body = openai_compat.request_body(request, config)
            r = await http.post(config.base_url + "/v1/chat/completions", json=body)
            return r.json()  # a dict, not a ChatResponse
        if mode == "leak_stream" and request.stream:
            req = http.build_request("POST", config.base_url + "/v1/chat/completions")
            response = await http.send(req, stream=True)  # never closed, swallows truncation

            async def gen():
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        yield ChatChunk.model_validate(json.loads(line[6:]))

            return gen()
        if mode == "stream_list" and request.stream:
            result = await openai_compat.chat(http, config, request)
            return [chunk async for chunk in result]  # a list, not an async iterator
        if mode == "drop_extras":
            body = openai_compat.request_body(request, config)
            body.pop("top_k", None)  # a backend-specific extra, silently dropped
            return await openai_compat.chat(http, config, request, body=body)
        if mode == "no_alias":
            body = request.model_dump(exclude_none=True)  # the client's name, never mapped
            return await openai_compat.chat(http, config, request, body=body)
        if mode == "old_override":  # aliases mapped, but the configured model replaces any name
            model = config.aliases.get(request.model) or config.model
            body = {**openai_compat.request_body(request, config), "model": model}
            return await openai_compat.chat(http, config, request, body=body)
        if mode == "hardcoded_model":
            body = {**openai_compat.request_body(request, config), "model": config.model}
            return await openai_compat.chat(http, config, request, body=body)
        if mode == "logs_key":
            log.debug("chat via %s with key %s", config.base_url, config.secret())
        if mode == "logs_token":
            log.warning("using admin token %s", config.option("admin_token"))
        return await openai_compat.chat(http, config, request)

    @inference_core.hookimpl
    async def complete(self, request, config, http):
        result = await openai_compat.complete(http, config, request)
        if self.mode == "complete_empty" and not request.stream:
            result.choices = []
        return result

    @inference_core.hookimpl
    async def embed(self, request, config, http):
        if self.mode == "drop_embed_fields":
            body = openai_compat.request_body(request, config)
            body.pop("encoding_format", None)
            body.pop("dimensions", None)
            return await openai_compat.embed(http, config, request, body=body)
        result = await openai_compat.embed(http, config, request)
        if self.mode == "reversed":
            result.data.reverse()
        return result

    @inference_core.hookimpl
    async def health(self, config, http):
        if self.mode == "health_raises":
            r = await http.get(config.base_url + "/health")
            r.raise_for_status()
        result = await openai_compat.probe_health(http, config)
        if self.mode == "health_leaks_key":
            result.detail = f"ready, key {config.secret()}"
        return result

    @inference_core.hookimpl
    async def list_models(self, config, http):
        if self.mode == "secret_in_error":
            try:
                return await openai_compat.list_models(http, config)
            except BackendError as exc:
                raise type(exc)(f"{exc.message} (key {config.secret()})") from None
        if self.mode == "closes_http":
            async with http:  # closes the client core shares between every backend
                return await openai_compat.list_models(http, config)
        if self.mode == "models_empty":
            return []
        return await openai_compat.list_models(http, config)


class Base(BackendConformance):
    supports_embeddings = True
    supports_complete = True

    def mock_chat(self, upstream):
        upstream.post("/v1/chat/completions").respond(json=canned.chat_completion())

    def mock_chat_stream(self, upstream):
        upstream.post("/v1/chat/completions").respond(content=canned.chat_stream())

    def mock_embed(self, upstream):
        upstream.post("/v1/embeddings").mock(side_effect=canned.embeddings_handler)

    def mock_complete(self, upstream):
        upstream.post("/v1/completions").respond(json=canned.completion())

    def mock_health(self, upstream):
        upstream.get("/health").respond(json={})

    def mock_list_models(self, upstream):
        upstream.get("/v1/models").respond(json=canned.models())


class SyncHook:
    @inference_core.hookimpl
    def health(self, config, http):
        return None


class Misspelled:
    @inference_core.hookimpl
    async def helth(self, config, http):
        return None

    @inference_core.hookimpl
    async def chat(self, request, config, http=None):
        return None


# ------------------------------------------------------- design 2: raw httpx, its own parsers


def _retry_after(headers, mode):
    ms = headers.get("retry-after-ms")
    if ms and mode != "retry_after_seconds_only":
        return float(ms) / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        if mode == "retry_after_seconds_only":
            return None
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())


def _status_error(response, backend, mode):
    """This plugin's own status table (not core's)."""
    status = response.status_code
    try:
        data = json.loads(response.content)
        err = data.get("error", data) if isinstance(data, dict) else {}
        message = str(err.get("message") or err.get("detail") or "")
    except ValueError:
        message = ""
    text = message or f"HTTP {status}"
    if status == 429:
        return RateLimited(text, backend=backend, retry_after=_retry_after(response.headers, mode))
    if status == 401 or (status == 403 and mode != "403_bad_request"):
        return AuthenticationFailed(text, backend=backend)
    if status in (408, 504):
        return BackendTimeout(text, backend=backend)
    if status == 404:
        if message == "Not Found":
            return CapabilityNotSupported(text, backend=backend)
        return ModelNotFound(text, backend=backend)
    if 400 <= status < 500 or (status == 502 and mode == "502_bad_request"):
        if "context length" in message and mode != "context_bad_request":
            return ContextLengthExceeded(text, backend=backend)
        return BadRequest(text, backend=backend)
    return BackendUnavailable(f"HTTP {status}: {text}", backend=backend)


class Raw:
    """An OpenAI-compatible backend on raw ``httpx``; ``mode`` seeds one bug."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode

    async def _send(self, http, config, method, path, body=None, *, stream=False):
        headers = {"authorization": f"Bearer {config.secret()}"}
        request = http.build_request(method, config.base_url + path, json=body, headers=headers)
        attempts = 3 if self.mode == "retries" else 1
        for attempt in range(attempts):
            try:
                response = await http.send(request, stream=stream)
            except httpx.TimeoutException:
                error = BackendTimeout("timed out", backend=config.name)
            except httpx.HTTPError as exc:
                error = BackendUnavailable(f"cannot connect: {exc}", backend=config.name)
            else:
                if response.status_code < 300:
                    return response
                await response.aread()
                await response.aclose()
                error = _status_error(response, config.name, self.mode)
            if attempt + 1 < attempts and error.retryable:
                await asyncio.sleep(0)
                continue
            raise error
        raise AssertionError("unreachable")

    def _json(self, response, config):
        try:
            return json.loads(response.content)
        except ValueError:
            if self.mode == "crash_on_garbage":
                raise
            raise BackendUnavailable("not JSON", backend=config.name) from None

    def _body(self, request, config):
        body = request.model_dump(exclude_none=True)
        body["model"] = config.model_for(request.model)
        if self.mode == "drop_fields":
            keep = ("model", "messages", "stream", "max_tokens", "temperature")
            body = {k: v for k, v in body.items() if k in keep}
        return body

    @inference_core.hookimpl
    async def chat(self, request, config, http):
        body = self._body(request, config)
        if not request.stream:
            response = await self._send(http, config, "POST", "/v1/chat/completions", body)
            data = self._json(response, config)
            try:
                return ChatResponse.model_validate(data)
            except ValueError:
                raise BackendUnavailable("malformed answer", backend=config.name) from None
        return self._stream(http, config, body)

    async def _stream(self, http, config, body):
        """The request goes out on the first ``__anext__``; refusals surface there."""
        mode = self.mode
        if mode == "yield_first":  # an eager role chunk, before the upstream said anything
            yield ChatChunk(id="raw", created=0, model="m", choices=[{"delta": {"role": "x"}}])
        response = await self._send(http, config, "POST", "/v1/chat/completions", body, stream=True)
        finished = done = False
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    if mode == "skip_error_events":
                        continue
                    raise BackendUnavailable(f"in-band: {event['error']}", backend=config.name)
                chunk = ChatChunk.model_validate(event)
                if not chunk.choices and mode == "drop_usage":
                    continue
                finished = finished or any(c.finish_reason for c in chunk.choices)
                yield chunk
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"stream broken: {exc}", backend=config.name) from None
        except ValueError:
            raise BackendUnavailable("malformed event", backend=config.name) from None
        finally:
            await response.aclose()
        if not (done or finished or mode == "no_end_check"):
            raise BackendUnavailable("the stream ended early", backend=config.name)

    @inference_core.hookimpl
    async def embed(self, request, config, http):
        inputs = request.inputs
        if self.mode == "dedupe":
            inputs = list(dict.fromkeys(inputs))
        body = {**self._body(request, config), "input": inputs}
        response = await self._send(http, config, "POST", "/v1/embeddings", body)
        items = self._json(response, config).get("data") or []
        if self.mode != "ignore_index":
            items = sorted(items, key=lambda item: item["index"])
        data = [Embedding(index=i, embedding=item["embedding"]) for i, item in enumerate(items)]
        if len(data) != len(inputs):
            raise BackendUnavailable("count mismatch", backend=config.name)
        return EmbeddingResponse(data=data, model=body["model"])

    @inference_core.hookimpl
    async def health(self, config, http):
        try:
            response = await http.get(config.base_url + "/health")
        except httpx.HTTPError as exc:
            return Health(state="down", detail=type(exc).__name__)
        await response.aclose()
        if response.status_code == 200:
            return Health(state="ready")
        return Health(state="down", detail=f"HTTP {response.status_code}")

    @inference_core.hookimpl
    async def list_models(self, config, http):
        response = await self._send(http, config, "GET", "/v1/models")
        items = self._json(response, config)
        if not isinstance(items, dict):
            raise BackendUnavailable("malformed model list", backend=config.name)
        return [ModelInfo(id=m["id"]) for m in items.get("data") or []]


class RawBase(Base):
    supports_complete = False
