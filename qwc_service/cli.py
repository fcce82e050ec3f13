"""The ``qwc-service`` command line.

Every command reads the same ``QWC_*`` settings as the server, migrates the
database if it is behind (so the first command on a fresh machine just
works), and reports bad input as one line on stderr with a non-zero exit,
never a traceback. ``--json`` prints exactly one JSON document for scripts.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Callable, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from . import __version__, authentication, connections, database, queue
from .config import ConfigError, Settings
from .database import DatabaseError
from .exceptions import QwcError
from .models import Connection, Job, JobState
from .passwords import Passwords

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns our deliberate errors into one clear line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (QwcError, ConfigError, DatabaseError) as exc:
            _fail(str(exc))
        except SQLAlchemyError as exc:
            _fail(f"database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
        except OSError as exc:
            _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Context:
    """Settings and a migrated database, made on first use."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self._engine = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = database.make_engine(self.settings.database_url)
            database.upgrade(self._engine)
        return self._engine

    def transaction(self) -> Any:
        return database.make_sessionmaker(self.engine).begin()


pass_context = click.make_pass_decorator(_Context, ensure=True)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="qwc-service")
def main() -> None:
    """qwc-service: the server the QuickBooks Web Connector polls.

    Settings come from QWC_* environment variables (see the README);
    QWC_DATABASE_URL defaults to qwc-service.db in the working directory.
    """


# -- serve ---------------------------------------------------------------


@main.command()
@click.option("--host", help="Address to listen on (default QWC_HOST or 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default QWC_PORT or 8080).")
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True)
def serve(host: str | None, port: int | None, threads: int) -> None:
    """Migrate the database and serve the Web Connector endpoint at /qbwc."""
    from . import server

    settings = Settings.from_env()
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    service = server.build(settings)
    httpd = server.make_server(
        service, host or settings.host, settings.port if port is None else port, threads=threads
    )
    click.echo(
        f"qwc-service {__version__} serving http://{host or settings.host}:{httpd.effective_port}/qbwc "
        f"(database: {database.describe(settings.database_url)})"
    )
    try:
        httpd.run()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.close()


# -- db ------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration (serve does this by itself)."""
    settings = Settings.from_env()
    engine = database.make_engine(settings.database_url)
    database.upgrade(engine)
    current, head = database.migration_status(engine)
    click.echo(f"database at revision {current} (head {head}): {database.describe(settings.database_url)}")


# -- connections -----------------------------------------------------------


@main.group()
def connection() -> None:
    """Manage connections (one company file and its dedicated sync user each)."""


@connection.command("add")
@click.argument("name")
@click.option("--user", "username", required=True, help="The dedicated sync user's name (UserName in the .qwc).")
@click.option("--company-file", default="", help='Full path of the company file; default "" = the open company.')
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_context
def connection_add(ctx: _Context, name: str, username: str, company_file: str, password_stdin: bool) -> None:
    """Add a connection; the password is prompted for (or read from stdin), never an argument."""
    password = _read_password(password_stdin)
    with ctx.transaction() as db:
        conn = connections.add_connection(
            db,
            name=name,
            username=username,
            password=password,
            passwords=Passwords.from_settings(ctx.settings),
            now=_now(),
            company_file=company_file,
        )
        click.echo(f"added connection {conn.name!r} for sync user {conn.username!r} (OwnerID {conn.owner_id})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            _fail("no password on stdin")
        return password
    if not sys.stdin.isatty():
        _fail("no terminal to prompt for the password; use --password-stdin")
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail("the password is empty")
    return str(password)


@connection.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_context
def connection_set_password(ctx: _Context, name: str, password_stdin: bool) -> None:
    """Change the sync user's password (then type the same one into the Web Connector)."""
    password = _read_password(password_stdin)
    with ctx.transaction() as db:
        conn = connections.get_connection(db, name)
        connections.set_password(db, conn, password, Passwords.from_settings(ctx.settings), _now())
    click.echo(f"password changed for {conn.name!r}")


@connection.command("set")
@click.argument("name")
@click.option("--enable/--disable", "enabled", default=None, help="A disabled connection answers nvu.")
@click.option("--always-open/--no-always-open", default=None,
              help="Open a session on every poll even with nothing queued (checks QuickBooks opens).")
@click.option("--min-run-every-seconds", type=click.IntRange(min=0), default=None,
              help="Shortest Auto-Run interval the Web Connector may use; 0 removes the limit.")
@click.option("--company-file", default=None, help='Company file path; "" = the open company.')
@pass_context
def connection_set(ctx: _Context, name: str, enabled: bool | None, always_open: bool | None,
                   min_run_every_seconds: int | None, company_file: str | None) -> None:
    """Change a connection's settings."""
    with ctx.transaction() as db:
        conn = connections.get_connection(db, name)
        if enabled is not None:
            conn.enabled = enabled
        if always_open is not None:
            conn.always_open = always_open
        if min_run_every_seconds is not None:
            conn.min_run_every_seconds = min_run_every_seconds or None
        if company_file is not None:
            conn.company_file = company_file.strip()
        conn.updated_at = _now()
        row = _connection_dict(conn)
    click.echo(json.dumps(row, indent=2))


@connection.command("unlock")
@click.argument("name")
@pass_context
def connection_unlock(ctx: _Context, name: str) -> None:
    """Lift brute-force lockouts of a connection and of the addresses that failed against it."""
    with ctx.transaction() as db:
        conn = connections.get_connection(db, name)
        lifted = authentication.unlock(db, conn, _now(), ctx.settings.lockout_max_seconds)
    click.echo(f"lifted {lifted} lockout record{'s' if lifted != 1 else ''} for {name!r}")


@connection.command("show")
@click.argument("name")
@click.option("--events", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many recent authentication results to show.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_context
def connection_show(ctx: _Context, name: str, events: int, as_json: bool) -> None:
    """A connection's settings, active lockouts and recent authentication results."""
    now = _now()
    with ctx.transaction() as db:
        conn = connections.get_connection(db, name)
        row = _connection_dict(conn)
        row["lockouts"] = [
            {"scope": c.scope, "client_address": c.client_address, "locked_until": c.locked_until.isoformat(),
             "level": c.level}
            for c in authentication.lockouts(db, conn, now) if c.locked_until is not None
        ]
        row["auth_events"] = [
            {"at": e.at.isoformat(), "result": e.result, "client_address": e.client_address, "detail": e.detail}
            for e in authentication.recent_events(db, conn, events)
        ]
        row["queued_jobs"] = queue.queued_count(db, conn.id)
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    for key in ("name", "username", "company_file", "enabled", "always_open", "min_run_every_seconds",
                "owner_id", "file_id", "queued_jobs"):
        click.echo(f"{key}: {row[key]}")
    click.echo(f"lockouts: {len(row['lockouts']) or 'none'}")
    for lock in row["lockouts"]:
        click.echo(f"  {lock['client_address'] or '(all addresses)'} until {lock['locked_until']}")
    click.echo("recent authentication results:")
    for event in row["auth_events"]:
        detail = f" ({event['detail']})" if event["detail"] else ""
        click.echo(f"  {event['at']}  {event['result']:<6}  {event['client_address'] or '-'}{detail}")


@connection.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_context
def connection_list(ctx: _Context, as_json: bool) -> None:
    """List connections."""
    with ctx.transaction() as db:
        rows = [_connection_dict(c) for c in connections.list_connections(db)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no connections yet: qwc-service connection add NAME --user USER")
        return
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        company = row["company_file"] or "(the open company file)"
        click.echo(f"{row['name']}\tuser={row['username']}\t{state}\t{company}")


def _connection_dict(conn: Connection) -> dict[str, Any]:
    return {
        "name": conn.name,
        "username": conn.username,
        "company_file": conn.company_file,
        "owner_id": conn.owner_id,
        "file_id": conn.file_id,
        "enabled": conn.enabled,
        "always_open": conn.always_open,
        "min_run_every_seconds": conn.min_run_every_seconds,
        "created_at": conn.created_at.isoformat(),
    }


# -- jobs ------------------------------------------------------------------


@main.command()
@click.argument("name")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--priority", type=int, default=0, show_default=True, help="Higher goes first.")
@pass_context
def enqueue(ctx: _Context, name: str, file: Any, priority: int) -> None:
    """Queue the qbXML in FILE (or - for stdin) for connection NAME; prints the job id."""
    try:
        text = file.read()
    except UnicodeDecodeError as exc:
        _fail(f"{file.name} is not UTF-8 text ({exc.reason} at byte {exc.start})")
    with ctx.transaction() as db:
        conn = connections.get_connection(db, name)
        job = queue.enqueue(db, conn, text, now=_now(), priority=priority).job
        click.echo(job.id)


@main.command()
@click.option("--connection", "connection_name", help="Only this connection's jobs.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in JobState]),
    multiple=True,
    help="Only jobs in this state (repeatable).",
)
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_context
def jobs(ctx: _Context, connection_name: str | None, state: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    with ctx.transaction() as db:
        connection_id = None
        names = {c.id: c.name for c in connections.list_connections(db)}
        if connection_name is not None:
            connection_id = connections.get_connection(db, connection_name).id
        rows = [
            _job_dict(j, names.get(j.connection_id, "?"), payloads=False)
            for j in queue.list_jobs(db, connection_id=connection_id, states=state, limit=limit)
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no jobs")
        return
    for row in rows:
        status = "" if row["status_code"] is None else f" status={row['status_code']}"
        click.echo(f"{row['id']}\t{row['state']}\t{row['connection']}\t{row['request_types']}{status}")


@main.command("job")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_context
def job_show(ctx: _Context, job_id: int, as_json: bool) -> None:
    """Show one job: state, status, error text, request and response."""
    with ctx.transaction() as db:
        job = queue.get_job(db, job_id)
        name = db.get(Connection, job.connection_id).name  # type: ignore[union-attr]
        row = _job_dict(job, name, payloads=True)
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    for key in ("id", "connection", "state", "priority", "request_types", "status_code",
                "status_severity", "status_message", "hresult", "error", "created_at", "finished_at"):
        if row[key] not in (None, ""):
            click.echo(f"{key}: {row[key]}")
    click.echo("request:")
    click.echo(row["request"])
    if row["response"]:
        click.echo("response:")
        click.echo(row["response"])


def _job_dict(job: Job, connection_name: str, *, payloads: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "connection": connection_name,
        "state": job.state,
        "priority": job.priority,
        "request_types": job.request_types,
        "is_write": job.is_write,
        "status_code": job.status_code,
        "status_severity": job.status_severity,
        "status_message": job.status_message,
        "hresult": job.hresult,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "sent_at": job.sent_at.isoformat() if job.sent_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
    if payloads:
        data["request"] = job.request_xml
        data["response"] = job.response_xml
    return data
