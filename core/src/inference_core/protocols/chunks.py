"""Chat completion chunks -> protocol-neutral steps, for the stream translators.

:class:`ChunkReader` consumes ``chat.completion.chunk`` objects (or a whole chat response) and
returns steps:

* ``("text", piece)``: answer text to emit;
* ``("tool", index, call_id, name)``: a tool call starts (chat's ``tool_calls[i]`` with its id
  and name, which come first);
* ``("args", index, piece)``: a piece of that call's JSON arguments.

It also records ``finish_reason``, ``usage`` and, when the client gave stop sequences, which
one ended the answer.  Chat backends strip a stop string and say only ``"stop"``, so the stop
sequences are *not* sent to the backend: the reader finds them in the text itself (holding back
a tail that could be the start of one), cuts the answer there and sets :attr:`stopped`; the
caller then closes the upstream.  A prefill (the request's last message is the assistant's) is
removed from the start of the answer when the backend echoes it (llama-server does), so the
client gets only the continuation, as from Anthropic.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChunkReader", "Step"]

Step = tuple[Any, ...]


class ChunkReader:
    """Fold chat chunks into steps (see the module docstring).  One instance per answer."""

    __slots__ = (
        "_held",
        "_prefill",
        "_stops",
        "_tool_seen",
        "chunks_with_content",
        "finish_reason",
        "stop_sequence",
        "stopped",
        "text",
        "tools",
        "usage",
    )

    def __init__(self, stops: list[str] | None = None, prefill: str | None = None) -> None:
        self._stops = [s for s in (stops or []) if s]
        self._prefill = prefill or None
        self._held = ""  # text held back (maybe a stop's start, maybe the echoed prefill)
        self._tool_seen: dict[int, int] = {}  # chat tool index -> position in self.tools
        self.text = ""  # the answer text emitted so far
        self.tools: list[dict[str, Any]] = []  # {"id", "name", "arguments"}
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.stopped = False
        self.usage: Any = None
        self.chunks_with_content = 0

    # ------------------------------------------------------------------ feeding

    def feed(self, chunk: Any) -> list[Step]:
        """Steps for one ``ChatChunk`` (empty once a stop sequence ended the answer)."""
        usage = chunk.usage
        if usage is not None:
            self.usage = usage
        if self.stopped or not chunk.choices:
            return []
        choice = chunk.choices[0]
        steps: list[Step] = []
        delta = choice.delta
        content = delta.content
        if content:
            self.chunks_with_content += 1
            self._text(content, steps)
        if delta.tool_calls and not self.stopped:
            self.chunks_with_content += 1
            self._tool_deltas(delta.tool_calls, steps)
        if choice.finish_reason is not None and not self.stopped:
            self.finish_reason = choice.finish_reason
        return steps

    def feed_message(self, message: Any, finish_reason: str | None) -> list[Step]:
        """Steps for a whole (non-streamed) chat answer message."""
        steps: list[Step] = []
        content = message.content
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content:
            self._text(content, steps)
        if message.tool_calls and not self.stopped:
            for i, call in enumerate(message.tool_calls):
                fn = call.get("function") or {}
                args = fn.get("arguments")
                if not isinstance(args, str):
                    import orjson

                    args = orjson.dumps(args if args is not None else {}).decode()
                self._tool_deltas(
                    [
                        {
                            "index": i,
                            "id": call.get("id"),
                            "function": {"name": fn.get("name"), "arguments": args},
                        }
                    ],
                    steps,
                )
        if not self.stopped:
            self.finish_reason = finish_reason
        steps.extend(self.close())
        return steps

    def close(self) -> list[Step]:
        """Steps for what is still held back when the answer ends."""
        held = self._held
        self._held = ""
        if held and not self.stopped:
            self._prefill = None
            self.text += held
            return [("text", held)]
        return []

    # ------------------------------------------------------------------ internals

    def _text(self, piece: str, steps: list[Step]) -> None:
        buf = self._held + piece
        prefill = self._prefill
        if prefill is not None:
            if prefill.startswith(buf):  # so far the echo of the prefill: hold it
                self._held = buf
                if buf == prefill:
                    self._held = ""
                    self._prefill = None
                return
            self._prefill = None
            if buf.startswith(prefill):
                buf = buf[len(prefill) :]
        if not self._stops:
            self._held = ""
            if buf:
                self.text += buf
                steps.append(("text", buf))
            return
        # the earliest stop sequence in the text so far wins
        best = -1
        which = None
        for stop in self._stops:
            at = buf.find(stop)
            if at != -1 and (best == -1 or at < best):
                best, which = at, stop
        if which is not None:
            out = buf[:best]
            self._held = ""
            self.stopped = True
            self.stop_sequence = which
            self.finish_reason = "stop"
            if out:
                self.text += out
                steps.append(("text", out))
            return
        # hold back the longest tail that could still become a stop sequence
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), keep, -1):
                if stop.startswith(buf[-k:]):
                    keep = k
                    break
        out = buf[: len(buf) - keep] if keep else buf
        self._held = buf[len(buf) - keep :] if keep else ""
        if out:
            self.text += out
            steps.append(("text", out))

    def _tool_deltas(self, calls: list[dict[str, Any]], steps: list[Step]) -> None:
        if self._held and not self.stopped:  # text before a tool call is final
            steps.extend(self.close())
        for position, call in enumerate(calls):
            index = call.get("index", position)
            if not isinstance(index, int):
                index = position
            fn = call.get("function") or {}
            slot = self._tool_seen.get(index)
            if slot is None:
                slot = self._tool_seen[index] = len(self.tools)
                call_id = call.get("id") or f"call_{len(self.tools)}"
                name = fn.get("name") or ""
                self.tools.append({"id": call_id, "name": name, "arguments": ""})
                steps.append(("tool", slot, call_id, name))
            args = fn.get("arguments")
            if args:
                if not isinstance(args, str):  # Ollama-style object arguments
                    import orjson

                    args = orjson.dumps(args).decode()
                self.tools[slot]["arguments"] += args
                steps.append(("args", slot, args))
