"""Alembic owns the schema: migrations build it from nothing and match the models."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from conftest import PG_URL
from qwc_service import database
from qwc_service.models import Base


def _empty_pg_schema(url: str) -> tuple[str, str]:
    """A throw-away schema on the test server, so migrations start from nothing."""
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database.normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return schema, database.normalize_url(url)


@pytest.mark.parametrize(
    "backend",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason="QWC_TEST_DATABASE_URL unset"))],
)
def test_migrations_build_the_schema_from_nothing_and_match_the_models(backend: str, tmp_path) -> None:
    options: dict = {}
    schema = None
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    if backend == "postgresql":
        schema, url = _empty_pg_schema(PG_URL)
        options = {"connect_args": {"options": f"-csearch_path={schema}"}}
    engine = database.make_engine(url, **options)
    try:
        assert inspect(engine).get_table_names() == []
        database.upgrade(engine)
        assert {"connections", "qbwc_sessions", "jobs", "alembic_version"} <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        current, head = database.migration_status(engine)
        assert current == head
        database.upgrade(engine)  # a second run finds nothing to do
    finally:
        if schema:
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path) -> None:
    engine = database.make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: a commit survives a power cut
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == database.SQLITE_BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_servers_checkpoint_sqlite_in_the_background(tmp_path, monkeypatch) -> None:
    """No request pays for a checkpoint, yet the write-ahead log is reused instead of growing."""
    import threading
    import time

    monkeypatch.setattr(database, "SQLITE_CHECKPOINT_SECONDS", 0.1)
    path = tmp_path / "ckpt.db"
    before = set(threading.enumerate())
    engine = database.make_engine(f"sqlite:///{path}", background_checkpoints=True)
    [checkpointer] = [t for t in threading.enumerate() if t.name == "sqlite-checkpoint" and t not in before]

    def write_batch() -> None:
        for _ in range(200):
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (?)", ("x" * 2000,))

    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == database.SQLITE_BACKSTOP_CHECKPOINT_PAGES
        conn.exec_driver_sql("CREATE TABLE t (v TEXT)")
    write_batch()
    first = (tmp_path / "ckpt.db-wal").stat().st_size
    time.sleep(1.0)
    write_batch()
    assert (tmp_path / "ckpt.db-wal").stat().st_size < first * 1.2  # without checkpoints: twice the size
    engine.dispose()  # stops the thread, even while the engine object lives on
    checkpointer.join(timeout=5)
    assert not checkpointer.is_alive()
    plain = database.make_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with plain.connect() as conn:  # CLI commands and tests keep SQLite's own checkpoints
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    plain.dispose()


def test_plain_postgresql_urls_use_psycopg3() -> None:
    assert database.normalize_url("postgresql://u:p@h/db").startswith("postgresql+psycopg://u:p@h/db")
    assert database.normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "secret" not in database.describe("postgresql://u:secret@h/db")


def test_bad_database_url_is_a_clear_error() -> None:
    with pytest.raises(database.DatabaseError, match="not a database URL"):
        database.make_engine("not a url at all")


def test_several_processes_migrating_at_once(database_url, tmp_path) -> None:
    """Containers starting together all run the migrations; they must not trip over each other."""
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.db'}"
    schema = None
    if PG_URL:
        schema, url = _empty_pg_schema(PG_URL)
    env = dict(os.environ, QWC_DATABASE_URL=url)
    if schema:
        env["PGOPTIONS"] = f"-csearch_path={schema}"
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "qwc_service", "db", "upgrade"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
        outputs = [(p.wait(timeout=120), p.stdout.read().decode()) for p in procs]
        assert all(code == 0 for code, _ in outputs), outputs
        assert all("(head " in out for _, out in outputs)
        engine = database.make_engine(url, **({"connect_args": {"options": f"-csearch_path={schema}"}}
                                              if schema else {}))
        current, head = database.migration_status(engine)
        assert current == head
        if schema:  # the race really happened in the fresh schema
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
                                    {"s": schema}).scalar() >= 10
        engine.dispose()
    finally:
        if schema:
            engine = create_engine(database.normalize_url(PG_URL))
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            engine.dispose()
