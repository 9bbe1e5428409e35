"""Shared fixtures of the core tests: a real Redis for the shared-state tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from inference_core.testing.redis_server import redis_url_for_tests


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server (INFERENCE_TEST_REDIS_URL, or one started for the session)."""
    yield from redis_url_for_tests()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of its own for each test (tests share one Redis)."""
    return f"t{uuid.uuid4().hex[:10]}:"
