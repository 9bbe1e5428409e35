"""inference-echo: a backend plugin that answers with the last message (an example)."""

from __future__ import annotations

import time

from inference_core import ChatChunk, ChatResponse, Health, ModelInfo, hookimpl


class Echo:
    @hookimpl
    async def chat(self, request, config):
        text = str(request.messages[-1].content or "")
        model, now = config.model_for(request.model), int(time.time())
        if not request.stream:
            message = {"role": "assistant", "content": text}
            choice = {"message": message, "finish_reason": "stop"}
            return ChatResponse(id="echo", created=now, model=model, choices=[choice])

        async def chunks():
            for word in text.split(" "):
                delta = {"content": word + " "}
                yield ChatChunk(id="echo", created=now, model=model, choices=[{"delta": delta}])
            stop = {"finish_reason": "stop"}  # the last choice chunk says why the text ended
            yield ChatChunk(id="echo", created=now, model=model, choices=[stop])
            if request.include_usage:  # asked for: a last chunk, choices == [] and usage set
                yield ChatChunk(id="echo", created=now, model=model, usage={"total_tokens": 0})

        return chunks()

    @hookimpl
    async def health(self, config):
        return Health(state="ready", detail="echo is always ready")

    @hookimpl
    async def list_models(self, config):
        return [ModelInfo(id=config.model or "echo")]


plugin = Echo()
