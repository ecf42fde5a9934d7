"""Logging: one JSON object per line in production, readable lines at a developer's terminal.

Why structlog: its ``ProcessorFormatter`` renders the standard library's log records — ours
(every module logs through ``logging.getLogger(__name__)``) and those of uvicorn, SQLAlchemy
and aio-pika — through one pipeline, and merges context variables into each, so a request id
bound once at the start of a request appears on every line that request causes, whoever
writes it. It is well kept, typed, and needs no global logger objects of its own here.

``logging_config`` is a ``logging.config.dictConfig`` dictionary. ``gatehouse-server serve``
hands it to uvicorn, which applies it in every worker process (workers are spawned, and
configure logging afresh); ``gatehouse-server worker`` applies it itself.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from sync_server.observability.context import current_tenant
from sync_server.observability.redaction import redact


def _add_tenant(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    tenant = current_tenant.get()
    if tenant is not None and "tenant_id" not in event:
        value = tenant()
        if value is not None:
            event["tenant_id"] = value
    return event


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # uvicorn passes an ANSI-coloured copy of its message as an extra; the message is enough.
    event.pop("color_message", None)
    return event


def _json(event: MutableMapping[str, Any], **_: Any) -> str:
    # msgspec: several times faster than json.dumps, and UUIDs and datetimes need no help.
    return msgspec.json.encode(event, enc_hook=str).decode()


def _pre_chain() -> list[Processor]:
    """What every record gets before rendering, whether from structlog or plain logging."""
    return [
        structlog.contextvars.merge_contextvars,
        _add_tenant,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """Every rendered line — message, fields and traceback, whoever logged it — through
    ``redact``: a URL in an error (httpx names the full request URL, the RPC provider's key
    with it) never reaches the log with its secrets."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def formatter(log_format: str = "json") -> logging.Formatter:
    """A formatter rendering records as JSON lines (``json``) or for a terminal (``console``).
    Raises ``ValueError`` for any other format."""
    renderers: list[Processor]
    if log_format == "json":
        renderers = [
            # A traceback as one string field: the standard library's, without local variables.
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(serializer=_json),
        ]
    elif log_format == "console":
        renderers = [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(),
                # The standard library's traceback. structlog's default with rich installed
                # draws every frame's local variables: ticket codes, tokens and URLs with keys
                # into the log, and seconds of rendering that block the event loop.
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    else:
        raise ValueError(f"log format must be json or console, not {log_format!r}")
    return _RedactingFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
    )


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """The ``dictConfig`` for the server and the worker: everything to stderr through
    ``formatter``; uvicorn's own access log off (the request middleware writes a better one)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "gatehouse": {"()": f"{__name__}.formatter", "log_format": log_format},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "gatehouse",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # Through the root handler, not uvicorn's own, so they are rendered alike.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # aio-pika/aiormq log every reconnection attempt at INFO; the relay reports them.
            "aiormq": {"level": "WARNING"},
            # httpx logs every request at INFO — with the chain on, one line per verdict, and
            # the Solana RPC URL in it often carries the provider's API key.
            "httpx": {"level": "WARNING"},
            # solana-py's own copy of httpx, which logs under its own name.
            "httpx2": {"level": "WARNING"},
            "aio_pika": {"level": "WARNING"},
        },
    }
