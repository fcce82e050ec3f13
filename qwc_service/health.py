"""Is it working? Liveness, readiness, and each connection's pulse.

The usual way a sync dies is quietly: the Windows machine was rebooted, the
Web Connector is not running, QuickBooks is stuck on a dialog. Nothing
errors; the polls just stop. So each connection's health is judged from when
it last authenticated against its schedule: no poll for three times the
schedule is ``overdue``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from . import database, queue
from .models import AuthEvent, AuthResultKind, Connection, Job, JobState, SessionState, WebConnectorSession, as_utc

#: No poll for this many scheduled intervals means the Web Connector has stopped.
OVERDUE_FACTOR = 3
_POLLS = (AuthResultKind.OK.value, AuthResultKind.NONE.value, AuthResultKind.BUSY.value)


@dataclass(frozen=True)
class ConnectionHealth:
    name: str
    enabled: bool
    run_every_seconds: int | None
    last_authenticate: datetime | None
    last_successful_session: datetime | None
    #: True: no poll for three schedules; None: the schedule is unknown.
    overdue: bool | None
    queued: int
    oldest_queued_age_seconds: float | None
    failed: int
    in_doubt: int
    held: int
    warnings: tuple[dict[str, str], ...]
    last_error: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("last_authenticate", "last_successful_session"):
            data[key] = data[key].isoformat() if data[key] else None
        data["warnings"] = list(self.warnings)
        return data


def connection_health(db: Session, connection: Connection, now: datetime) -> ConnectionHealth:
    last_auth = db.scalar(
        select(func.max(AuthEvent.at)).where(AuthEvent.connection_id == connection.id, AuthEvent.result.in_(_POLLS))
    )
    last_good = db.scalar(
        select(func.max(WebConnectorSession.closed_at)).where(
            WebConnectorSession.connection_id == connection.id,
            WebConnectorSession.state == SessionState.CLOSED.value,
            WebConnectorSession.last_error == "",
        )
    )
    latest = db.scalar(
        select(WebConnectorSession).where(WebConnectorSession.connection_id == connection.id)
        .order_by(WebConnectorSession.id.desc()).limit(1)
    )
    counts = dict(db.execute(
        select(Job.state, func.count()).where(Job.connection_id == connection.id).group_by(Job.state)
    ).all())
    oldest = db.scalar(select(func.min(Job.created_at)).where(Job.connection_id == connection.id,
                                                              Job.state == JobState.QUEUED.value))
    return ConnectionHealth(
        name=connection.name,
        enabled=connection.enabled,
        run_every_seconds=connection.run_every_seconds,
        last_authenticate=as_utc(last_auth),
        last_successful_session=as_utc(last_good),
        overdue=is_overdue(connection, as_utc(last_auth), now),
        queued=int(counts.get(JobState.QUEUED.value, 0)),
        oldest_queued_age_seconds=round((now - as_utc(oldest)).total_seconds(), 1) if oldest else None,
        failed=int(counts.get(JobState.FAILED.value, 0)),
        in_doubt=int(counts.get(JobState.IN_DOUBT.value, 0)),
        held=queue.held_count(db, connection.id),
        warnings=tuple((latest.warnings or []) if latest else ()),
        last_error=(latest.last_error.splitlines()[0] if latest and latest.last_error else ""),
    )


def is_overdue(connection: Connection, last_authenticate: datetime | None, now: datetime) -> bool | None:
    """Overdue when no poll came for three schedules (counting from creation if none ever came)."""
    if not connection.enabled or not connection.run_every_seconds:
        return None
    since = last_authenticate or connection.created_at
    return now - since > timedelta(seconds=OVERDUE_FACTOR * connection.run_every_seconds)


def all_connections(db: Session, now: datetime) -> list[ConnectionHealth]:
    return [connection_health(db, c, now) for c in db.scalars(select(Connection).order_by(Connection.name))]


def readiness(engine: Engine) -> tuple[bool, str]:
    """(ready, reason): the database answers and its schema is at the code's migration head."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current, head = database.migration_status(engine)
    except Exception as exc:  # any failure means "not ready"; the reason is for the operator
        return False, f"database unreachable: {exc.__class__.__name__}"
    if current != head:
        return False, f"database at migration {current}, code expects {head}: run 'qwc-service db upgrade'"
    return True, f"ok (migration {head})"
