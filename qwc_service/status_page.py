"""``/status``: one read-only HTML page that tells operators what needs a person.

Syncs rarely fail loudly. The Web Connector stops polling after a reboot, a
write is left in doubt by a dropped session, QuickBooks refuses a job for a
missing permission; each sits quietly until a customer calls. This page puts
all of it on one screen, with the exact command that resolves each item, so
that whoever looks at it can act without reading the code or the docs first.

It is rendered on the server (no JavaScript, no front-end build) so that it
works behind any proxy and in any browser, and every piece of data goes
through ``markupsafe`` escaping: connection names, QuickBooks messages and
error texts come from outside and must never become markup. It is protected
by HTTP Basic auth (``QWC_STATUS_USER``/``QWC_STATUS_PASSWORD``) and is off
(404) until a password is set, because it names customers' company data.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Request, Response

from . import __version__, health, queue
from .config import Settings
from .models import Connection, Job, JobState

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Clock = Callable[[], datetime]

REALM = "qwc-service status"
REFRESH_SECONDS = 60
#: Jobs listed per kind (newest first); the rest are counted and pointed at the CLI.
LIST_LIMIT = 50
#: Every answer of this page carries these: nothing may load from elsewhere,
#: the page may not be framed (clickjacking), and no cache keeps company data.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
DISABLED_TEXT = ("The status page is off: set QWC_STATUS_PASSWORD (and QWC_STATUS_USER, default 'admin') "
                 "and restart qwc-service to switch it on.\n")


def make_status_app(db: sessionmaker[Session], settings: Settings, clock: Clock) -> Callable[..., Iterable[bytes]]:
    """The WSGI app for ``/status``; it only reads the database."""
    return StatusPage(db, settings, clock)


class StatusPage:
    """Authentication, method and header policy in front of ``render``."""

    def __init__(self, db: sessionmaker[Session], settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self._respond(environ)(environ, start_response)

    def _respond(self, environ: dict[str, Any]) -> Response:
        if not self.settings.status_password:
            return _text(DISABLED_TEXT, 404)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in ("GET", "HEAD"):
            response = _text("The status page is read-only: use GET.\n", 405)
            response.headers["Allow"] = "GET, HEAD"
            return response
        if not self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            response = _text("The status page needs the user name and password from QWC_STATUS_USER and "
                             "QWC_STATUS_PASSWORD.\n", 401)
            response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
            return response
        request = Request(environ)
        refresh = request.args.get("refresh", "") != "off"
        try:
            with self.db() as session:
                snapshot = read_snapshot(session, self.clock())
        except Exception:  # the database being down is exactly when operators look here
            log.exception("the status page could not read the database")
            return _text("The status page could not read the database; the server log has the details "
                         "(qwc-service doctor checks the set-up).\n", 503)
        response = Response(render(snapshot, refresh=refresh), content_type="text/html; charset=utf-8")
        response.headers.update(SECURITY_HEADERS)
        return response

    def _authorized(self, header: str) -> bool:
        """Basic auth, compared in constant time.

        Both sides are hashed first, so the comparison takes as long whatever
        the lengths (``compare_digest`` alone returns early on a length
        mismatch), and user and password are both always compared.
        """
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except ValueError:  # bad base64, non-ASCII in the header, or not UTF-8
            return False
        user, colon, password = decoded.partition(":")
        if not colon:
            return False
        user_ok = hmac.compare_digest(_digest(user), _digest(self.settings.status_user))
        password_ok = hmac.compare_digest(_digest(password), _digest(self.settings.status_password))
        return user_ok & password_ok


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _text(text: str, status: int) -> Response:
    response = Response(text, status=status, mimetype="text/plain")
    response.headers.update(SECURITY_HEADERS)
    return response


# -- what the page shows -------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """The columns the page needs; payloads (possibly 100 MB) are never loaded."""

    id: int
    connection: str
    state: str
    request_types: str
    is_write: bool
    error: str | None
    status_code: int | None
    status_severity: str | None
    status_message: str | None
    hresult: str | None
    attempts: int
    held_wall: str | None
    wall_hits: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def explanation(self) -> str:
        """What went wrong, as the queue wrote it for people (or QuickBooks' own words)."""
        if self.error:
            return self.error
        if self.status_code is not None:
            return f"{self.request_types} failed with status {self.status_code}: {self.status_message or ''}"
        if self.hresult:
            return f"{self.request_types} was refused with HRESULT {self.hresult}: {self.status_message or ''}"
        return "No explanation was recorded; 'qwc-service job ID' shows the job's history."


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    connections: list[health.ConnectionHealth]
    in_doubt: list[JobRow]
    failed: list[JobRow]
    held: list[JobRow]

    @property
    def totals(self) -> dict[str, int]:
        return {
            "failed": sum(c.failed for c in self.connections),
            "in_doubt": sum(c.in_doubt for c in self.connections),
            "held": sum(c.held for c in self.connections),
        }


def read_snapshot(db: Session, now: datetime) -> Snapshot:
    """Everything the page shows, read in one session."""
    return Snapshot(
        now=now,
        connections=health.all_connections(db, now),
        in_doubt=_jobs(db, Job.state == JobState.IN_DOUBT.value),
        failed=_jobs(db, Job.state == JobState.FAILED.value),
        held=_explain_held(db, _jobs(db, Job.state == JobState.QUEUED.value, Job.held_wall.is_not(None))),
    )


def _explain_held(db: Session, held: list[JobRow]) -> list[JobRow]:
    """Jobs held because *another* job hit the wall carry no error: lend them that job's words.

    Only the job QuickBooks actually refused records the reason; the ones
    held alongside it would otherwise show no explanation at all.
    """
    walls = {(job.connection, job.held_wall) for job in held if not job.error}
    if not walls:
        return held
    reasons: dict[tuple[str, str | None], tuple[int, str]] = {}
    rows = db.execute(select(Job.id, Connection.name, Job.held_wall, Job.error)
                      .join(Connection, Connection.id == Job.connection_id)
                      .where(Job.state == JobState.QUEUED.value, Job.held_wall.in_({w for _, w in walls}),
                             Job.error.is_not(None)).order_by(Job.id.desc()))
    for job_id, connection, wall, error in rows:
        reasons.setdefault((connection, wall), (job_id, error))
    explained = []
    for job in held:
        found = reasons.get((job.connection, job.held_wall))
        if not job.error and found:
            job = dataclasses.replace(job, error=f"Held because job {found[0]} hit the same problem: {found[1]}")
        elif not job.error:
            job = dataclasses.replace(job, error=f"Held behind {job.held_wall}, a problem that would refuse it too.")
        explained.append(job)
    return explained


def _jobs(db: Session, *conditions: Any) -> list[JobRow]:
    columns = (Job.id, Connection.name, Job.state, Job.request_types, Job.is_write, Job.error, Job.status_code,
               Job.status_severity, Job.status_message, Job.hresult, Job.attempts, Job.held_wall, Job.wall_hits,
               Job.created_at, Job.updated_at, Job.finished_at)
    rows = db.execute(select(*columns).join(Connection, Connection.id == Job.connection_id).where(*conditions)
                      .order_by(Job.id.desc()).limit(LIST_LIMIT))
    return [JobRow(*row) for row in rows]


# -- rendering -------------------------------------------------------------------------
#
# Every template below is a Markup literal and every value goes in through
# Markup.format / Markup.join, which escape anything that is not already
# Markup: there is no path by which data becomes markup.

STYLE = Markup("""
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:1rem 1.5rem 3rem;color:#1d1d1f;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:2px solid #ddd}
h3{font-size:1.05rem;margin:1.2rem 0 .4rem}
.meta{color:#555;margin:.2rem 0 1rem}
.banner{padding:.7rem 1rem;border-radius:6px;margin:.6rem 0;font-weight:600}
.banner.bad{background:#b00020;color:#fff}.banner.good{background:#e6f4ea;color:#0b5b22}
.banner .badge.overdue{background:#fff;color:#b00020}
.banner ul{margin:.3rem 0 0;padding-left:1.2rem;font-weight:400}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e3e3e3;
vertical-align:top}th{background:#f4f4f6;font-weight:600}
tr.overdue td{background:#fde7ea}
tr.with-error td{border-bottom:0}
td.session-error{color:#7a1020;font-size:.92rem;border-top:0;padding-top:0;overflow-wrap:anywhere}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:4px;font-weight:700;font-size:.85rem;white-space:nowrap}
.badge.overdue{background:#b00020;color:#fff}.badge.ok{background:#e6f4ea;color:#0b5b22}
.badge.unknown{background:#fff4ce;color:#6b4e00}.badge.disabled{background:#e3e3e3;color:#444}
.badge.warn{background:#fff4ce;color:#6b4e00}
.num-bad{color:#b00020;font-weight:700}
.hint{color:#555;font-size:.9rem}
article{border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;padding:.6rem .9rem;margin:.6rem 0}
article.failed{border-left-color:#b00020}article.in_doubt{border-left-color:#d35400}
article.held{border-left-color:#c9a400}article.warning{border-left-color:#c9a400}
article h4{margin:0 0 .3rem;font-size:.95rem;color:#444;font-weight:600}
.first-line{font-size:1.05rem;font-weight:600;margin:.2rem 0 .5rem;overflow-wrap:anywhere}
.resolve{background:#f4f4f6;border-radius:4px;padding:.45rem .6rem;margin:.4rem 0}
.resolve ul{margin:.2rem 0 0;padding-left:1.2rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;background:#eceef1;
padding:.05rem .3rem;border-radius:3px;overflow-wrap:anywhere}
details{margin:.3rem 0}summary{cursor:pointer;color:#333}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f9;padding:.5rem;border-radius:4px;margin:.3rem 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .8rem;margin:.3rem 0}
dl.facts dt{color:#555}dl.facts dd{margin:0}
.empty{color:#333;background:#f4f4f6;padding:.6rem .9rem;border-radius:6px}
footer{margin-top:2.5rem;color:#777;font-size:.85rem}
""")


def render(snapshot: Snapshot, *, refresh: bool = True) -> str:
    """The whole page as a string of safe HTML."""
    now = snapshot.now
    refresh_tag = Markup('<meta http-equiv="refresh" content="{}">').format(REFRESH_SECONDS) if refresh else Markup("")
    refresh_note = (Markup('Refreshes every minute (<a href="?refresh=off">stop</a>).') if refresh
                    else Markup('Auto-refresh is off (<a href="?">turn on</a>).'))
    body = Markup("").join([
        Markup('<header><h1>qwc-service status</h1><p class="meta">As of {} · {}</p>{}</header>').format(
            _time_tag(now), refresh_note, _banner(snapshot)),
        _connections_section(snapshot),
        _warnings_section(snapshot),
        _jobs_section(snapshot),
        Markup("<footer>qwc-service {} · read-only · every job: <code>qwc-service jobs --state STATE</code>, "
               "one job with its request and QuickBooks' answer: <code>qwc-service job ID</code></footer>")
        .format(__version__),
    ])
    return str(Markup(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">{}'
        '<meta name="robots" content="noindex">'
        "<title>{}qwc-service status</title><style>{}</style></head>\n<body>{}</body></html>\n"
    ).format(refresh_tag, _title_prefix(snapshot), STYLE, body))


def _title_prefix(snapshot: Snapshot) -> str:
    """The tab title counts the problems, so a pinned tab shows trouble at a glance."""
    problems = len(_attention(snapshot))
    return f"({problems}) " if problems else ""


def _attention(snapshot: Snapshot) -> list[Markup]:
    """One line per connection that needs a person, worst news first within the line."""
    lines = []
    for c in snapshot.connections:
        parts = []
        if c.overdue:
            parts.append(Markup('<span class="badge overdue">OVERDUE</span> {}').format(
                _silence(c, snapshot.now)))
        for count, label in ((c.in_doubt, "in doubt"), (c.failed, "failed"), (c.held, "held")):
            if count:
                parts.append(Markup("{} {} {}").format(count, "job" if count == 1 else "jobs", label))
        if c.warnings:
            parts.append(Markup("{} preflight {}").format(len(c.warnings),
                                                          "warning" if len(c.warnings) == 1 else "warnings"))
        if parts:
            lines.append(Markup("<li><strong>{}</strong>: {}</li>").format(c.name, Markup(", ").join(parts)))
    return lines


def _banner(snapshot: Snapshot) -> Markup:
    if not snapshot.connections:
        return Markup("")
    lines = _attention(snapshot)
    if not lines:
        return Markup('<div class="banner good">All {} {} on schedule; nothing needs a person.</div>').format(
            len(snapshot.connections), "connection" if len(snapshot.connections) == 1 else "connections")
    return Markup('<div class="banner bad">{} {} attention<ul>{}</ul></div>').format(
        len(lines), "connection needs" if len(lines) == 1 else "connections need", Markup("").join(lines))


def _connections_section(snapshot: Snapshot) -> Markup:
    if not snapshot.connections:
        return Markup(
            '<section id="connections"><h2>Connections</h2><p class="empty">No connections yet: '
            "<code>qwc-service connection add NAME --user SYNC-USER</code> adds one (one company file, one "
            "dedicated QuickBooks sync user); then <code>qwc-service qwc NAME --url https://YOUR-HOST/qbwc</code> "
            "writes the .qwc file for the Web Connector.</p></section>")
    rows = Markup("").join(_connection_row(c, snapshot.now) for c in snapshot.connections)
    return Markup(
        '<section id="connections"><h2>Connections</h2><table><thead><tr><th>Connection</th><th>Sync</th>'
        "<th>Last poll<br><span class=hint>(authenticate)</span></th><th>Last successful session</th>"
        "<th>Queued</th><th>Oldest queued</th><th>Failed</th><th>In doubt</th><th>Held</th></tr></thead>"
        "<tbody>{}</tbody></table></section>").format(rows)


def _connection_row(c: health.ConnectionHealth, now: datetime) -> Markup:
    name = shlex.quote(c.name)
    if not c.enabled:
        status = Markup('<span class="badge disabled">disabled</span><div class=hint>its Web Connector gets '
                        "nvu; <code>qwc-service connection set {} --enable</code></div>").format(name)
    elif c.overdue:
        status = Markup('<span class="badge overdue">OVERDUE</span><div class=hint>{} (expected every {}). '
                        "Check the QuickBooks machine: is the Web Connector running, with this application ticked "
                        "and Auto-Run on? Is QuickBooks stuck on a dialog?</div>").format(
            _silence(c, now), _duration(c.run_every_seconds or 0))
    elif c.overdue is None:
        status = Markup('<span class="badge unknown">schedule unknown</span><div class=hint>a stopped Web '
                        "Connector cannot be noticed: <code>qwc-service connection set {} --run-every-seconds N"
                        "</code> (the qwc command records it)</div>").format(name)
    else:
        status = Markup('<span class="badge ok">on schedule</span><div class=hint>every {}</div>').format(
            _duration(c.run_every_seconds or 0))
    # The latest session's error can be the only trace of a problem (QuickBooks would not open, so
    # every job is still queued), so it gets a full-width line of its own under the row.
    error = (Markup('<tr class="{}"><td></td><td colspan="8" class="session-error"><strong>Last session ended '
                    "with:</strong> {}</td></tr>").format("overdue" if c.overdue else "", c.last_error)
             if c.last_error else Markup(""))
    oldest = _duration(c.oldest_queued_age_seconds) if c.oldest_queued_age_seconds is not None else "–"
    return Markup(
        '<tr class="{}"><td><strong>{}</strong></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
        "<td>{}</td><td>{}</td><td>{}</td></tr>{}").format(
        " ".join(filter(None, ["overdue" if c.overdue else "", "with-error" if c.last_error else ""])), c.name,
        status, _when(c.last_authenticate, now, "never"),
        _when(c.last_successful_session, now, "never"), c.queued, oldest, _count(c.failed), _count(c.in_doubt),
        _count(c.held), error)


def _warnings_section(snapshot: Snapshot) -> Markup:
    items = []
    for c in snapshot.connections:
        for warning in c.warnings:
            items.append(Markup(
                '<article class="warning"><h4>{} · <span class="badge warn">{}</span></h4>'
                '<p class="first-line">{}</p><div class="resolve"><strong>Fix:</strong> {}</div></article>'
            ).format(c.name, warning.get("code", "warning"), warning.get("summary", ""), warning.get("fix", "")))
    if not items:
        body = Markup('<p class="empty">None: the latest session of every connection found QuickBooks set up as '
                      "expected (or no session has run yet).</p>")
    else:
        body = Markup("").join(items)
    return Markup('<section id="warnings"><h2>Preflight warnings</h2><p class=hint>What QuickBooks said about '
                  "itself at the start of each connection's latest session that predicts failures.</p>{}"
                  "</section>").format(body)


def _jobs_section(snapshot: Snapshot) -> Markup:
    totals = snapshot.totals
    if not any(totals.values()):
        return Markup('<section id="jobs"><h2>Jobs that need a person</h2><p class="empty">Nothing needs a '
                      "person: no failed, in-doubt or held jobs.</p></section>")
    parts = [Markup('<section id="jobs"><h2>Jobs that need a person</h2>')]
    parts.append(_job_group(
        "in_doubt", "In doubt", snapshot.in_doubt, totals["in_doubt"], snapshot.now,
        Markup("A session ended before QuickBooks' answer came back, so QuickBooks may or may not have applied "
               "these writes. They are never sent again by themselves. For each one, <strong>check in QuickBooks"
               "</strong> whether it was recorded: if it is <strong>not there</strong>, retry it (it is sent "
               "again); if it <strong>is there</strong>, cancel it (it is never sent)."),
    ))
    parts.append(_job_group(
        "failed", "Failed", snapshot.failed, totals["failed"], snapshot.now,
        Markup("QuickBooks refused these (or a job they waited for failed). Fix the cause the message names, "
               "then retry; a failed job is never sent again by itself."),
    ))
    parts.append(_job_group(
        "held", "Held", snapshot.held, totals["held"], snapshot.now,
        Markup("Queued jobs waiting behind a problem that would refuse them all (a missing permission, the wrong "
               "company file). Fix it in QuickBooks: the next Web Connector run sends one of them to check and "
               "releases the rest when it succeeds. After {} runs in a row at the same problem they fail.").format(
            queue.MAX_WALL_HITS),
    ))
    parts.append(Markup("</section>"))
    return Markup("").join(parts)


def _job_group(kind: str, title: str, jobs: Sequence[JobRow], total: int, now: datetime,
               explanation: Markup) -> Markup:
    if not total:
        return Markup("")
    more = (Markup('<p class=hint>Showing the newest {} of {}: <code>qwc-service jobs --state {}</code> lists '
                   "them all.</p>").format(len(jobs), total, JobState(kind).value) if total > len(jobs) else Markup(""))
    return Markup('<h3 id="{}">{} ({})</h3><p class=hint>{}</p>{}{}').format(
        kind.replace("_", "-"), title, total, explanation, Markup("").join(_job(job, now) for job in jobs), more)


def _job(job: JobRow, now: datetime) -> Markup:
    first, _, rest = job.explanation.strip().partition("\n")
    facts = [("Connection", job.connection), ("Requests", job.request_types or "?"),
             ("Kind", "write" if job.is_write else "query"), ("Queued", _when(job.created_at, now, "?"))]
    if job.status_code is not None:
        facts.append(("QuickBooks status", f"{job.status_code} ({job.status_severity or '?'}): "
                                           f"{job.status_message or ''}"))
    if job.hresult:
        facts.append(("HRESULT", f"{job.hresult}: {job.status_message or ''}"))
    if job.attempts:
        facts.append(("Attempts", str(job.attempts)))
    if job.held_wall:
        facts.append(("Held behind", f"{job.held_wall} ({job.wall_hits} of {queue.MAX_WALL_HITS} runs)"))
    details = Markup("<details><summary>Details</summary>{}<dl class=facts>{}</dl><p class=hint>The request "
                     "and QuickBooks' answer: <code>qwc-service job {}</code></p></details>").format(
        Markup("<pre>{}</pre>").format(rest.strip()) if rest.strip() else Markup(""),
        Markup("").join(Markup("<dt>{}</dt><dd>{}</dd>").format(k, v) for k, v in facts), job.id)
    if job.state == JobState.QUEUED.value:  # held: when it was queued is what ages
        label, when = "held, queued", job.created_at
    else:
        label, when = ("in doubt since" if job.state == JobState.IN_DOUBT.value else "failed"), job.finished_at
    return Markup('<article class="{}" id="job-{}"><h4>Job {} · {} · {} · {} {}</h4><p class="first-line">{}</p>'
                  '{}<div class="resolve">{}</div></article>').format(
        "held" if job.state == JobState.QUEUED.value else job.state, job.id, job.id, job.connection,
        job.request_types or "?", label, _when_inline(when, now), first, details, _resolve(job))


def _resolve(job: JobRow) -> Markup:
    """The exact commands that settle the job, with when to use which."""
    retry = Markup("<code>qwc-service job retry {}</code>").format(job.id)
    cancel = Markup("<code>qwc-service job cancel {}</code>").format(job.id)
    if job.state == JobState.IN_DOUBT.value:
        return Markup("<strong>Resolve:</strong> check in QuickBooks whether this {} was recorded.<ul>"
                      "<li>Not there: {} sends it again.</li><li>Already there: {} marks it settled; it is never "
                      "sent.</li></ul>").format(job.request_types.replace(" ", ", ") or "write", retry, cancel)
    if job.state == JobState.FAILED.value:
        return Markup("<strong>Resolve:</strong> fix the cause above, then {} sends it again; or, if it should "
                      "not be sent at all, {} dismisses it.").format(retry, cancel)
    return Markup("<strong>Resolve:</strong> fix the cause above; the next Web Connector run tries again by "
                  "itself. To withdraw this job instead: {}.").format(cancel)


def _count(n: int) -> Markup:
    return Markup('<span class="num-bad">{}</span>').format(n) if n else Markup("0")


def _time_tag(moment: datetime) -> Markup:
    moment = _utc(moment)
    return Markup('<time datetime="{}">{}</time>').format(moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M UTC"))


def _when(moment: datetime | None, now: datetime, missing: str) -> Markup:
    if moment is None:
        return Markup("{}").format(missing)
    return Markup("{}<br><span class=hint>{}</span>").format(_time_tag(moment), _ago(moment, now))


def _silence(c: health.ConnectionHealth, now: datetime) -> str:
    """How long the Web Connector has been silent, in words."""
    if c.last_authenticate is None:
        return "the Web Connector has never polled"
    return f"no poll for {_duration((_utc(now) - _utc(c.last_authenticate)).total_seconds())}"


def _when_inline(moment: datetime | None, now: datetime) -> Markup:
    if moment is None:
        return Markup("?")
    return Markup("{} ({})").format(_time_tag(moment), _ago(moment, now))


def _ago(moment: datetime, now: datetime) -> str:
    seconds = (_utc(now) - _utc(moment)).total_seconds()
    if seconds < 60:
        return "just now"
    return f"{_duration(seconds)} ago"


def _duration(seconds: float) -> str:
    """A short human duration: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(s // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


__all__ = ["make_status_app", "read_snapshot", "render", "StatusPage", "Snapshot", "JobRow"]
