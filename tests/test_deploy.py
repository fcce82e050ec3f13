"""Production deployment: the container entrypoint, gunicorn, compose, Dockerfile and Caddyfile.

No Docker engine is needed: the entrypoint runs under bash (and sh) against
the test database, gunicorn is started for real on 127.0.0.1 through that
entrypoint, compose.yaml and the Dockerfile are read and checked, and when a
``caddy`` binary is installed the real Caddyfile proxies to gunicorn on
loopback. Every server started here binds 127.0.0.1 and is stopped by the
test (and wrapped in ``timeout`` in case the test run itself dies).
"""

from __future__ import annotations

import http.client
import importlib
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from wire import INTUIT, envelope

from qwc_service import __version__, database
from qwc_service.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
BIN = Path(sys.executable).parent  # the environment's qwc-service, gunicorn and python
PG_URL = os.environ.get("QWC_TEST_DATABASE_URL", "")
#: Outer bound for every process started here, should the test run die.
PROCESS_LIFETIME = 300
SECRET = "hunter2-s3cret"


# -- helpers ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def base_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The caller's environment without any QWC_* setting, this venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QWC_", "GUNICORN_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        HOME=str(tmp_path),
        QWC_ARGON2_TIME_COST="1",
        QWC_ARGON2_MEMORY_COST="8",
        QWC_ARGON2_PARALLELISM="1",
    )
    env.update(overrides)
    return env


def fresh_sqlite(tmp_path: Path, name: str = "fresh.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def with_timeout(command: list[str]) -> list[str]:
    timeout = shutil.which("timeout")
    return [timeout, "-k", "5", str(PROCESS_LIFETIME), *command] if timeout else command


# A command for the entrypoint to exec: it proves the schema is at head,
# reports its PID (the entrypoint's, if it exec'd) and its view of the secrets.
REPORT = """
import os, sys
from qwc_service import database
from qwc_service.config import Settings
url = Settings.from_env().database_url
engine = database.make_engine(url)
current, head = database.migration_status(engine)
engine.dispose()
print(f"EXECED pid={os.getpid()} args={sys.argv[1:]} revision={current} head={head}")
print(f"ENV QWC_DATABASE_URL={os.environ.get('QWC_DATABASE_URL')}")
sys.exit(int(os.environ.get("REPORT_EXIT", "0")))
"""


def run_entrypoint(
    env: dict[str, str], *command: str, shell: str = "bash", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shell, str(ENTRYPOINT), *command], env=env, check=False, capture_output=True, text=True,
                          timeout=timeout, cwd=env["HOME"])


def report_command() -> list[str]:
    return [sys.executable, "-c", REPORT, "first arg", "--second"]


def wait_for_text(path: Path, needle: str, proc: subprocess.Popen[Any] | None = None, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never appeared; output so far:\n{text}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[Any], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, source: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def soap(port: int, operation: str, *params: tuple[str, str | int | None], source: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    all_headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{INTUIT}{operation}"',
                   **(headers or {})}
    return http_request(port, "POST", "/qbwc", envelope(operation, *params), all_headers, source)


def wsdl_location(body: bytes) -> str:
    match = re.search(rb'location="([^"]+)"', body)
    assert match, body[:300]
    return match.group(1).decode()


# -- the entrypoint -------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_entrypoint_migrates_then_execs_the_command(tmp_path: Path, shell: str) -> None:
    if not shutil.which(shell):
        pytest.skip(f"no {shell}")
    env = base_env(tmp_path, QWC_DATABASE_URL=fresh_sqlite(tmp_path), REPORT_EXIT="7")
    proc = subprocess.Popen([shell, str(ENTRYPOINT), *report_command()], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    out, err = proc.communicate(timeout=60)
    # The command's exit status is the entrypoint's: it was exec'd, in the same process.
    assert proc.returncode == 7, err
    assert f"EXECED pid={proc.pid} " in out
    assert "args=['first arg', '--second']" in out
    migrated = out.index("database at revision")
    assert migrated < out.index("EXECED")
    current, head = re.search(r"revision=(\S+) head=(\S+)", out).groups()  # type: ignore[union-attr]
    assert current == head != "None"
    assert "is reachable" in err and "starting " in err


def test_entrypoint_on_the_test_database(tmp_path: Path, database_url: str) -> None:
    env = base_env(tmp_path, QWC_DATABASE_URL=database_url)
    result = run_entrypoint(env, *report_command())
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout and "EXECED" in result.stdout
    assert re.search(r"revision=(\S+) head=\1\b", result.stdout)


def test_entrypoint_reads_the_database_url_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "database_url"
    secret.write_text(fresh_sqlite(tmp_path) + "\n")
    # The _FILE wins over the plain variable (which would fail: no such directory).
    env = base_env(tmp_path, QWC_DATABASE_URL_FILE=str(secret),
                   QWC_DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/x.db", QWC_DB_WAIT_SECONDS="0")
    result = run_entrypoint(env, *report_command())
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fresh.db").exists()
    assert "EXECED" in result.stdout
    # The secret was read by qwc-service, not exported into the server's environment.
    assert f"ENV QWC_DATABASE_URL=sqlite:///{tmp_path}/missing/dir/x.db" in result.stdout


def test_entrypoint_gives_up_on_an_unreachable_database(tmp_path: Path) -> None:
    url = f"postgresql://qwc:{SECRET}@127.0.0.1:{free_port()}/qwc"
    env = base_env(tmp_path, QWC_DATABASE_URL=url, QWC_DB_WAIT_SECONDS="2")
    started = time.monotonic()
    result = run_entrypoint(env, *report_command())
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "EXECED" not in result.stdout  # neither migrated nor started
    assert "is unreachable after 2 s" in result.stderr
    assert "qwc:***@127.0.0.1" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert 2 <= elapsed < 20


def test_entrypoint_waits_for_the_database_to_appear(tmp_path: Path) -> None:
    # SQLite cannot open a file in a directory that does not exist yet: the
    # same retry loop that waits for PostgreSQL to come up.
    directory = tmp_path / "later"
    env = base_env(tmp_path, QWC_DATABASE_URL=f"sqlite:///{directory}/qwc.db", QWC_DB_WAIT_SECONDS="30")
    log = tmp_path / "entrypoint.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(with_timeout(["bash", str(ENTRYPOINT), *report_command()]), env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_for_text(log, "waiting up to 30 s", proc)
            directory.mkdir()
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert text.index("waiting up to") < text.index("is reachable") < text.index("EXECED")


@pytest.mark.skipif(not PG_URL, reason="QWC_TEST_DATABASE_URL is not set")
def test_entrypoint_waits_for_postgresql_to_accept_connections(tmp_path: Path, database_url: str) -> None:
    # PostgreSQL "comes up" on a new port once a forwarder starts listening there.
    real = make_url(database_url)
    port = free_port()
    env = base_env(tmp_path, QWC_DATABASE_URL=real.set(port=port).render_as_string(hide_password=False),
                   QWC_DB_WAIT_SECONDS="30")
    log = tmp_path / "entrypoint.log"
    stop_forwarding = threading.Event()
    with open(log, "wb") as out:
        proc = subprocess.Popen(with_timeout(["bash", str(ENTRYPOINT), *report_command()]), env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_for_text(log, "waiting up to 30 s", proc)
            _forward(port, (real.host or "127.0.0.1", real.port or 5432), stop_forwarding)
            assert proc.wait(timeout=30) == 0, log.read_text()
        finally:
            stop_forwarding.set()
            if proc.poll() is None:
                proc.kill()
    assert "EXECED" in log.read_text()


def _forward(port: int, target: tuple[str, int], stop_event: threading.Event) -> None:
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        with listener:
            while not stop_event.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(target)
                threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
                threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"QWC_DATABASE_URL_FILE": "/nonexistent/secret"}, "QWC_DATABASE_URL_FILE: cannot read /nonexistent/secret"),
        ({"QWC_DATABASE_URL": "::not a url::"}, "configuration error: QWC_DATABASE_URL"),
        ({"QWC_PORT": "eighty"}, "QWC_PORT must be a whole number"),
        ({"QWC_DB_WAIT_SECONDS": "soon"}, "QWC_DB_WAIT_SECONDS must be a whole number"),
        ({"QWC_MIGRATE_ON_START": "maybe"}, "QWC_MIGRATE_ON_START must be 1 or 0"),
    ],
)
def test_entrypoint_configuration_errors_fail_at_once(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    env = base_env(tmp_path, QWC_DATABASE_URL=fresh_sqlite(tmp_path), QWC_DB_WAIT_SECONDS="30")
    env.update(overrides)
    started = time.monotonic()
    result = run_entrypoint(env, *report_command())
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "EXECED" not in result.stdout
    assert time.monotonic() - started < 15  # not retried for QWC_DB_WAIT_SECONDS


def test_entrypoint_can_skip_migrations(tmp_path: Path) -> None:
    env = base_env(tmp_path, QWC_DATABASE_URL=f"postgresql://qwc@127.0.0.1:{free_port()}/qwc",
                   QWC_MIGRATE_ON_START="0")
    result = run_entrypoint(env, "echo", "started")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"
    assert "not waiting for the database, not migrating" in result.stderr


def test_entrypoint_reports_a_failed_migration(tmp_path: Path) -> None:
    # Reachable, but the first migration cannot create a table that is in the way.
    import sqlite3

    path = tmp_path / "in-the-way.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE connections (id INTEGER)")
    conn.close()
    env = base_env(tmp_path, QWC_DATABASE_URL=f"sqlite:///{path}", QWC_DB_WAIT_SECONDS="0")
    result = run_entrypoint(env, *report_command())
    assert result.returncode == 1
    assert "EXECED" not in result.stdout
    assert "is reachable" in result.stderr
    assert "migrations failed (exit status 1); not starting" in result.stderr


def test_entrypoint_stops_promptly_on_sigterm_while_waiting(tmp_path: Path) -> None:
    # As PID 1 in a container the shell would ignore SIGTERM without its trap.
    env = base_env(tmp_path, QWC_DATABASE_URL=f"postgresql://qwc@127.0.0.1:{free_port()}/qwc",
                   QWC_DB_WAIT_SECONDS="120")
    log = tmp_path / "entrypoint.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(ENTRYPOINT), "echo", "never"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_for_text(log, "waiting up to 120 s", proc)
            children = _children(proc.pid)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 143
            assert time.monotonic() - started < 5
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "stopped before the server started" in log.read_text()
    # The waiting probe went with it.
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def test_entrypoint_lets_a_migration_finish_before_stopping(tmp_path: Path) -> None:
    # A slow qwc-service (a shim first on PATH) gives a window to stop during the migration.
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "qwc-service"
    shim.write_text(f'#!/bin/sh\necho MIGRATING >&2\nsleep 2\nexec "{BIN / "qwc-service"}" "$@"\n')
    shim.chmod(0o755)
    url = fresh_sqlite(tmp_path)
    env = base_env(tmp_path, QWC_DATABASE_URL=url)
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    log = tmp_path / "entrypoint.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(ENTRYPOINT), *report_command()], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_for_text(log, "MIGRATING", proc)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 143
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "database at revision" in text  # the migration ran to the end...
    assert "stopped after the migrations finished; not starting" in text
    assert "EXECED" not in text  # ...and the server was not started
    engine = database.make_engine(url)
    try:
        current, head = database.migration_status(engine)
    finally:
        engine.dispose()
    assert current == head


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_entrypoint_passes_the_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or pytest.skip("shellcheck is not installed")
    result = subprocess.run([shellcheck, str(ENTRYPOINT), str(DOCKER / "make-secrets.sh")],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_entrypoint_is_executable_and_posix() -> None:
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")


# -- the gunicorn configuration ---------------------------------------------------


def load_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for name in list(os.environ):
        if name.startswith("QWC_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import qwc_service.gunicorn_conf as conf

    return importlib.reload(conf)


def test_gunicorn_conf_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_conf(monkeypatch)
    assert conf.wsgi_app == "qwc_service.wsgi_app:application"
    assert conf.bind == ["127.0.0.1:8080"]  # the same default as `qwc-service serve`
    assert conf.worker_class == "gthread"
    assert conf.workers == min(2 * conf.usable_cpus() + 1, 8)
    assert conf.threads == 4
    assert conf.timeout >= 300 and conf.graceful_timeout >= 60  # minutes-long QuickBooks answers
    assert conf.keepalive > 30  # outlasts Caddy's idle upstream connections
    assert conf.preload_app is False  # one engine per worker, built after the fork
    assert conf.max_requests == 0
    assert conf.limit_request_line == 4094 and conf.limit_request_fields == 100
    assert conf.limit_request_field_size == 8190
    assert conf.forwarded_allow_ips == ""  # trust no one, like QWC_TRUSTED_PROXIES
    assert conf.secure_scheme_headers == {"X-FORWARDED-PROTO": "https"}
    assert conf.loglevel == "info"
    assert conf.accesslog == "-" and conf.errorlog == "-"


def test_gunicorn_conf_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://qwc:pw@db/qwc\n")
    conf = load_conf(
        monkeypatch,
        QWC_HOST="0.0.0.0", QWC_PORT="9090", QWC_WORKERS="3", QWC_THREADS="6", QWC_WORKER_TIMEOUT="900",
        QWC_GRACEFUL_TIMEOUT="200", QWC_KEEPALIVE="90", QWC_MAX_REQUESTS="1000", QWC_LOG_LEVEL="WARNING",
        QWC_TRUSTED_PROXIES="172.30.87.5/24, 10.0.0.1 ,fd00::1", QWC_DATABASE_URL_FILE=str(secret),
    )
    assert conf.bind == ["0.0.0.0:9090"]
    assert (conf.workers, conf.threads, conf.timeout, conf.graceful_timeout) == (3, 6, 900, 200)
    assert (conf.keepalive, conf.max_requests, conf.max_requests_jitter) == (90, 1000, 100)
    assert conf.loglevel == "warning"
    # Host bits are dropped: gunicorn refuses "172.30.87.5/24" where the app accepts it.
    assert conf.forwarded_allow_ips == "172.30.87.0/24,10.0.0.1/32,fd00::1/128"


def test_gunicorn_conf_details(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_conf(monkeypatch, QWC_HOST="::1", QWC_PORT="8443", QWC_WORKERS="")
    assert conf.bind == ["[::1]:8443"]
    assert conf.workers == conf.default_workers()  # empty (compose's ${QWC_WORKERS:-}) = default
    assert [conf.default_workers(n) for n in (1, 2, 3, 16)] == [3, 5, 7, 8]
    assert conf.bind_address("unix:/run/qwc.sock", 0) == "unix:/run/qwc.sock"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QWC_WORKERS": "many"}, "QWC_WORKERS must be a whole number"),
        ({"QWC_THREADS": "0"}, "QWC_THREADS must be at least 1"),
        ({"QWC_TRUSTED_PROXIES": "caddy"}, "QWC_TRUSTED_PROXIES: 'caddy' is not an address"),
        ({"QWC_PORT": "-1"}, "QWC_PORT must be positive"),
    ],
)
def test_gunicorn_conf_rejects_bad_values(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_conf(monkeypatch, **env)
    load_conf(monkeypatch)  # leave a loadable module behind


def test_gunicorn_conf_access_log_carries_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = load_conf(monkeypatch).access_log_format
    assert "%(u)s" not in fmt  # the Basic-auth user name
    for header in ("authorization", "cookie", "proxy-authorization"):
        assert header not in fmt.lower()
    assert "%({qwc.client_address}e)s" in fmt and '"%(r)s"' in fmt


def test_gunicorn_accepts_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    gunicorn_config = pytest.importorskip("gunicorn.config")
    conf = load_conf(monkeypatch, QWC_TRUSTED_PROXIES="172.30.87.5/24,::1", QWC_WORKERS="2")
    cfg = gunicorn_config.Config()
    known = {name: value for name, value in vars(conf).items() if name in cfg.settings}
    assert {"bind", "workers", "threads", "worker_class", "timeout", "graceful_timeout", "keepalive",
            "forwarded_allow_ips", "access_log_format", "wsgi_app", "when_ready", "worker_exit"} <= set(known)
    for name, value in known.items():
        cfg.set(name, value)  # gunicorn's own validators
    assert cfg.worker_class_str == "gthread"
    assert cfg.forwarded_allow_ips == ["172.30.87.0/24", "::1/128"]
    assert cfg.workers == 2 and cfg.address


def test_gunicorn_conf_shares_metrics_between_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import logging

    class FakeArbiter:
        log = logging.getLogger("test.gunicorn")

    conf = load_conf(monkeypatch)
    # (setenv, not delenv: monkeypatch then restores the variable on_starting sets.)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setattr(conf, "_created_metrics_dir", None)
    # No directory chosen: a fresh private one, set before any worker forks, removed at exit.
    conf.on_starting(FakeArbiter())
    created = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert created.is_dir() and stat.S_IMODE(created.stat().st_mode) == 0o700
    (created / "counter_123.db").write_bytes(b"")
    conf.child_exit(FakeArbiter(), type("Worker", (), {"pid": 123})())
    conf.on_exit(FakeArbiter())
    assert not created.exists()
    # A chosen directory is kept, without the previous run's files.
    chosen = tmp_path / "metrics"
    chosen.mkdir()
    (chosen / "counter_99.db").write_bytes(b"stale")
    (chosen / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(chosen))
    monkeypatch.setattr(conf, "_created_metrics_dir", None)
    conf.on_starting(FakeArbiter())
    conf.on_exit(FakeArbiter())
    assert sorted(p.name for p in chosen.iterdir()) == ["keep.txt"]


def test_the_metrics_directory_does_not_leak_into_this_process() -> None:
    # Runs after the test above: prometheus_client here must stay single-process.
    assert not os.environ.get("PROMETHEUS_MULTIPROC_DIR")


# -- the WSGI entry point -------------------------------------------------------


def test_wsgi_app_import_has_no_side_effects_and_builds_once(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    import logging

    from qwc_service import wsgi_app
    from qwc_service.wsgi import QwcApplication

    root_level = logging.getLogger().level
    alembic_level = logging.getLogger("alembic.runtime.migration").level
    monkeypatch.setattr(wsgi_app, "_service", None)
    try:
        for name in list(os.environ):
            if name.startswith("QWC_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("QWC_DATABASE_URL", database_url)
        monkeypatch.setenv("QWC_ARGON2_TIME_COST", "1")
        monkeypatch.setenv("QWC_ARGON2_MEMORY_COST", "8")
        monkeypatch.setenv("QWC_ARGON2_PARALLELISM", "1")
        app = wsgi_app.application
        assert isinstance(app, QwcApplication)
        assert wsgi_app.application is app  # once per process
        assert isinstance(wsgi_app.create_app({"QWC_DATABASE_URL": database_url}), QwcApplication)
        with pytest.raises(AttributeError):
            wsgi_app.no_such_thing  # noqa: B018
        assert len(wsgi_app._workers) == 2 and all(w.running for w in wsgi_app._workers)
    finally:
        # Left running, the workers would deliver later tests' webhooks by the real clock
        # (on PostgreSQL every test shares one database).
        workers = list(wsgi_app._workers)
        wsgi_app.shutdown(timeout=10)
        assert not any(w.running for w in workers)
        if wsgi_app._service is not None:
            wsgi_app._service.engine.dispose()
        logging.getLogger().setLevel(root_level)
        logging.getLogger("alembic.runtime.migration").setLevel(alembic_level)


def test_wsgi_app_refuses_a_database_behind_its_schema(tmp_path: Path) -> None:
    from qwc_service import wsgi_app

    with pytest.raises(wsgi_app.SchemaNotReady, match=r"revision \(none\).*run 'qwc-service db upgrade'"):
        wsgi_app.check_schema(fresh_sqlite(tmp_path))


def test_wsgi_app_starts_when_the_database_is_down_or_newer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import text

    from qwc_service import wsgi_app

    wsgi_app.check_schema(f"sqlite:///{tmp_path}/missing/dir/qwc.db")  # unreachable: a warning
    assert "could not check the database schema" in caplog.text
    url = fresh_sqlite(tmp_path)
    engine = database.make_engine(url)
    database.upgrade(engine)
    wsgi_app.check_schema(url)  # at head: nothing to say
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    wsgi_app.check_schema(url)  # migrated by a newer version: carry on
    assert "newer than this version's" in caplog.text


# -- gunicorn for real ----------------------------------------------------------


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 10) -> str:
        return wait_for_text(self.log, needle, None, timeout)


def start_gunicorn(tmp_path: Path, database_url: str, *args: str, **env: str) -> Server:
    """The container's way: the entrypoint (migrations), then its default gunicorn command."""
    port = free_port()
    full_env = base_env(tmp_path, QWC_DATABASE_URL=database_url, QWC_HOST="127.0.0.1", QWC_PORT=str(port),
                        QWC_THREADS="2", **env)
    log = tmp_path / f"gunicorn-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(with_timeout(["bash", str(ENTRYPOINT), *args]), env=full_env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while True:
        try:
            status, _ = http_request(port, "GET", "/healthz")
            if status == 200:
                return Server(port, proc, log)
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"gunicorn did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


@pytest.fixture
def gunicorn_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    pytest.importorskip("gunicorn")
    servers: list[Server] = []

    def start(database_url: str, *args: str, **env: str) -> Server:
        server = start_gunicorn(tmp_path, database_url, *args, **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            stop(server.proc)


def healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK, as the exec-form list it is."""
    import json

    instruction = next(i for i in dockerfile_instructions() if i.keyword == "HEALTHCHECK")
    return list(json.loads(instruction.args[instruction.args.index("CMD") + 3:].strip()))


def test_gunicorn_serves_the_web_connector(gunicorn_server: Callable[..., Server], database_url: str) -> None:
    # Requests from 127.0.0.2 stand for the proxy, those from 127.0.0.1 for anyone else.
    server = gunicorn_server(database_url, "--workers", "2", QWC_TRUSTED_PROXIES="127.0.0.2")
    port = server.port
    server.wait_for("qwc-service: 2 workers x 2 threads on 127.0.0.1:")
    assert "database at revision" in server.text()  # the entrypoint migrated first
    assert "trusted proxies: 127.0.0.2/32" in server.text()

    # SOAP exactly as QBWC sends it: one keep-alive connection, Expect: 100-continue.
    from wire import WireClient

    client = WireClient(f"http://127.0.0.1:{port}/qbwc")
    try:
        reply = client.call("serverVersion")
        assert reply.status == 200 and reply.result("serverVersion") == f"qwc-service {__version__}"
        reply = client.call("clientVersion", ("strVersion", "2.3.0.215"))
        assert reply.status == 200 and reply.result("clientVersion") == ""
    finally:
        client.close()

    assert http_request(port, "GET", "/healthz") == (200, b"ok\n")

    # X-Forwarded-Proto and X-Forwarded-For count only from the trusted proxy.
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    status, body = http_request(port, "GET", "/qbwc?wsdl", headers=forwarded, source="127.0.0.2")
    assert status == 200 and wsdl_location(body) == f"https://127.0.0.1:{port}/qbwc"
    status, body = http_request(port, "GET", "/qbwc?wsdl", headers=forwarded, source="127.0.0.1")
    assert status == 200 and wsdl_location(body) == f"http://127.0.0.1:{port}/qbwc"

    credentials = {"Authorization": f"Basic {SECRET}", "Cookie": f"session={SECRET}"}
    assert soap(port, "serverVersion", source="127.0.0.2", headers={**forwarded, **credentials})[0] == 200
    assert soap(port, "serverVersion", source="127.0.0.1", headers={**forwarded, **credentials})[0] == 200
    # The access log: peer, then the address the app used for lockouts.
    expected = [r'^127\.0\.0\.2 203\.0\.113\.7 \[.*\] "POST /qbwc HTTP/1\.1" 200 ',
                r'^127\.0\.0\.1 127\.0\.0\.1 \[.*\] "POST /qbwc HTTP/1\.1" 200 ',
                r'^127\.0\.0\.1 - \[.*\] "GET /qbwc\?wsdl HTTP/1\.1" 200 ']
    deadline = time.monotonic() + 10
    while not all(re.search(pattern, server.text(), re.MULTILINE) for pattern in expected):
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.05)
    text = server.text()
    assert SECRET not in text

    # The image's HEALTHCHECK command, run against this server.
    check = subprocess.run(healthcheck_command(), env=base_env(Path(server.log.parent), QWC_PORT=str(port)),
                           check=False, capture_output=True, timeout=30, executable=sys.executable)
    assert check.returncode == 0, check.stderr

    assert stop(server.proc) == 0  # SIGTERM: a graceful shutdown
    assert "Shutting down: Master" in server.text()
    assert "Traceback" not in server.text()
    check = subprocess.run(healthcheck_command(), env=base_env(Path(server.log.parent), QWC_PORT=str(port)),
                           check=False, capture_output=True, timeout=30, executable=sys.executable)
    assert check.returncode != 0


def test_gunicorn_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    port = free_port()
    env = base_env(tmp_path, QWC_DATABASE_URL=fresh_sqlite(tmp_path), QWC_HOST="127.0.0.1", QWC_PORT=str(port),
                   QWC_WORKERS="1")
    # Without the entrypoint nobody migrates; the worker says what to do and gunicorn stops.
    result = subprocess.run(with_timeout([str(BIN / "gunicorn"), "--config", "python:qwc_service.gunicorn_conf"]),
                            env=env, check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    assert "run 'qwc-service db upgrade'" in result.stdout + result.stderr


# -- Caddy in front of gunicorn ---------------------------------------------------


def test_caddyfile_is_valid(tmp_path: Path) -> None:
    caddy = shutil.which("caddy") or pytest.skip("caddy is not installed")
    env = dict(os.environ, QWC_PUBLIC_HOST="qbwc.example.com", HOME=str(tmp_path),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    result = subprocess.run([caddy, "adapt", "--config", str(DOCKER / "Caddyfile"), "--adapter", "caddyfile"],
                            env=env, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"warn"' not in result.stderr, result.stderr
    assert '"dial":"app:8080"' in result.stdout.replace(" ", "")
    assert '"host":["qbwc.example.com"]' in result.stdout.replace(" ", "")


def test_caddy_passes_the_real_client_address(
    tmp_path: Path, gunicorn_server: Callable[..., Server], database_url: str
) -> None:
    caddy = shutil.which("caddy") or pytest.skip("caddy is not installed")
    server = gunicorn_server(database_url, QWC_TRUSTED_PROXIES="127.0.0.1", QWC_WORKERS="1")
    caddy_port = free_port()
    # The real Caddyfile with loopback-only changes: plain http on a loopback
    # port (no certificate), the admin API off, gunicorn as the upstream.
    text = (DOCKER / "Caddyfile").read_text()
    for old, new in [("\n{\n", "\n{\n\tadmin off\n"),
                     ("{$QWC_PUBLIC_HOST} {\n", "{$QWC_PUBLIC_HOST} {\n\tbind 127.0.0.1\n"),
                     ("reverse_proxy app:8080 {", f"reverse_proxy 127.0.0.1:{server.port} {{")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(text)
    env = dict(os.environ, QWC_PUBLIC_HOST=f"http://127.0.0.1:{caddy_port}", HOME=str(tmp_path),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    log = tmp_path / "caddy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(with_timeout([caddy, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]),
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_request(caddy_port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        # A client at 127.0.0.3 forges X-Forwarded-For; the app must see 127.0.0.3.
        status, body = soap(caddy_port, "serverVersion", source="127.0.0.3",
                            headers={"X-Forwarded-For": "198.51.100.66"})
        assert status == 200 and b"qwc-service" in body
        access = server.wait_for('127.0.0.1 127.0.0.3 [')
        assert "198.51.100.66" not in access
        # Caddy keeps the Host header: the WSDL names the address the client used.
        status, body = http_request(caddy_port, "GET", "/qbwc?wsdl", source="127.0.0.3")
        assert status == 200 and wsdl_location(body) == f"http://127.0.0.1:{caddy_port}/qbwc"
    finally:
        stop(proc)


def test_caddyfile_wiring() -> None:
    text = (DOCKER / "Caddyfile").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert "{$QWC_PUBLIC_HOST} {" in code  # automatic HTTPS for that name
    assert "reverse_proxy app:8080" in code
    # trusted_proxies would make Caddy pass on a client's forged X-Forwarded-For.
    assert "trusted_proxies" not in code
    assert "tls internal" not in code  # QBWC needs a certificate Windows trusts
    match = re.search(r"max_size\s+(\d+)MiB", code)
    assert match and int(match.group(1)) * 1024 * 1024 >= Settings().max_body_bytes


# -- compose.yaml -------------------------------------------------------------------


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, enough to check the wiring."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", sub, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; compose.yaml is not checked")
    raw = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    with pytest.raises(KeyError, match="QWC_PUBLIC_HOST"):
        interpolate(raw, {})  # compose refuses to start without the public name
    return interpolate(raw, {"QWC_PUBLIC_HOST": "qbwc.example.com"})  # type: ignore[no-any-return]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_compose_services_and_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"db", "app", "proxy"}
    db = services["db"]
    assert db["image"].startswith("postgres:")
    assert db["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    # The password only as a secret file, never in the environment.
    db_env = env_of(db)
    assert "POSTGRES_PASSWORD" not in db_env
    assert db_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "postgres_password" in db["secrets"]
    # A named volume at the path this PostgreSQL major expects.
    volume, target = db["volumes"][0].split(":")[:2]
    assert volume in compose["volumes"]
    major = int(re.match(r"postgres:(\d+)", db["image"]).group(1))  # type: ignore[union-attr]
    assert target == ("/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data")
    assert "ports" not in db


def test_compose_app(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    app = compose["services"]["app"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert (DOCKER / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert app["build"]["args"]["PYTHON_IMAGE"] == "python:3.11-slim"
    env = env_of(app)
    assert env["QWC_DATABASE_URL_FILE"] == "/run/secrets/database_url"
    assert "QWC_DATABASE_URL" not in env
    assert "database_url" in app["secrets"]
    for name, secret in compose["secrets"].items():
        assert "file" in secret and not Path(secret["file"]).is_absolute(), name
    assert "ports" not in app  # only the proxy is reachable from outside
    # Stopping waits for gunicorn's graceful shutdown.
    graceful = load_conf(monkeypatch).graceful_timeout
    assert int(app["stop_grace_period"].rstrip("s")) > graceful
    # Every env value is one the app accepts (empty worker counts mean "default").
    Settings.from_env({k: v for k, v in env.items() if v and not k.endswith("_FILE")})


def test_compose_proxy_and_networks(compose: dict[str, Any]) -> None:
    services, networks = compose["services"], compose["networks"]
    proxy, app, db = services["proxy"], services["app"], services["db"]
    assert proxy["image"].startswith("caddy:")
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert any(v.endswith(":/data") for v in proxy["volumes"])  # certificates survive re-creation
    assert env_of(proxy)["QWC_PUBLIC_HOST"] == "qbwc.example.com"
    # The app believes X-Forwarded-For from exactly the network it shares with Caddy...
    shared = set(proxy["networks"]) & set(app["networks"])
    assert len(shared) == 1
    edge = networks[shared.pop()]
    subnet = edge["ipam"]["config"][0]["subnet"]
    assert env_of(app)["QWC_TRUSTED_PROXIES"] == subnet
    # ...which the database is not on; the database's network has no way out.
    assert not set(db["networks"]) & set(proxy["networks"])
    assert all(networks[name].get("internal") for name in db["networks"])


def test_compose_files_exist_and_secrets_stay_out_of_git() -> None:
    assert (DOCKER / "Caddyfile").is_file() and (DOCKER / "Dockerfile").is_file()
    ignored = (DOCKER / ".gitignore").read_text().split()
    assert "/secrets/" in ignored and "/.env" in ignored


def test_make_secrets(tmp_path: Path) -> None:
    script = tmp_path / "make-secrets.sh"
    shutil.copy(DOCKER / "make-secrets.sh", script)
    result = subprocess.run(["sh", str(script)], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    password = (tmp_path / "secrets" / "postgres_password").read_text()
    assert re.fullmatch(r"[0-9a-f]{48}", password)
    url_file = tmp_path / "secrets" / "database_url"
    assert url_file.read_text() == f"postgresql://qwc:{password}@db:5432/qwc"
    assert Settings.from_env({"QWC_DATABASE_URL_FILE": str(url_file)}).database_url == url_file.read_text()
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o444
    again = subprocess.run(["sh", str(script)], check=False, capture_output=True, text=True, timeout=30)
    assert again.returncode == 1 and "not replacing" in again.stderr
    assert (tmp_path / "secrets" / "postgres_password").read_text() == password


# -- the Dockerfile -------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # -1 before the first FROM


def dockerfile_instructions() -> list[Instruction]:
    lines: list[str] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    instructions, stage = [], -1
    for line in lines:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), args.strip(), stage))
    return instructions


def test_dockerfile_is_multi_stage_on_a_configurable_python() -> None:
    instructions = dockerfile_instructions()
    first = instructions[0]
    assert first.keyword == "ARG" and first.args == "PYTHON_IMAGE=python:3.11-slim" and first.stage == -1
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert all(i.args.split()[0] == "${PYTHON_IMAGE}" for i in froms)
    build_name = froms[0].args.split()[-1]
    assert froms[0].args.split()[-2].upper() == "AS"
    build = " ".join(i.args for i in instructions if i.stage == 0 and i.keyword == "RUN")
    assert "setuptools" in build  # spyne 2.14 is an sdist
    assert "pip wheel" in build and "[postgres,production]" in build
    final = [i for i in instructions if i.stage == len(froms) - 1]
    copies_from_build = [i.args for i in final if i.keyword == "COPY" and f"--from={build_name}" in i.args]
    assert copies_from_build == [f"--from={build_name} /opt/venv /opt/venv"]


def test_dockerfile_final_stage_is_lean_and_unprivileged() -> None:
    instructions = dockerfile_instructions()
    last = max(i.stage for i in instructions)
    final = [i for i in instructions if i.stage == last]
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    for tool in ("build-essential", "gcc", "g++", "clang", "make ", "-dev", "pip install", "apt-get install"):
        assert tool not in runs, tool
    assert not any(i.keyword in ("COPY", "ADD") and i.args.split()[0] == "." for i in final)
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = next(i.args for i in final if i.keyword == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    assert any(i.keyword == "EXPOSE" and i.args == "8080" for i in final)
    entrypoint = next(i.args for i in final if i.keyword == "ENTRYPOINT")
    assert "qwc-entrypoint" in entrypoint
    copy_entrypoint = next(i.args for i in final if i.keyword == "COPY" and "entrypoint.sh" in i.args)
    assert entrypoint.strip('[]"') == copy_entrypoint.split()[-1]
    cmd = next(i.args for i in final if i.keyword == "CMD")
    assert "gunicorn" in cmd and "python:qwc_service.gunicorn_conf" in cmd
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "QWC_HOST=0.0.0.0" in env and "QWC_PORT=8080" in env


def test_dockerfile_copies_only_what_the_dockerignore_lets_in() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # an allow-list: secrets, .env, .git and databases stay out
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for instruction in dockerfile_instructions():
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        sources = [part for part in shlex.split(instruction.args) if not part.startswith("--")][:-1]
        for source in sources:
            assert source.rstrip("/") in allowed, source
            assert (ROOT / source).exists(), source


def test_healthcheck_command_is_exec_form_python() -> None:
    command = healthcheck_command()
    assert command[0] == "/opt/venv/bin/python" and command[1] == "-c"
    compile(command[2], "<healthcheck>", "exec")
    assert "ProxyHandler({})" in command[2]  # HTTP_PROXY must not capture 127.0.0.1


def test_production_extra_when_declared() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    if "production" not in extras:
        pytest.skip("pyproject.toml has no 'production' extra yet (the Dockerfile installs it)")
    assert any(req.replace(" ", "").startswith("gunicorn>=") for req in extras["production"])


# -- docs/deployment.md -------------------------------------------------------------------

DOCS = ROOT / "docs" / "deployment.md"


def test_deployment_doc_names_only_real_settings() -> None:
    from dataclasses import fields

    known = {f"QWC_{field.name.upper()}" for field in fields(Settings)}
    known |= {"QWC_WORKERS", "QWC_THREADS", "QWC_WORKER_TIMEOUT", "QWC_GRACEFUL_TIMEOUT", "QWC_KEEPALIVE",
              "QWC_MAX_REQUESTS"}  # gunicorn_conf
    known |= {"QWC_MIGRATE_ON_START", "QWC_DB_WAIT_SECONDS"}  # entrypoint.sh
    known |= {"QWC_PUBLIC_HOST", "QWC_EDGE_SUBNET", "QWC_IMAGE_TAG"}  # compose.yaml
    mentioned = set(re.findall(r"\bQWC_[A-Z0-9_]*[A-Z0-9]\b", DOCS.read_text()))
    unknown = {name for name in mentioned if name not in known and name.removesuffix("_FILE") not in known}
    assert not unknown, unknown
    deployment_files = "\n".join(p.read_text() for p in (DOCKER / "compose.yaml", ENTRYPOINT,
                                                          ROOT / "qwc_service" / "gunicorn_conf.py"))
    for name in known - {f"QWC_{field.name.upper()}" for field in fields(Settings)}:
        assert name in deployment_files, name  # the doc's extra names exist where it says


def test_systemd_unit_in_the_docs_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze") or pytest.skip("systemd-analyze is not installed")
    block = re.search(r"```ini\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert block, "no unit file in docs/deployment.md"
    unit = "\n".join(line.removeprefix("   ") for line in block.group(1).splitlines())
    assert "ExecStartPre=/opt/qwc-service/bin/qwc-service db upgrade" in unit
    assert "ExecStart=/opt/qwc-service/bin/gunicorn --config python:qwc_service.gunicorn_conf" in unit
    graceful = int(re.search(r"TimeoutStopSec=(\d+)", unit).group(1))  # type: ignore[union-attr]
    assert graceful > 120  # gunicorn's default graceful timeout
    path = tmp_path / "qwc-service.service"
    path.write_text(unit.replace("/opt/qwc-service/bin", str(BIN)) + "\n")
    result = subprocess.run([analyze, "verify", "--man=no", str(path)], check=False, capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0 and "qwc-service.service" not in result.stdout + result.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0 and "qwc-service.service" not in result.stdout + result.stderr, (
        result.stdout + result.stderr)
