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
#: Any constant works; it only has to be the same in every process.
_MIGRATION_LOCK_KEY = 0x51574353  # "QWCS"


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


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine tuned for the service's short, write-heavy transactions."""
    try:
        url = normalize_url(url)
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError for junk
        raise DatabaseError(f"not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if parsed.get_backend_name() == "postgresql" and importlib.util.find_spec("psycopg") is None:
        raise DatabaseError(
            "PostgreSQL needs psycopg 3: pip install 'qwc-service[postgres]'"
        )
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 1800}
    options.update(kwargs)
    return create_engine(url, **options)


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    options: dict[str, Any] = {}
    if make_url(url).database not in (None, "", ":memory:"):
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
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


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
