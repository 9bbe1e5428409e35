"""A protocol-faithful fake of text-generation-webui's OpenAI-compatible API (PROTOCOLS.md §4).

On top of the OpenAI routes (see :mod:`.openai_server`) it behaves like text-generation-webui:

* streams follow OpenAI (``modules/api/completions.py``: role in the first delta only, a
  separate ``choices: []`` usage chunk only when ``include_usage`` was asked); with
  ``legacy_stream=True`` they are shaped like the older ``extensions/openai`` API instead:
  ``role: "assistant"`` repeated in every delta and the usage on the last chunk (the one with
  ``finish_reason``), always, with no ``choices: []`` chunk;
* the request's ``model`` is ignored: every answer names the *loaded* model; ``/v1/models``
  lists only the loaded model (an empty list when none is);
* embeddings come from a separate sentence-transformers model, whatever the chat model;
* a mid-stream failure is an error event followed by ``data: [DONE]``;
* ``n > 1`` with ``stream`` is a 400 ``invalid_request_error`` with ``param: "n"``;
* ``--api-key`` failures are FastAPI's ``401 {"detail": "Unauthorized"}``; admin routes check
  ``admin_key`` instead (which, as in text-generation-webui, defaults to ``api_key``);
* ``/v1/internal/health`` (``{"status": "ok"}``), ``/v1/internal/model/info`` (``model_name``
  is the string ``"None"`` when nothing is loaded), ``/v1/internal/model/list`` (admin,
  ``{"model_names": [...]}``), ``/v1/internal/model/load`` (admin, ``{"model_name": ...}``,
  answers ``"OK"`` after ``load_delay`` seconds, 400 ``Failed to load the model.`` for an unknown
  name), ``/v1/internal/model/unload`` (admin).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._base import STATUS_BEHAVIOURS, RecordedRequest, dumps
from .openai_server import FakeOpenAIServer


class FakeTextgenServer(FakeOpenAIServer):
    """The fake text-generation-webui API server. ``url`` is the root (port 5000 in real life)."""

    def __init__(
        self,
        *,
        loaded_model: str | None = "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
        available: list[str] | None = None,
        admin_key: str | None = None,
        load_delay: float = 0.0,
        legacy_stream: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.loaded_model = loaded_model
        self.available = available or [
            "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
            "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        ]
        self.admin_key = admin_key
        self.load_delay = load_delay
        self.legacy_stream = legacy_stream
        #: answer a failed load with 200 (some builds return, not raise, the HTTPException)
        self.silent_load_failure = False
        self.done_after_error = True  # modules/api/script.py: error event, then [DONE]
        self.embedding_model_name = "sentence-transformers/all-mpnet-base-v2"
        self.loads: list[str] = []
        self.system_fingerprint = None

    def served_model(self, requested: str | None) -> str:
        return self.loaded_model or "None"

    def embedding_model(self, requested: str | None) -> str:
        return self.embedding_model_name

    def _unauthorized(self) -> Any:
        from starlette.responses import Response

        return Response(
            dumps({"detail": "Unauthorized"}), status_code=401, media_type="application/json"
        )

    def check_auth(self, rec: RecordedRequest) -> Any | None:
        if self.api_key and rec.headers.get("authorization") != f"Bearer {self.api_key}":
            return self._unauthorized()
        return None

    def check_admin(self, rec: RecordedRequest) -> Any | None:
        key = self.admin_key or self.api_key
        if key and rec.headers.get("authorization") != f"Bearer {key}":
            return self._unauthorized()
        return None

    def check_request(self, rec: RecordedRequest) -> Any | None:
        body = rec.json if isinstance(rec.json, dict) else None
        if body is None:
            from starlette.responses import Response

            return Response(
                dumps({"detail": [{"type": "json_invalid", "msg": "JSON decode error"}]}),
                status_code=422,
                media_type="application/json",
            )
        if body.get("stream") and (body.get("n") or 1) > 1:
            return self.error_response(
                400,
                rec,
                message="n > 1 is not supported with streaming.",
                param="n",
                code=None,
                etype="invalid_request_error",
            )
        if self.loaded_model is None and rec.path != "/v1/embeddings":
            return self.error_response(
                400,
                rec,
                message="No model is loaded! Select one in the Model tab.",
                param=None,
                code=None,
                etype="invalid_request_error",
            )
        return None

    def shape_stream(
        self, events: list[dict[str, Any]], usage: dict[str, int], include_usage: bool
    ) -> list[dict[str, Any]]:
        if not self.legacy_stream:
            return super().shape_stream(events, usage, include_usage)
        for event in events:
            event.pop("usage", None)
            event.pop("system_fingerprint", None)
            for choice in event["choices"]:
                choice.pop("logprobs", None)
                delta = choice["delta"]
                if "tool_calls" not in delta:
                    choice["delta"] = {"role": "assistant", "content": delta.get("content") or ""}
        events[-1]["usage"] = usage
        return events

    def model_list(self) -> list[dict[str, Any]]:
        if not self.loaded_model:
            return []
        return [{"id": self.loaded_model, "object": "model", "created": 0, "owned_by": "user"}]

    # -- internal routes

    async def health(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        rec = await self.record(request)
        denied = self.check_auth(rec)
        if denied is not None:
            return denied
        if rec.behaviour in STATUS_BEHAVIOURS:
            return self.error_response(int(rec.behaviour), rec)
        return JSONResponse({"status": "ok"})

    async def model_info(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        rec = await self.record(request)
        denied = self.check_auth(rec)
        if denied is not None:
            return denied
        if rec.behaviour in STATUS_BEHAVIOURS:
            return self.error_response(int(rec.behaviour), rec)
        return JSONResponse(
            {
                "model_name": self.loaded_model or "None",
                "lora_names": [],
                "loader": "llama.cpp" if self.loaded_model else None,
            }
        )

    async def model_list_route(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        rec = await self.record(request)
        denied = self.check_admin(rec)
        if denied is not None:
            return denied
        return JSONResponse({"model_names": list(self.available)})

    async def model_load(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        rec = await self.record(request)
        denied = self.check_admin(rec)
        if denied is not None:
            return denied
        if rec.behaviour in STATUS_BEHAVIOURS:
            return self.error_response(int(rec.behaviour), rec)
        name = (rec.json or {}).get("model_name") if isinstance(rec.json, dict) else None
        if name not in self.available:
            if self.silent_load_failure:  # builds that `return` the HTTPException: a 200
                body = {"status_code": 400, "detail": "Failed to load the model.", "headers": None}
                return JSONResponse(body)
            return JSONResponse({"detail": "Failed to load the model."}, status_code=400)
        if self.load_delay:
            await asyncio.sleep(self.load_delay)
        self.loads.append(name)
        self.loaded_model = name
        return JSONResponse("OK")

    async def model_unload(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        rec = await self.record(request)
        denied = self.check_admin(rec)
        if denied is not None:
            return denied
        self.loaded_model = None
        return JSONResponse(None)

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route("/v1/internal/health", self.health, methods=["GET"]),
            Route("/v1/internal/model/info", self.model_info, methods=["GET"]),
            Route("/v1/internal/model/list", self.model_list_route, methods=["GET"]),
            Route("/v1/internal/model/load", self.model_load, methods=["POST"]),
            Route("/v1/internal/model/unload", self.model_unload, methods=["POST"]),
            *super().routes(),
        ]
