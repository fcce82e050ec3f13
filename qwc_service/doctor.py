"""``qwc-service doctor``: every check an operator would make, each with its fix.

Read-only. One line per check; the exit status is non-zero when anything
needs attention, and ``--json`` gives monitoring the same findings.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Callable
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import authentication, database, health
from .config import ConfigError, Settings
from .models import Connection, Job, JobState, WebhookDelivery

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def problem(self) -> bool:
        return self.status in (WARN, FAIL)


def examine(environ: dict[str, str] | None = None, now: datetime | None = None) -> list[Finding]:
    from datetime import timezone

    now = now or datetime.now(timezone.utc)
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        return [Finding("configuration", FAIL, str(exc), "correct the variable and run doctor again")]
    findings = [Finding("configuration", OK, f"settings read (database {database.describe(settings.database_url)})")]
    findings += _exposure(settings)
    try:
        engine = database.make_engine(settings.database_url)
        current, head = database.migration_status(engine)
    except Exception as exc:  # any database failure is the finding itself
        findings.append(Finding("database", FAIL, f"cannot reach {database.describe(settings.database_url)}: "
                                f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                                "start the database or correct QWC_DATABASE_URL"))
        return findings
    try:
        if current != head:
            findings.append(Finding("database", FAIL, f"schema at migration {current}, this version needs {head}",
                                    "run 'qwc-service db upgrade' (serve also does it when it starts)"))
            return findings
        findings.append(Finding("database", OK, f"reachable, migration {head}"))
        with database.make_sessionmaker(engine).begin() as db:
            for check in (_connections, _jobs, _webhooks):
                findings += check(db, settings, now)
    finally:
        engine.dispose()
    return findings


def _exposure(settings: Settings) -> list[Finding]:
    findings = []
    url = settings.public_url
    if not url:
        findings.append(Finding("public URL", WARN, "QWC_PUBLIC_URL is not set, so it cannot be checked",
                                "set QWC_PUBLIC_URL to the https address of /qbwc that the Web Connector uses"))
    else:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if _is_ip(host):
            findings.append(Finding("public URL", FAIL, f"{url} uses an IP address; the Web Connector refuses it "
                                    "(QBWC1001)", "use a host name with a certificate"))
        elif parts.scheme != "https" and host != "localhost" and "." in host:
            findings.append(Finding("public URL", FAIL, f"{url} is not https; the Web Connector only allows http "
                                    "for localhost (QBWC1010)", "put the service behind TLS (see docs/deployment.md)"))
        else:
            findings.append(Finding("public URL", OK, url))
    if not settings.status_password:
        findings.append(Finding("status page", INFO, "/status is off", "set QWC_STATUS_PASSWORD to switch it on"))
    if not settings.metrics_token:
        findings.append(Finding("metrics", INFO, "/metrics is open to anyone who can reach the service",
                                "set QWC_METRICS_TOKEN, or restrict /metrics at the proxy"))
    return findings


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _connections(db: Session, settings: Settings, now: datetime) -> list[Finding]:
    rows = list(db.scalars(select(Connection).order_by(Connection.name)))
    if not rows:
        return [Finding("connections", WARN, "no connections yet",
                        "qwc-service connection add NAME --user SYNC_USER")]
    findings = []
    for connection in rows:
        name = f"connection {connection.name}"
        pulse = health.connection_health(db, connection, now)
        if not connection.enabled:
            findings.append(Finding(name, WARN, "disabled: its Web Connector gets nvu",
                                    f"qwc-service connection set {connection.name} --enable"))
            continue
        if not connection.password_hash.startswith("$argon2"):
            findings.append(Finding(name, FAIL, "no usable password hash",
                                    f"qwc-service connection set-password {connection.name}"))
        if pulse.overdue:
            last = pulse.last_authenticate.isoformat() if pulse.last_authenticate else "never"
            findings.append(Finding(name, FAIL, f"overdue: no poll since {last} (schedule every "
                                    f"{connection.run_every_seconds} s)", "check that the Web Connector is running on "
                                    "the QuickBooks machine, with this application ticked and Auto-Run on"))
        elif pulse.overdue is None:
            findings.append(Finding(name, INFO, "schedule unknown, so overdue polls cannot be noticed",
                                    f"qwc-service connection set {connection.name} --run-every-seconds N "
                                    "(the qwc command records it)"))
        else:
            findings.append(Finding(name, OK, f"last poll {pulse.last_authenticate.isoformat() if pulse.last_authenticate else 'pending'}"))
        for warning in pulse.warnings:
            findings.append(Finding(name, WARN, warning["summary"], warning["fix"]))
        for lock in authentication.lockouts(db, connection, now):
            findings.append(Finding(name, WARN, f"locked out after failed logins ({lock.client_address or 'all new addresses'}) "
                                    f"until {lock.locked_until.isoformat() if lock.locked_until else '?'}",
                                    f"if these were your own attempts: qwc-service connection unlock {connection.name}"))
        if pulse.held:
            findings.append(Finding(name, WARN, f"{pulse.held} job(s) held: {pulse.last_error or 'see the jobs'}",
                                    "fix the QuickBooks setting named in the error; the next run releases them"))
    return findings


def _jobs(db: Session, settings: Settings, now: datetime) -> list[Finding]:
    findings = []
    stale = now - timedelta(seconds=settings.session_idle_seconds)
    stuck = list(db.scalars(select(Job.id).where(Job.state == JobState.SENT.value, Job.sent_at < stale)))
    if stuck:
        findings.append(Finding("jobs", FAIL, f"{len(stuck)} job(s) sent more than {settings.session_idle_seconds // 60}"
                                f" min ago without an answer: {_ids(stuck)}",
                                "the next Web Connector run settles them (queries are resent, writes become in_doubt)"
                                "; if no run comes, the Web Connector is not running"))
    doubtful = list(db.scalars(select(Job.id).where(Job.state == JobState.IN_DOUBT.value)))
    if doubtful:
        findings.append(Finding("jobs", FAIL, f"{len(doubtful)} write(s) in doubt: {_ids(doubtful)}",
                                "check in QuickBooks whether each was recorded; then 'qwc-service job retry ID' "
                                "(not there) or 'qwc-service job cancel ID' (already there)"))
    failed = db.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.FAILED.value)) or 0
    if failed:
        findings.append(Finding("jobs", INFO, f"{failed} failed job(s)", "qwc-service jobs --state failed"))
    if not (stuck or doubtful):
        findings.append(Finding("jobs", OK, "nothing stuck or in doubt"))
    return findings


def _webhooks(db: Session, settings: Settings, now: datetime) -> list[Finding]:
    failed = list(db.scalars(select(WebhookDelivery.job_id).where(WebhookDelivery.state == "failed")))
    late = db.scalar(select(func.count()).select_from(WebhookDelivery).where(
        WebhookDelivery.state == "pending", WebhookDelivery.created_at < now - timedelta(hours=1))) or 0
    findings = []
    if failed:
        findings.append(Finding("webhooks", FAIL, f"{len(failed)} delivery(ies) gave up, for job(s) {_ids(failed)}",
                                "check the receiver; the job states are in 'qwc-service job ID'"))
    if late:
        findings.append(Finding("webhooks", WARN, f"{late} delivery(ies) still pending after an hour",
                                "check that the receiver is reachable and answers 2xx"))
    return findings or [Finding("webhooks", OK, "no failed deliveries")]


def _ids(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:10]))
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


Report = Callable[[str], None]


def render(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = []
    for finding in findings:
        line = f"{finding.status.upper():<4}  {finding.check:<{width}}  {finding.message}"
        if finding.fix and finding.status != OK:
            line += f"\n      {'':<{width}}  fix: {finding.fix}"
        lines.append(line)
    problems = sum(f.problem for f in findings)
    lines.append(f"{problems} problem(s) found" if problems else "everything looks fine")
    return "\n".join(lines)
