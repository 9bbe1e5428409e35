"""Translation, once, between the agent protocols and chat completions.

Every backend speaks chat completions to the router; the Anthropic Messages API
(:mod:`.anthropic`) and the OpenAI Responses API (:mod:`.responses`) are translated here, in
core, to chat requests and back (answers, stream events, errors, tool calls whose arguments
arrive in pieces), so every backend plugin serves both protocols with no code of its own.

* :mod:`.chunks`: folds ``chat.completion.chunk`` objects into protocol-neutral steps (text,
  tool call start, argument piece), with stop-sequence detection and prefill handling;
* :mod:`.anthropic`: ``POST /v1/messages`` and ``/v1/messages/count_tokens``;
* :mod:`.responses`: ``POST /v1/responses`` and the stored responses;
* :mod:`.store`: the bounded store behind ``previous_response_id`` (:class:`ResponseStore`
  is the interface a shared store implements);
* :mod:`.native`: the optional capability of a backend that speaks a protocol natively.

Nothing here imports the gateway: the translators work on :mod:`inference_core.models` types
and plain dicts/bytes.
"""

from __future__ import annotations

__all__: list[str] = []
