"""The WSGI entry point for production servers: ``qwc_service.wsgi_app:application``.

gunicorn (see ``qwc_service.gunicorn_conf``) or any other WSGI server imports
``application`` from here. It is built on first access from ``QWC_*``
settings, so importing this module has no side effects, and it is built in
each worker process after the fork (never share a database engine across
``fork``).

Migrations are *not* run here: with several workers (or several hosts) they
would all race to do it. Run ``qwc-service db upgrade`` once before starting
the server (the container entrypoint and the systemd unit in
``docs/deployment.md`` do). A worker refuses to start on a database whose
schema is behind this version, with a message that says so; if the database
cannot be reached at that moment the worker starts anyway (the pool
reconnects when the database is back) and logs a warning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import make_url

from . import database, logs, server, webhooks
from .config import Settings
from .wsgi import QwcApplication

log = logging.getLogger(__name__)

#: How long the start-up schema check waits for PostgreSQL to answer.
SCHEMA_CHECK_CONNECT_TIMEOUT = 10


_lock = threading.Lock()
_service: server.Service | None = None
#: The webhook workers this module started, for :func:`shutdown`.
_workers: list[webhooks.WebhookWorker] = []


class SchemaNotReady(RuntimeError):
    """The database schema is behind this version of qwc-service."""


def create_app(environ: Mapping[str, str] | None = None) -> QwcApplication:
    """Build a WSGI application from ``QWC_*`` settings (``os.environ`` by default)."""
    return _build(Settings.from_env(environ)).app


def _build(settings: Settings) -> server.Service:
    _configure_logging(settings)
    check_schema(settings.database_url)
    service = server.build(settings, migrate=False)
    # Each worker delivers webhooks too (claims use SKIP LOCKED, so they share the work).
    _workers.append(webhooks.start_worker(service))
    log.info("qwc-service ready (database: %s)", database.describe(settings.database_url))
    return service


def shutdown(timeout: float | None = None) -> None:
    """Stop the webhook workers started here; each finishes the delivery it is sending.

    gunicorn calls it as a worker exits (``worker_exit``), so that a restart
    does not cut a delivery off between sending it and recording the answer
    (which would send it again when its lease runs out).
    """
    while _workers:
        _workers.pop().stop(timeout)


def check_schema(url: str) -> None:
    """Raise :class:`SchemaNotReady` when the database needs migrations this process won't run."""
    options: dict[str, Any] = {}
    if make_url(database.normalize_url(url)).get_backend_name() == "postgresql":
        options["connect_args"] = {"connect_timeout": SCHEMA_CHECK_CONNECT_TIMEOUT}
    engine = database.make_engine(url, **options)  # a moment's look: no checkpoint thread
    try:
        try:
            current, head = database.migration_status(engine)
        except Exception as exc:  # noqa: BLE001  unreachable now; requests will tell when it is back
            log.warning(
                "could not check the database schema (%s: %s); starting anyway",
                exc.__class__.__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
            return
    finally:
        engine.dispose()
    if current != head and (current is None or _is_known_revision(current)):
        raise SchemaNotReady(
            f"the database {database.describe(url)} is at schema revision {current or '(none)'} but "
            f"this version of qwc-service needs {head}: run 'qwc-service db upgrade' first "
            "(the container entrypoint does it at start unless QWC_MIGRATE_ON_START=0)"
        )
    if current != head:
        # A newer qwc-service migrated it (e.g. during a rolling upgrade).
        log.warning("the database is at schema revision %s, newer than this version's %s", current, head)


def _is_known_revision(revision: str) -> bool:
    from pathlib import Path

    from alembic.script import ScriptDirectory

    import qwc_service.migrations as migrations  # noqa: PLR0402  (the package's __getattr__ confuses mypy)

    script = ScriptDirectory(str(Path(migrations.__file__).parent))
    try:
        return script.get_revision(revision) is not None
    except Exception:  # noqa: BLE001  alembic raises for revisions it has never heard of
        return False


def _configure_logging(settings: Settings) -> None:
    # gunicorn configures only its own loggers; give ours (security events,
    # unexpected errors) the service's own format unless the host application
    # already installed a handler.
    root = logging.getLogger()
    if not root.handlers:
        logs.configure(settings)
    root.setLevel(getattr(logging, settings.log_level.upper(), logging.INFO))
    # Workers never migrate; the schema check would otherwise log alembic's
    # "Context impl ..." lines at INFO in every worker.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


def __getattr__(name: str) -> Any:
    # ``application`` is built on first access (PEP 562), once per process.
    global _service
    if name != "application":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if _service is None:
            _service = _build(Settings.from_env())
        return _service.app
