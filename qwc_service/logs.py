"""Logging: plain or JSON lines, each carrying the connection, hashed ticket and job it concerns.

The conversation binds what it knows (``bind``) as a call proceeds; a filter
copies it onto every record, so a line logged deep in the queue still says
which connection and job it is about. The ticket itself is never logged,
only the first characters of its hash. qbXML payloads are not logged at all
unless ``QWC_LOG_PAYLOADS=on``, and then with the ``QWC_LOG_REDACT`` elements
masked.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Iterable

from lxml import etree

from .config import ConfigError, Settings

_context: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("qwc_log_context", default={})
payload_log = logging.getLogger("qwc_service.payloads")
FIELDS = ("connection", "ticket", "job")


def reset() -> None:
    """Start a new call with nothing bound."""
    _context.set({})


def bind(**fields: object) -> None:
    """Attach facts (connection=…, ticket=… (a hash prefix), job=…) to the lines that follow."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for field in FIELDS:
            setattr(record, field, context.get(field, getattr(record, field, "")))
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if getattr(record, f, ""))
        return f"{line} [{tags}]" if tags else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, "")
            if value not in ("", None):
                data[field] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure(settings: Settings, stream: Any = None) -> logging.Handler:
    """Install one handler on the root logger, formatted as the settings say."""
    formats = {"plain": PlainFormatter, "json": JsonFormatter}
    if settings.log_format not in formats:
        raise ConfigError(f"QWC_LOG_FORMAT must be plain or json, got {settings.log_format!r}")
    if settings.log_payloads not in ("on", "off"):
        raise ConfigError(f"QWC_LOG_PAYLOADS must be on or off, got {settings.log_payloads!r}")
    level = getattr(logging, settings.log_level.upper(), None)
    if not isinstance(level, int):
        raise ConfigError(f"QWC_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {settings.log_level!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formats[settings.log_format]())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    payload_log.setLevel(logging.INFO if settings.log_payloads == "on" else logging.CRITICAL + 1)
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))  # "Context impl …" is noise
    return handler


def log_payload(settings: Settings, what: str, xml: str) -> None:
    """Log a qbXML document only when asked to, with the configured elements masked."""
    if settings.log_payloads != "on" or not payload_log.isEnabledFor(logging.INFO):
        return
    payload_log.info("%s: %s", what, redact(xml, (n.strip() for n in settings.log_redact.split(","))))


def redact(xml: str, names: Iterable[str]) -> str:
    """The document with the text of every named element (and its children) replaced by ***."""
    hidden = {n for n in names if n}
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        root = etree.fromstring(xml.encode("utf-8"), parser)
    except etree.XMLSyntaxError:
        return "(unparsable document not logged)"
    for element in root.iter():
        if element.tag in hidden:
            for node in element.iter():
                if node.text and node.text.strip():
                    node.text = "***"
    return etree.tostring(root, encoding="unicode")
