"""Engines, transactions and migrations for SQLite and PostgreSQL.

SQLite is the zero-set-up default: one file, WAL so readers never block the
writer, a busy timeout so concurrent callers wait instead of failing, and
``BEGIN IMMEDIATE`` so a transaction takes the write lock up front (two
sessions can never both read a queued job and then both claim it).
PostgreSQL is the production database; pooled connections are pre-pinged so a
database restart costs a call, not the process.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import sqlite3
import threading
import urllib.parse
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import QueuePool
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

#: How long a SQLite caller waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Page cache per connection (KiB): the claim indexes of a 1M-job queue stay in memory.
SQLITE_CACHE_KIB = 16 * 1024
#: How often a server copies SQLite's write-ahead log back into the database file.
SQLITE_CHECKPOINT_SECONDS = 1.0
#: With background checkpoints, a committing request checkpoints only past this many WAL pages
#: (~40 MB): never while the thread keeps up, and a bound on the log if the thread cannot.
SQLITE_BACKSTOP_CHECKPOINT_PAGES = 10_000
#: Any constant works; it only has to be the same in every process.
_MIGRATION_LOCK_KEY = 0x51574353  # "QWCS"

_log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """The database is unreachable, misconfigured or not migrated."""


def normalize_url(url: str) -> str:
    """Prefer psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy picks psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def describe(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def make_engine(url: str, *, background_checkpoints: bool = False, **kwargs: Any) -> Engine:
    """Create an engine tuned for the service's short, write-heavy transactions.

    ``background_checkpoints`` (SQLite only, for long-running servers): copy
    the write-ahead log into the database file from a background thread
    instead of inside whichever request happens to commit the 1,000th page,
    which otherwise shows up as that request's latency spike.
    """
    try:
        url = normalize_url(url)
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError for junk
        raise DatabaseError(f"not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, background_checkpoints=background_checkpoints, **kwargs)
    if parsed.get_backend_name() == "postgresql" and importlib.util.find_spec("psycopg") is None:
        raise DatabaseError(
            "PostgreSQL needs psycopg 3: pip install 'qwc-service[postgres]'"
        )
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 1800}
    options.update(kwargs)
    return create_engine(url, **options)


def _sqlite_engine(url: str, *, background_checkpoints: bool, **kwargs: Any) -> Engine:
    options: dict[str, Any] = {}
    path = make_url(url).database
    on_disk = path not in (None, "", ":memory:") and not str(path).startswith("file:")
    background_checkpoints = background_checkpoints and on_disk
    if on_disk:
        # Every transaction takes SQLite's write lock, so a process gains nothing
        # from a second connection; threads queue for the one connection (a
        # cheap condition wait) instead of polling SQLite's busy handler.
        options = {"poolclass": QueuePool, "pool_size": 1, "max_overflow": 0,
                   "pool_timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    options.update(kwargs)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **options,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event decide when transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if make_url(url).database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: every commit reaches the disk before the call is answered. With
        # NORMAL a power cut can roll back the commit that marked a job "sent"
        # after QBWC took its request, and the write would go out again.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        if background_checkpoints:
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_BACKSTOP_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    if background_checkpoints:
        _start_checkpointer(engine, str(path))
    return engine


def _start_checkpointer(engine: Engine, path: str) -> None:
    """Checkpoint the WAL every ``SQLITE_CHECKPOINT_SECONDS`` until the engine is disposed of or gone.

    PASSIVE never waits for readers or the writer, so it cannot slow a request
    down; if a busy moment keeps it from finishing, the next round catches up.
    The thread has its own connection: the engine's single pooled one belongs
    to the requests.
    """
    stop = threading.Event()

    def run() -> None:
        connection = None
        failing = False
        while not stop.wait(SQLITE_CHECKPOINT_SECONDS):
            try:
                if connection is None:  # mode=rw: never create a database that is not there
                    uri = "file:" + urllib.parse.quote(path) + "?mode=rw"
                    connection = sqlite3.connect(uri, uri=True, timeout=1.0, check_same_thread=False)
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                failing = False
            except sqlite3.Error as exc:
                if not failing:  # once per spell of failures, not every second
                    _log.warning("SQLite checkpoint of %s failed (%s); retrying every %s s",
                                 path, exc, SQLITE_CHECKPOINT_SECONDS)
                failing = True
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()

    threading.Thread(target=run, name="sqlite-checkpoint", daemon=True).start()
    event.listen(engine, "engine_disposed", lambda _engine: stop.set())
    weakref.finalize(engine, stop.set)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Config:
    import qwc_service.migrations as migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe when several processes start at once."""
    config = _alembic_config(engine)
    if engine.dialect.name == "postgresql":
        # Serialise concurrent upgrades: the loser waits, then finds nothing to do.
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
    else:
        command.upgrade(config, revision)


@functools.cache
def head_revision() -> str:
    """The newest migration this code knows (read once: the files do not change at run time)."""
    import qwc_service.migrations as migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return ScriptDirectory.from_config(config).get_current_head() or ""


def migration_status(engine: Engine) -> tuple[str | None, str]:
    """Return (current revision, head revision)."""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head_revision()
