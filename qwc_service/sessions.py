"""Web Connector sessions and their tickets.

A ticket is the only thing that ties the calls of one Web Connector run
together, so it is unguessable (192 random bits), stored only as a SHA-256
hash, bound to one connection, and dead after closeConnection, after
``session_idle_seconds`` without a call, or after ``session_lifetime_seconds``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import metrics, queue
from .config import Settings
from .models import Connection, SessionState, WebConnectorSession


def new_ticket() -> str:
    return secrets.token_urlsafe(24)


#: Marks tickets handed out with "none" or "busy": no session stands behind
#: them (urlsafe base64 never contains it), so their calls need no database.
SESSIONLESS = "~"


def sessionless_ticket() -> str:
    return SESSIONLESS + secrets.token_urlsafe(24)


def may_exist(ticket: str) -> bool:
    """False for tickets that cannot name a session (empty, or handed out with none/busy)."""
    return bool(ticket) and not ticket.startswith(SESSIONLESS)


def hash_ticket(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()


def open_session(
    db: Session, connection: Connection, now: datetime, client_address: str = ""
) -> tuple[str, WebConnectorSession]:
    """Start a session and return its ticket (shown once, never stored)."""
    ticket = new_ticket()
    session = WebConnectorSession(
        ticket_hash=hash_ticket(ticket),
        connection_id=connection.id,
        connection=connection,
        state=SessionState.OPEN.value,
        created_at=now,
        last_seen_at=now,
        client_address=client_address[:64],
    )
    db.add(session)
    db.flush()
    metrics.SESSIONS.labels("opened").inc()
    return ticket, session


def find(db: Session, ticket: str) -> WebConnectorSession | None:
    """The session a ticket names, in whatever state it is."""
    if not may_exist(ticket):
        return None
    return db.scalar(_BY_TICKET, {"ticket_hash": hash_ticket(ticket)})


def find_live(db: Session, ticket: str, now: datetime, settings: Settings) -> WebConnectorSession | None:
    """The open session a ticket names, touched; None if unknown, closed or expired."""
    session = find(db, ticket)
    if session is None or session.state != SessionState.OPEN.value:
        return None
    if is_expired(session, now, settings):
        end(db, session, now, SessionState.EXPIRED, "the session expired")
        return None
    session.last_seen_at = now
    return session


def is_expired(session: WebConnectorSession, now: datetime, settings: Settings) -> bool:
    return now - session.last_seen_at > timedelta(seconds=settings.session_idle_seconds) or (
        now - session.created_at > timedelta(seconds=settings.session_lifetime_seconds)
    )


def open_sessions(db: Session, connection_id: int) -> list[WebConnectorSession]:
    """The connection's open sessions (almost always none: checked with Core first, on every login)."""
    if db.connection().execute(_ANY_OPEN, {"connection_id": connection_id}).first() is None:
        return []
    return list(db.scalars(_OPEN, {"connection_id": connection_id}))


# Built once: these run on every call.
_BY_TICKET = select(WebConnectorSession).where(WebConnectorSession.ticket_hash == bindparam("ticket_hash"))
_ANY_OPEN = select(WebConnectorSession.id).where(WebConnectorSession.connection_id == bindparam("connection_id"),
                                                 WebConnectorSession.state == SessionState.OPEN.value).limit(1)
_OPEN = select(WebConnectorSession).where(WebConnectorSession.connection_id == bindparam("connection_id"),
                                          WebConnectorSession.state == SessionState.OPEN.value)


def end(
    db: Session, session: WebConnectorSession, now: datetime, state: SessionState, reason: str
) -> tuple[int, int]:
    """Close a session and settle the jobs it left unanswered: (requeued, in doubt)."""
    session.state = state.value
    session.closed_at = now
    metrics.SESSIONS.labels(state.value).inc()
    return queue.release_unanswered(db, session.id, now, reason[:1].upper() + reason[1:])


def latest(db: Session, connection_id: int) -> WebConnectorSession | None:
    """The connection's most recent session, for operators."""
    return db.scalar(
        select(WebConnectorSession)
        .where(WebConnectorSession.connection_id == connection_id)
        .order_by(WebConnectorSession.id.desc())
        .limit(1)
    )
