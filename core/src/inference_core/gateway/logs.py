"""Structured logging: a JSON (or text) formatter on stderr, one access line per request.

Loggers: ``inference_core.gateway`` (errors, lifecycle) and ``inference_core.gateway.access``
(one line per request: id, method, path, status, backend, model, latency, overhead, tokens,
retries, fallbacks).  Fields travel in ``record.fields`` (``logger.info(msg, extra={"fields":
{...}})``).  :func:`configure_logging` is called by :func:`inference_core.gateway.serve`;
an app built with :func:`create_app` inside another program logs through whatever handlers
that program configured.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

__all__ = [
    "ACCESS_LOGGER",
    "LOGGER",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "uvicorn_log_config",
]

LOGGER = "inference_core.gateway"
ACCESS_LOGGER = "inference_core.gateway.access"


def _ts(created: float) -> str:
    t = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int((created % 1) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's ``fields``, exc."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            data.update(fields)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    """``ts level logger msg key=value ...`` for humans."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_ts(record.created), record.levelname.lower(), record.name, record.getMessage()]
        fields = getattr(record, "fields", None)
        if fields:
            parts.extend(f"{k}={v}" for k, v in fields.items() if v is not None)
        line = " ".join(str(p) for p in parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    """Send the gateway's (and uvicorn's) logs to stderr in ``fmt``; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(fmt))
    handler._inference_gateway = True  # type: ignore[attr-defined]
    lvl = getattr(logging, level.upper(), logging.INFO)
    for name in (LOGGER, "inference_core"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not getattr(h, "_inference_gateway", 0)]
    root_pkg = logging.getLogger("inference_core")
    root_pkg.addHandler(handler)
    root_pkg.setLevel(lvl)
    root_pkg.propagate = False


def uvicorn_log_config(fmt: str = "json", level: str = "info") -> dict[str, Any]:
    """A ``logging.config`` dict for uvicorn's own loggers, in the same format (no access log)."""
    cls = f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": {"()": cls}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "gateway",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
