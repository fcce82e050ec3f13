"""Shared fixtures: a migrated database, a conversation with a fake clock, a live server.

Every test runs against SQLite by default; with ``QWC_TEST_DATABASE_URL`` set
(``.ci/run`` points it at the local PostgreSQL) the same tests run there.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from qwc_service import connections, database, queue, server
from qwc_service.config import Settings
from qwc_service.conversation import Conversation
from qwc_service.models import Connection, Job
from qwc_service.passwords import Passwords

SAMPLES = Path(__file__).parent / "samples"
PG_URL = os.environ.get("QWC_TEST_DATABASE_URL", "")
TABLES = ("webhook_deliveries", "api_tokens", "job_events", "job_pages", "job_dependencies", "auth_events",
          "auth_counters", "jobs", "qbwc_sessions", "connections")


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


@dataclass
class FakeClock:
    """A clock the test moves by hand, so expiry needs no sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session")
def fast_passwords() -> Passwords:
    # Real argon2id, with costs low enough for hundreds of logins per test run.
    return Passwords(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = database.make_engine(f"sqlite:///{path}")
    database.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_engine() -> Iterator[Engine | None]:
    if not PG_URL:
        yield None
        return
    engine = database.make_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    database.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _no_webhook_worker_outlives_its_test() -> Iterator[None]:
    """A webhook worker left running delivers later tests' rows by the real clock (on PostgreSQL
    all tests share one database): the cause of two flaky failures, so it fails the test that leaks one."""
    yield
    leaked = [t for t in threading.enumerate() if t.name == "qwc-webhooks" and t.is_alive()]
    assert not leaked, f"{len(leaked)} webhook worker(s) still running after the test: stop them"


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path, _pg_engine: Engine | None) -> str:
    """A migrated, empty database for this test."""
    if _pg_engine is not None:
        with _pg_engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        return PG_URL
    path = tmp_path / "qwc.db"
    shutil.copy(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, argon2_time_cost=1, argon2_memory_cost=8, argon2_parallelism=1)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = database.make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> sessionmaker[Session]:
    return database.make_sessionmaker(engine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def conversation(db: sessionmaker[Session], settings: Settings, fast_passwords: Passwords, clock: FakeClock) -> Conversation:
    return Conversation(db, settings, fast_passwords, clock)


@pytest.fixture
def add_connection(db: sessionmaker[Session], fast_passwords: Passwords, clock: FakeClock) -> Callable[..., Connection]:
    def add(name: str = "acme", username: str = "acme-sync", password: str = "correct horse", **kw: str) -> Connection:
        with db.begin() as s:
            return connections.add_connection(
                s, name=name, username=username, password=password, passwords=fast_passwords, now=clock(), **kw
            )

    return add


@pytest.fixture
def enqueue(db: sessionmaker[Session], clock: FakeClock) -> Callable[..., Job]:
    def add(connection: Connection, request: str, **options: object) -> Job:
        with db.begin() as s:
            conn = s.get(Connection, connection.id)
            assert conn is not None
            return queue.enqueue(s, conn, request, now=clock(), **options).job  # type: ignore[arg-type]

    return add


@pytest.fixture
def get_job(db: sessionmaker[Session]) -> Callable[[int], Job]:
    def get(job_id: int) -> Job:
        with db.begin() as s:
            return queue.get_job(s, job_id)

    return get


@dataclass
class LiveServer:
    url: str
    service: server.Service


@pytest.fixture
def live_server(settings: Settings, fast_passwords: Passwords) -> Iterator[LiveServer]:
    """The real WSGI app under waitress on 127.0.0.1, stopped after the test."""
    yield from _serve(settings, fast_passwords)


def _serve(settings: Settings, passwords: Passwords) -> Iterator[LiveServer]:
    service = server.build(settings, migrate=False, passwords=passwords)
    # A short loop timeout lets the server notice close() quickly.
    httpd = server.make_server(service, "127.0.0.1", 0, threads=4, asyncore_loop_timeout=0.05)
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{httpd.effective_port}/qbwc", service)
    finally:
        # Close every channel from inside the server's loop (keep-alive clients
        # would otherwise hold it open; closing them from here races select()).
        def close_all() -> None:
            for channel in list(httpd._map.values()):
                if channel is not httpd.trigger:
                    channel.close()
            httpd.trigger.close()  # last: with the map empty, run() returns

        try:
            httpd.trigger.pull_trigger(close_all)
        except OSError:  # the loop has already stopped and closed its trigger
            pass
        thread.join(timeout=5)
        httpd.task_dispatcher.shutdown()
        service.engine.dispose()


@pytest.fixture
def make_live_server(fast_passwords: Passwords) -> Iterator[Callable[[Settings], LiveServer]]:
    """Start a server with custom settings (e.g. a small body cap)."""
    stack: list[Iterator[LiveServer]] = []

    def start(custom: Settings) -> LiveServer:
        gen = _serve(custom, fast_passwords)
        stack.append(gen)
        return next(gen)

    yield start
    for gen in stack:
        for _ in gen:
            pass


@pytest.fixture
def spawn_server(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start ``qwc-service serve`` as a separate process on the test database; returns its /qbwc URL."""
    import socket
    import subprocess
    import sys
    import time

    import requests

    processes: list[subprocess.Popen[bytes]] = []

    def spawn(**env_overrides: str) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = dict(os.environ, QWC_DATABASE_URL=settings.database_url, QWC_ARGON2_TIME_COST="1",
                   QWC_ARGON2_MEMORY_COST="8", QWC_ARGON2_PARALLELISM="1", **env_overrides)
        log = open(tmp_path / f"server-{port}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "qwc_service", "serve", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        processes.append(proc)
        url = f"http://127.0.0.1:{port}/qbwc"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url, timeout=2)
                return url
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / f"server-{port}.log").read_text()) from None
                time.sleep(0.1)

    spawn.processes = processes  # type: ignore[attr-defined]
    yield spawn
    for proc in processes:
        proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
