"""Every ``openai`` SDK exception class maps onto the inference-core taxonomy (SDK mode)."""

from __future__ import annotations

import httpx
import openai
import pytest

from inference_core import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ContextLengthExceeded,
    ModelNotFound,
    RateLimited,
)
from inference_core.testing import make_config
from inference_openai import sdk

CFG = make_config("openai", base_url="http://x.test/v1", api_key="sk-secret-value")
REQ = httpx.Request("POST", "http://x.test/v1/chat/completions")


def status_error(cls, status, code=None, param=None, headers=None, message="boom"):
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    response = httpx.Response(status, json={"error": body}, headers=headers, request=REQ)
    return cls(message, response=response, body=body)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (openai.APITimeoutError(request=REQ), BackendTimeout),
        (openai.APIConnectionError(request=REQ), BackendUnavailable),
        (status_error(openai.AuthenticationError, 401), AuthenticationFailed),
        (status_error(openai.PermissionDeniedError, 403), AuthenticationFailed),
        (status_error(openai.NotFoundError, 404, code="model_not_found"), ModelNotFound),
        (status_error(openai.BadRequestError, 400), BadRequest),
        (
            status_error(openai.BadRequestError, 400, code="context_length_exceeded"),
            ContextLengthExceeded,
        ),
        (status_error(openai.UnprocessableEntityError, 422), BadRequest),
        (status_error(openai.ConflictError, 409), BadRequest),
        (status_error(openai.InternalServerError, 500), BackendUnavailable),
        (status_error(openai.InternalServerError, 503), BackendUnavailable),
        (openai.APIError("in-band", REQ, body={"message": "overloaded"}), BackendUnavailable),
    ],
)
def test_map_error(exc, expected):
    err = sdk.map_error(exc, CFG)
    assert type(err) is expected
    assert err.backend == "openai"
    assert "sk-secret-value" not in str(err)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({}, None)],
)
def test_rate_limit_carries_retry_after(headers, seconds):
    exc = status_error(openai.RateLimitError, 429, code="rate_limit_exceeded", headers=headers)
    err = sdk.map_error(exc, CFG)
    assert isinstance(err, RateLimited)
    assert err.retry_after == seconds


def test_insufficient_quota_is_not_retried():
    exc = status_error(
        openai.RateLimitError, 429, code="insufficient_quota", message="insufficient_quota"
    )
    err = sdk.map_error(exc, CFG)
    assert isinstance(err, AuthenticationFailed)
    assert not err.retryable


def test_bad_request_keeps_param_and_code():
    exc = status_error(openai.BadRequestError, 400, code="invalid_value", param="temperature")
    err = sdk.map_error(exc, CFG)
    assert err.param == "temperature"
    assert err.code == "invalid_value"


@pytest.mark.parametrize(
    "message",
    [
        "max_tokens=4096 cannot be greater than max_model_len=512.",  # vLLM
        "This model's maximum context length is 2048 tokens.",  # no code: found by the text
    ],
)
def test_bad_request_uses_cores_context_markers(message):
    exc = status_error(openai.BadRequestError, 400, param="max_tokens", message=message)
    err = sdk.map_error(exc, CFG)
    assert type(err) is ContextLengthExceeded
    assert err.param == "max_tokens"
    assert err.message == message


async def test_one_cached_client_per_pool_and_settings():
    async with httpx.AsyncClient() as http:
        a = sdk.client_for(http, CFG)
        assert sdk.client_for(http, CFG) is a
        assert a._client is http  # core's pool, not a new one
        assert a.max_retries == 0
        other = make_config("openai", base_url="http://x.test/v1", api_key="sk-other")
        assert sdk.client_for(http, other) is not a
        async with httpx.AsyncClient() as http2:
            assert sdk.client_for(http2, CFG) is not a
