"""Building the application from settings and serving it with waitress.

waitress is pure Python and runs the same on Windows, where the Web
Connector and QuickBooks live, and on Linux; it buffers large request bodies
to disk and answers ``Expect: 100-continue`` itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from . import database
from .config import Settings
from .conversation import Conversation
from .passwords import Passwords
from .wsgi import QwcApplication

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Everything a running service holds: settings, engine, core and WSGI app."""

    settings: Settings
    engine: Engine
    conversation: Conversation
    app: QwcApplication


def build(settings: Settings, *, migrate: bool = True, **conversation_options: Any) -> Service:
    engine = database.make_engine(settings.database_url, background_checkpoints=True)
    if migrate:
        database.upgrade(engine)
    conversation = Conversation(
        database.make_sessionmaker(engine),
        settings,
        conversation_options.pop("passwords", None) or Passwords.from_settings(settings),
        **conversation_options,
    )
    return Service(settings, engine, conversation, QwcApplication(conversation, settings))


def make_server(service: Service, host: str, port: int, **options: Any) -> Any:
    """A waitress server bound but not yet running (``.run()`` serves, ``.close()`` stops)."""
    from waitress.server import create_server

    return create_server(
        service.app,
        host=host,
        port=port,
        max_request_body_size=service.settings.max_body_bytes,
        # A receiveResponseXML can carry 100 MB and QuickBooks can take minutes.
        channel_timeout=600,
        ident="qwc-service",
        # With trusted proxies configured the application judges X-Forwarded-For
        # itself (wsgi.client_address); otherwise waitress drops such headers.
        clear_untrusted_proxy_headers=not service.settings.trusted_proxies,
        **options,
    )
