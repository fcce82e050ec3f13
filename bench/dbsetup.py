"""Databases for the benchmarks: fresh SQLite files, a reset PostgreSQL database, bulk rows.

Rows are written with SQLAlchemy core ``insert()`` of many rows at a time,
never through ``queue.enqueue``: filling a million-job table through the
per-job path would take longer than the whole benchmark.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, delete, insert, select, text
from sqlalchemy.engine import make_url

from qwc_service import database, qbxml
from qwc_service.connections import braced_guid
from qwc_service.models import Connection, Job, SessionState, WebConnectorSession
from qwc_service.passwords import Passwords

from .common import PASSWORD, utcnow

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/qwc_bench"
#: Databases the benchmark refuses to wipe, whatever URL it is given.
PROTECTED_DATABASES = frozenset({"test", "postgres", "template0", "template1", "qwc_main", "qwc_status"})

CUSTOMER_QUERY = "<CustomerQueryRq><MaxReturned>1</MaxReturned></CustomerQueryRq>"


@dataclass
class BenchDatabase:
    url: str
    engine: Engine
    kind: str  # "sqlite" or "postgresql"
    _tmpdir: str | None = None

    def dispose(self) -> None:
        self.engine.dispose()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def fresh_sqlite(label: str) -> BenchDatabase:
    tmpdir = tempfile.mkdtemp(prefix=f"qwc-bench-{label}-")
    url = f"sqlite:///{Path(tmpdir) / 'qwc.db'}"
    engine = database.make_engine(url, background_checkpoints=True)  # as `serve` runs it
    database.upgrade(engine)
    return BenchDatabase(url, engine, "sqlite", tmpdir)


def fresh_postgresql(url: str) -> BenchDatabase:
    """Drop and recreate the public schema of the benchmark database, then migrate it."""
    name = make_url(url).database or ""
    if name in PROTECTED_DATABASES:
        raise RuntimeError(f"refusing to wipe database {name!r}; use a dedicated one such as qwc_bench")
    engine = database.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    database.upgrade(engine)
    return BenchDatabase(url, engine, "postgresql")


def postgresql_available(url: str) -> str | None:
    """None when usable, else why not."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'qwc-service[postgres]')"
    try:
        engine = database.make_engine(url, pool_pre_ping=False)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot connect to {database.describe(url)}: {first}"
    return None


_HASH_CACHE: dict[str, str] = {}


def production_hash(password: str = PASSWORD) -> str:
    """One argon2id hash with the production defaults, shared by every benchmark connection.

    Each connection still needs its own argon2 check before the credential
    cache knows it (the cache key holds the connection id), so sharing the
    hash only saves the set-up time of hashing a thousand passwords.
    """
    if password not in _HASH_CACHE:
        _HASH_CACHE[password] = Passwords().hash(password)
    return _HASH_CACHE[password]


def add_connections(db: BenchDatabase, count: int, prefix: str = "c") -> list[tuple[int, str, str]]:
    """``count`` connections (id, name, username) with the production password hash, in bulk."""
    now = utcnow()
    hashed = production_hash()
    rows = [
        dict(name=f"{prefix}{n:05d}", username=f"{prefix}{n:05d}-sync", password_hash=hashed, company_file="",
             owner_id=braced_guid(), file_id=braced_guid(), enabled=True, always_open=False, created_at=now,
             updated_at=now)
        for n in range(count)
    ]
    with db.engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            conn.execute(insert(Connection), rows[start:start + 1000])
        found = conn.execute(
            select(Connection.id, Connection.name, Connection.username).where(Connection.name.like(f"{prefix}%"))
            .order_by(Connection.id)
        ).all()
    return [(int(i), str(n), str(u)) for i, n, u in found]


def connection_guids(db: BenchDatabase, connection_id: int) -> tuple[str, str]:
    with db.engine.connect() as conn:
        row = conn.execute(select(Connection.owner_id, Connection.file_id).where(Connection.id == connection_id)).one()
    return str(row[0]), str(row[1])


def job_template(request: str = CUSTOMER_QUERY) -> dict[str, object]:
    prepared = qbxml.prepare_request(request)
    return dict(request_xml=prepared.xml, request_types=" ".join(prepared.request_types),
                is_write=prepared.is_write, qbxml_version=prepared.qbxml_version)


def fill_jobs(db: BenchDatabase, connection_ids: list[int], total: int, *, request: str = CUSTOMER_QUERY,
              batch: int = 10_000, now: datetime | None = None) -> None:
    """``total`` queued jobs spread round-robin over the connections, in batches of ``batch`` rows."""
    template = job_template(request)
    now = now or utcnow()
    n_conn = len(connection_ids)
    done = 0
    while done < total:
        size = min(batch, total - done)
        rows = [dict(template, connection_id=connection_ids[(done + k) % n_conn], state="queued", priority=0,
                     attempts=0, wall_hits=0, created_at=now, updated_at=now) for k in range(size)]
        with db.engine.begin() as conn:
            conn.execute(insert(Job), rows)
        done += size


def fill_named_jobs(db: BenchDatabase, jobs: list[tuple[int, str]], now: datetime | None = None) -> None:
    """Jobs with their own request each: (connection id, qbXML request)."""
    now = now or utcnow()
    rows = []
    for connection_id, request in jobs:
        rows.append(dict(job_template(request), connection_id=connection_id, state="queued", priority=0, attempts=0,
                         wall_hits=0, created_at=now, updated_at=now))
    with db.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(Job), rows[start:start + 5000])


def open_sessions(db: BenchDatabase, connection_ids: list[int]) -> dict[int, int]:
    """One open Web Connector session per connection (connection id → session id)."""
    now = utcnow()
    rows = [dict(ticket_hash=f"bench-{cid}-{now.timestamp()}", connection_id=cid, state=SessionState.OPEN.value,
                 created_at=now, last_seen_at=now, client_address="127.0.0.1", last_error="", company_file_name="",
                 qbxml_country="US", qbxml_major=13, qbxml_minor=0, connection_error_hresult="",
                 connection_error_message="", jobs_done=0, jobs_failed=0)
            for cid in connection_ids]
    with db.engine.begin() as conn:
        conn.execute(insert(WebConnectorSession), rows)
        found = conn.execute(select(WebConnectorSession.id, WebConnectorSession.connection_id)
                             .where(WebConnectorSession.state == SessionState.OPEN.value)).all()
    return {int(c): int(s) for s, c in found}


def clear_jobs(db: BenchDatabase) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM job_events"))
        conn.execute(delete(Job))


def job_counts(db: BenchDatabase) -> dict[str, int]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all()
    return {str(s): int(n) for s, n in rows}


def iter_chunks(items: list[object], size: int) -> Iterator[list[object]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
