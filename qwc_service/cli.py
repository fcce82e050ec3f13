"""The ``qwc-service`` command line.

Every command reads the same ``QWC_*`` settings as the server, migrates the
database if it is behind (so the first command on a fresh machine just
works), and reports bad input as one line on stderr with a non-zero exit,
never a traceback. ``--json`` prints exactly one JSON document for scripts.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from . import __version__, authentication, connections, database, logs, queue, sessions
from .config import ConfigError, Settings
from .database import DatabaseError
from .exceptions import QwcError
from .client import QueueClient
from .models import Connection, JobState
from .passwords import Passwords

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns our deliberate errors into one clear line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (QwcError, ConfigError, DatabaseError) as exc:
            _fail(str(exc))
        except ValueError as exc:  # e.g. an unknown state name from the Python client
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
    logs.configure(settings)
    service = server.build(settings)
    httpd = server.make_server(
        service, host or settings.host, settings.port if port is None else port, threads=threads
    )
    click.echo(
        f"qwc-service {__version__} serving http://{host or settings.host}:{httpd.effective_port}/qbwc "
        f"(database: {database.describe(settings.database_url)})"
    )
    from . import webhooks

    worker = webhooks.start_worker(service)  # webhook deliveries go out beside the QBWC calls, never inside
    try:
        httpd.run()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
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


def _read_password(from_stdin: bool, confirm: bool = True) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            _fail("no password on stdin")
        return password
    if not sys.stdin.isatty():
        _fail("no terminal to prompt for the password; use --password-stdin")
    password = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
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
@click.option("--webhook-url", default=None, help='URL called when any of its jobs settles; "" removes it.')
@click.option("--run-every-seconds", type=click.IntRange(min=0), default=None,
              help="The Web Connector's schedule (the qwc command records it); 0 = unknown. Used for 'overdue'.")
@click.option("--qb-user", default=None,
              help='The QuickBooks user expected to run the sync ("Login as"); "" = named like the sync user.')
@pass_context
def connection_set(ctx: _Context, name: str, enabled: bool | None, always_open: bool | None,
                   min_run_every_seconds: int | None, company_file: str | None, webhook_url: str | None,
                   run_every_seconds: int | None, qb_user: str | None) -> None:
    """Change a connection's settings."""
    with ctx.transaction() as db:
        conn = connections.get_connection(db, name)
        if run_every_seconds is not None:
            conn.run_every_seconds = run_every_seconds or None
        if qb_user is not None:
            conn.qb_user = qb_user.strip() or None
        if webhook_url is not None:
            connections.set_webhook(db, conn, webhook_url, _now())
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
        row["held_jobs"] = queue.held_count(db, conn.id)
        last = sessions.latest(db, conn.id)
        row["last_session"] = None if last is None else {
            "started_at": last.created_at.isoformat(), "state": last.state, "jobs_done": last.jobs_done,
            "jobs_failed": last.jobs_failed, "last_error": last.last_error.splitlines()[0] if last.last_error else "",
            "quickbooks": (last.host_facts or {}).get("product_name", ""), "warnings": last.warnings or [],
        }
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    for key in ("name", "username", "qb_user", "company_file", "enabled", "always_open", "min_run_every_seconds",
                "owner_id", "file_id", "webhook_url", "webhook_secret", "queued_jobs", "held_jobs"):
        click.echo(f"{key}: {row[key]}")
    last = row["last_session"]
    if last:
        click.echo(f"last session: {last['started_at']} {last['state']}, {last['jobs_done']} done, "
                   f"{last['jobs_failed']} failed {('- ' + last['last_error']) if last['last_error'] else ''}")
        for warning in last["warnings"]:
            click.echo(f"  warning: {warning['summary']}\n    fix: {warning['fix']}")
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
        "webhook_url": conn.webhook_url,
        "webhook_secret": conn.webhook_secret,
        "qb_user": conn.qb_user or conn.username,
        "run_every_seconds": conn.run_every_seconds,
        "created_at": conn.created_at.isoformat(),
    }


# -- jobs ------------------------------------------------------------------


def _client(ctx: _Context) -> QueueClient:
    return QueueClient(engine=ctx.engine, migrate=False)


def _parse_time(value: str) -> datetime:
    """ISO 8601 (UTC when no zone is given) or a delay from now such as 90s, 10m, 2h, 1d."""
    delay = _parse_duration(value, required=False)
    if delay is not None:
        return _now() + delay
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither an ISO 8601 time nor a delay like 10m") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _parse_duration(value: str, required: bool = True) -> timedelta | None:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = value[:-1], value[-1:].lower()
    if unit in units and number.isdigit():
        return timedelta(**{units[unit]: int(number)})
    if required:
        raise click.BadParameter(f"{value!r} is not a duration like 30d, 12h, 90m or 45s")
    return None


@main.command()
@click.argument("name")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--priority", type=int, default=0, show_default=True, help="Higher goes first.")
@click.option("--after", "after", type=int, multiple=True, metavar="ID",
              help="Wait until job ID is done (repeatable); fail if it fails or is cancelled.")
@click.option("--key", help="Dedupe key: while a queued job has this key, return it instead of adding one.")
@click.option("--replace", is_flag=True, help="With --key: give the queued job this payload.")
@click.option("--not-before", "not_before", help="Do not send before this time (ISO 8601, or a delay like 10m).")
@click.option("--page-size", type=click.IntRange(1, 100000), help="Page a single query with an iterator.")
@click.option("--webhook", "webhook_url", help="URL called when the job is settled.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as one JSON document instead of its id.")
@pass_context
def enqueue(ctx: _Context, name: str, file: Any, priority: int, after: tuple[int, ...], key: str | None,
            replace: bool, not_before: str | None, page_size: int | None, webhook_url: str | None,
            as_json: bool) -> None:
    """Queue the qbXML in FILE (or - for stdin) for connection NAME; prints the job id."""
    try:
        text = file.read()
    except UnicodeDecodeError as exc:
        _fail(f"{file.name} is not UTF-8 text ({exc.reason} at byte {exc.start})")
    if replace and key is None:
        _fail("--replace needs --key")
    when = _parse_time(not_before) if not_before else None
    info = _client(ctx).enqueue(name, text, priority=priority, after=after, key=key, replace=replace,
                                not_before=when, page_size=page_size, webhook_url=webhook_url)
    for warning in info.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not info.created:
        click.echo(f"note: job {info.id} with key {key!r} is still queued; "
                   f"{'its payload was replaced' if replace else 'no new job was added'}", err=True)
    click.echo(json.dumps(info.to_dict(), indent=2) if as_json else info.id)


@main.command()
@click.option("--connection", "connection_name", help="Only this connection's jobs.")
@click.option("--state", type=click.Choice([s.value for s in JobState]), multiple=True,
              help="Only jobs in this state (repeatable).")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--before", "before_id", type=int, help="Only jobs with a smaller id (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_context
def jobs(ctx: _Context, connection_name: str | None, state: tuple[str, ...], limit: int, before_id: int | None,
         as_json: bool) -> None:
    """List jobs, newest first."""
    infos = _client(ctx).list(connection=connection_name, states=state, limit=limit, before_id=before_id)
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    if not infos:
        click.echo("no jobs")
        return
    for info in infos:
        status = "" if info.status_code is None else f" status={info.status_code}"
        click.echo(f"{info.id}\t{info.state}\t{info.connection}\t{' '.join(info.request_types)}{status}")


class _JobGroup(click.Group):
    """``job ID`` shows a job; ``job retry ID`` and ``job cancel ID`` act on it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@main.group("job", cls=_JobGroup)
def job_group() -> None:
    """Show one job (job ID), or resolve it (job retry ID, job cancel ID)."""


@job_group.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_context
def job_show(ctx: _Context, job_id: int, as_json: bool) -> None:
    """State, status code and message, error text, history, request and response."""
    info = _client(ctx).get(job_id)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    row = info.to_dict()
    for key in ("id", "connection", "state", "priority", "request_types", "after", "dedupe_key", "not_before",
                "attempts", "status_code", "status_severity", "status_message", "hresult", "error", "created_at",
                "finished_at"):
        value = row.get(key)
        if value not in (None, "", [], 0) or key in ("id", "state"):
            click.echo(f"{key}: {' '.join(map(str, value)) if isinstance(value, list) else value}")
    click.echo("history:")
    for event in info.history:
        click.echo(f"  {event.at.isoformat()}  {event.from_state or '-'} -> {event.to_state}  {event.reason}")
    click.echo("request:")
    click.echo(info.request or "(pruned)")
    if info.response:
        click.echo("response:")
        click.echo(info.response)


@job_group.command("cancel")
@click.argument("job_id", type=int)
@pass_context
def job_cancel(ctx: _Context, job_id: int) -> None:
    """Withdraw a queued job, settle an in-doubt write already in QuickBooks, or dismiss a failed job."""
    info = _client(ctx).cancel(job_id)
    click.echo(f"job {info.id} cancelled")


@job_group.command("retry")
@click.argument("job_id", type=int)
@pass_context
def job_retry(ctx: _Context, job_id: int) -> None:
    """Queue a failed job again, or resend an in-doubt write that QuickBooks does not have."""
    info = _client(ctx).retry(job_id)
    click.echo(f"job {info.id} queued again")


main.add_command(job_cancel, "cancel")
main.add_command(job_retry, "retry")


@main.command()
@click.option("--older-than", "older_than", required=True, help="Age of finished jobs to prune, e.g. 30d.")
@pass_context
def prune(ctx: _Context, older_than: str) -> None:
    """Remove the request and response of jobs finished longer ago than --older-than, and older
    authentication events (each connection keeps its newest success from every address)."""
    age = _parse_duration(older_than)
    assert age is not None
    cutoff = _now() - age
    with ctx.transaction() as db:
        count = queue.prune(db, cutoff)
        events = authentication.prune_events(db, cutoff)
    click.echo(f"pruned the payloads of {count} finished job{'s' if count != 1 else ''}")
    click.echo(f"removed {events} authentication event{'s' if events != 1 else ''}")


#: Jobs each scenario queues when you run it, so there is something to watch.
_DEMO_JOBS = {
    "happy": ["<CustomerQueryRq><MaxReturned>10</MaxReturned></CustomerQueryRq>",
              "<CustomerAddRq><CustomerAdd><Name>Demo Customer {n}</Name></CustomerAdd></CustomerAddRq>",
              "<ItemQueryRq/>"],
    "permission-denied": ["<CustomerQueryRq><MaxReturned>5</MaxReturned></CustomerQueryRq>",
                          "<CustomerAddRq><CustomerAdd><Name>Demo Customer {n}</Name></CustomerAdd></CustomerAddRq>"],
    "wrong-login-user": ["<CustomerQueryRq><MaxReturned>5</MaxReturned></CustomerQueryRq>"],
    "quickbooks-not-running": ["<CustomerQueryRq><MaxReturned>5</MaxReturned></CustomerQueryRq>"],
    "iterator": [],  # a paged InvoiceQuery, added below
    "dropped-connection": ["<CustomerAddRq><CustomerAdd><Name>Demo Customer {n}</Name></CustomerAdd></CustomerAddRq>"],
    "crash": ["<CustomerAddRq><CustomerAdd><Name>Demo Customer {n}</Name></CustomerAdd></CustomerAddRq>"],
}
_DEMO_KEY = "simulate:"


@main.command()
@click.argument("name")
@click.option("--url", help="The service's /qbwc URL (default: http://127.0.0.1:QWC_PORT/qbwc).")
@click.option("--password-stdin", is_flag=True, help="Read the sync user's password from stdin.")
@click.option("--scenario", default="happy", show_default=True,
              type=click.Choice(["happy", "permission-denied", "wrong-login-user", "quickbooks-not-running",
                                 "iterator", "dropped-connection", "crash"]),
              help="What the simulated QuickBooks and Web Connector do.")
@click.option("--use-queued-jobs", is_flag=True,
              help="Let the simulation take the connection's real queued jobs (they get simulated answers!).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole conversation as one JSON document.")
@pass_context
def simulate(ctx: _Context, name: str, url: str | None, password_stdin: bool, scenario: str,
             use_queued_jobs: bool, as_json: bool) -> None:
    """Run one Web Connector session against a running server, with a simulated QuickBooks.

    It queues a few demonstration jobs for connection NAME, plays the Web
    Connector (real HTTP, QBWC's envelopes and call order) with an in-memory
    QuickBooks, prints the conversation and the status QBWC would show, then
    withdraws whatever demonstration jobs are left. Exits 1 if the session
    ended in error.
    """
    from .simulator import FakeWebConnector, Outcome, QuickBooksProfile, build_scenario
    from .simulator import format_transcript, result_to_dict

    password = _read_password(password_stdin, confirm=False)
    client = _client(ctx)
    with ctx.transaction() as db:
        conn = connections.get_connection(db, name)
        username, owner_id, file_id = conn.username, conn.owner_id, conn.file_id
        qb_user = conn.qb_user or conn.username
    real = [j for j in client.list(connection=name, states=["queued"], limit=1000)
            if not (j.dedupe_key or "").startswith(_DEMO_KEY)]
    if real and not use_queued_jobs:
        _fail(f"connection {name!r} has {len(real)} queued job(s) that a simulated QuickBooks would answer; "
              "use a demonstration connection, or pass --use-queued-jobs if that is really what you want")
    stamp = _now().strftime("%H%M%S")
    demo = [client.enqueue(name, text.format(n=stamp), key=f"{_DEMO_KEY}{scenario}:{i}:{stamp}")
            for i, text in enumerate(_DEMO_JOBS[scenario])]
    if scenario == "iterator":
        demo.append(client.enqueue(name, "<InvoiceQueryRq/>", page_size=10, key=f"{_DEMO_KEY}iterator:{stamp}"))
    # QuickBooks opened unattended as the expected user: only the scenario's own trouble shows.
    profile = QuickBooksProfile(owner_id=owner_id, file_id=file_id, is_automatic_login=True,
                                is_automatic_login_allowed=True, automatic_login_user_name=qb_user)
    quickbooks, faults = build_scenario(scenario, profile=profile)
    target = url or f"http://127.0.0.1:{ctx.settings.port}/qbwc"
    try:
        result = FakeWebConnector(target, quickbooks, faults=faults, username=username, password=password,
                                  noop_wait=1.0).run()
    finally:
        leftovers = [client.get(j.id, payloads=False) for j in demo]
        for job in leftovers:
            if job.state in ("queued", "in_doubt"):
                client.cancel(job.id)
    if as_json:
        data = result_to_dict(result)
        data["jobs"] = [j.to_dict() for j in leftovers]
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"Simulated Web Connector -> {target}  (scenario: {scenario})")
        click.echo(format_transcript(result))
        click.echo("Jobs:")
        for job in leftovers:
            withdrawn = " (withdrawn after the simulation)" if job.state in ("queued", "in_doubt") else ""
            click.echo(f"  job {job.id} {' '.join(job.request_types)}: {job.state}{withdrawn}")
            if job.error:
                click.echo("    " + job.error.splitlines()[0])
    if result.outcome not in (Outcome.OK, Outcome.NONE):
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON document.")
def doctor(as_json: bool) -> None:
    """Check configuration, database, public URL, connections, stuck jobs and webhooks; exit 1 on problems."""
    from . import doctor as checks

    findings = checks.examine()
    problems = any(f.problem for f in findings)
    if as_json:
        click.echo(json.dumps({"ok": not problems, "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        click.echo(checks.render(findings))
    if problems:
        sys.exit(1)


@main.command()
@click.argument("code", required=False)
@click.option("--all", "everything", is_flag=True,
              help="Print the whole troubleshooting guide (every code and preflight warning) as Markdown.")
def explain(code: str | None, everything: bool) -> None:
    """Explain a QuickBooks status code, HRESULT or QBWC code, offline."""
    from . import diagnosis

    if everything:
        click.echo(troubleshooting_guide(), nl=False)
    elif code:
        click.echo(diagnosis.explain(code))
    else:
        _fail("give a code (e.g. 3260, 0x80040408, QBWC1012) or --all")


def troubleshooting_guide() -> str:
    """docs/troubleshooting.md: the code catalog, then the preflight warnings."""
    from . import diagnosis, preflight

    return diagnosis.troubleshooting_markdown().rstrip("\n") + "\n\n" + preflight.markdown()


from . import tokens  # noqa: E402  (kept beside its one use)

main.add_command(tokens.token_cli, "token")

from . import qwcfile  # noqa: E402  (kept beside its one use)

main.add_command(qwcfile.qwc_command, "qwc")
