"""The database schema as typed SQLAlchemy models.

Alembic migrations in ``migrations/`` own the schema; these classes describe
it for the ORM, and a test checks that autogenerate finds no difference
between the two. Times are stored in UTC.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any, Optional

import zlib

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def as_utc(moment: Optional[datetime]) -> Optional[datetime]:
    """Aware UTC from a value Core queries return (SQLite gives naive UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


class CompressedText(TypeDecorator[str]):
    """Text stored zlib-compressed: qbXML answers run to tens of MB and compress ~10:1."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Optional[str], dialect: Any) -> Optional[bytes]:
        if value is None:
            return None
        # Slice by slice: a 100 MB answer is never encoded whole next to its compressed copy.
        compressor = zlib.compressobj(1)
        step = 1 << 20
        parts = [compressor.compress(value[i:i + step].encode("utf-8", "surrogatepass"))
                 for i in range(0, len(value), step)]
        parts.append(compressor.flush())
        return b"".join(parts)

    def process_result_value(self, value: Optional[bytes], dialect: Any) -> Optional[str]:
        if value is None:
            return None
        return zlib.decompress(value).decode("utf-8", "surrogatepass")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite keeps no time zone, so without this the same column would come back
    naive there and aware on PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class JobState(str, enum.Enum):
    """Where a job is in its life. Stored as the plain string value."""

    #: Waiting for the connection's next session.
    QUEUED = "queued"
    #: Handed to the Web Connector in a session; its answer has not come back.
    SENT = "sent"
    #: QuickBooks answered and no request in it failed.
    DONE = "done"
    #: QuickBooks (or the request processor) rejected it.
    FAILED = "failed"
    #: A write whose session ended without an answer: QuickBooks may or may not
    #: have applied it, so it is never resent without a person's decision.
    IN_DOUBT = "in_doubt"
    #: Withdrawn before it was sent.
    CANCELLED = "cancelled"


FINAL_JOB_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class SessionState(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"


class Connection(Base):
    """One company file served through one Web Connector, and its sync user.

    QBWC identifies itself only by user name, so the sync user's name is
    unique across connections: it is how authenticate finds the connection.
    """

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    #: Full path of the company file to open, or "" for whichever is open.
    company_file: Mapped[str] = mapped_column(String(1024), default="")
    #: Braced GUIDs written into the .qwc file; stable for the connection's life.
    owner_id: Mapped[str] = mapped_column(String(38))
    file_id: Mapped[str] = mapped_column(String(38))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Open a session on every poll, even with nothing queued (a health check
    #: that QuickBooks can still be opened); otherwise idle polls answer "none".
    always_open: Mapped[bool] = mapped_column(Boolean, default=False)
    #: authenticate's fourth element: the shortest Auto-Run interval QBWC may use.
    min_run_every_seconds: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    #: Called when any of this connection's jobs is settled (a job's own URL wins).
    webhook_url: Mapped[Optional[str]] = mapped_column(String(2000), nullable=True)
    #: Key for the HMAC-SHA256 signature of webhook bodies (shown to the integrator).
    webhook_secret: Mapped[Optional[str]] = mapped_column(String(128), nullable=True)
    #: The QuickBooks user expected to run the sync (Integrated Applications
    #: "Login as"); None means a QuickBooks user named like the sync user.
    qb_user: Mapped[Optional[str]] = mapped_column(String(100), nullable=True)
    #: How often the Web Connector is scheduled to run (from the .qwc file we
    #: wrote, or set by hand); no poll for three times this is "overdue".
    run_every_seconds: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    #: What the last session saw, to notice when another company file is open.
    last_file_id: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    last_company_name: Mapped[Optional[str]] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    jobs: Mapped[list["Job"]] = relationship(back_populates="connection", lazy="raise")


class WebConnectorSession(Base):
    """One run of the Web Connector, from authenticate to closeConnection.

    Only a hash of the ticket is stored: a leaked database must not let anyone
    continue a live session.
    """

    __tablename__ = "qbwc_sessions"
    __table_args__ = (Index("ix_qbwc_sessions_connection_state", "connection_id", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_hash: Mapped[str] = mapped_column(String(64), unique=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=SessionState.OPEN.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    client_address: Mapped[str] = mapped_column(String(64), default="")
    #: What getLastError will say; "" when nothing went wrong.
    last_error: Mapped[str] = mapped_column(Text, default="")
    #: From sendRequestXML: the file QBWC opened and the processor's qbXML level.
    company_file_name: Mapped[str] = mapped_column(String(1024), default="")
    qbxml_country: Mapped[str] = mapped_column(String(8), default="")
    qbxml_major: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    qbxml_minor: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    #: Facts from the first call's strHCPResponse (see qbxml.HostFacts).
    host_facts: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    connection_error_hresult: Mapped[str] = mapped_column(String(32), default="")
    connection_error_message: Mapped[str] = mapped_column(Text, default="")
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    jobs_failed: Mapped[int] = mapped_column(Integer, default=0)
    #: Preflight warnings from the first call: [{"code", "summary", "fix"}].
    warnings: Mapped[Optional[list[dict[str, str]]]] = mapped_column(JSON, nullable=True)

    connection: Mapped[Connection] = relationship(lazy="joined")


class Job(Base):
    """One qbXML request document waiting for, or answered by, QuickBooks."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The claim path: a connection's queued jobs by priority, then age.
        Index("ix_jobs_claim", "connection_id", "state", "priority", "id"),
        Index("ix_jobs_session", "session_id"),
        Index("ix_jobs_state", "state", "finished_at"),
        Index("ix_jobs_dedupe", "connection_id", "dedupe_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    #: The normalised qbXML request document.
    request_xml: Mapped[str] = mapped_column(Text)
    #: Space-separated request types, e.g. "CustomerAdd InvoiceQuery".
    request_types: Mapped[str] = mapped_column(String(1024), default="")
    #: Whether any request changes QuickBooks data (decides resend safety).
    is_write: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The qbXML version the job needs, from its ``<?qbxml version?>``; None = any.
    qbxml_version: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)
    #: Enqueuing the same key while this job is pending returns this job.
    dedupe_key: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    #: Not handed out before this time (scheduling, and the retry backoff).
    not_before: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    #: Times QuickBooks answered with a transient error and the job was retried.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Iterate a single query in pages of this size (sets iterator/MaxReturned).
    page_size: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    #: The live QuickBooks iterator while a paged query is being continued.
    iterator_id: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    #: Called when the job reaches a final state (done, failed, in_doubt, cancelled).
    webhook_url: Mapped[Optional[str]] = mapped_column(String(2000), nullable=True)
    #: Set while the job waits behind a wall QuickBooks put up (a missing
    #: permission, the wrong company file): e.g. "permission:CustomerAdd".
    held_wall: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    #: Sessions in a row that hit that wall; at the limit the held jobs fail.
    wall_hits: Mapped[int] = mapped_column(Integer, default=0)
    #: QuickBooks' answer (all pages merged for a paged query), compressed.
    response_xml: Mapped[Optional[str]] = mapped_column(CompressedText, nullable=True)
    #: Every ...Rs status: [{"request_type", "request_id", "code", "severity", "message"}].
    statuses: Mapped[Optional[list[dict[str, Any]]]] = mapped_column(JSON, nullable=True)
    #: The first failing ...Rs (or the last one when none failed).
    status_code: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    status_severity: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)
    status_message: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    #: HRESULT when the request processor refused the request outright.
    hresult: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    #: Our explanation of what went wrong, for people.
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    session_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("qbwc_sessions.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)

    connection: Mapped[Connection] = relationship(back_populates="jobs", lazy="raise")


# The claim path reads a connection's queued jobs in hand-out order (priority
# high first, then oldest). Partial on ``held_wall IS NULL`` (a literal the
# planners can match even with bound parameters) and descending on priority,
# so the first row of the index is the next job: no sort over the whole
# queue, and the cost stays flat from 10k to 1M jobs. Held jobs, a handful
# at most, get their own small index for probes and releases.
Index("ix_jobs_next", Job.connection_id, Job.state, Job.priority.desc(), Job.id,
      sqlite_where=Job.held_wall.is_(None), postgresql_where=Job.held_wall.is_(None))
Index("ix_jobs_held", Job.connection_id, Job.state, Job.held_wall,
      sqlite_where=Job.held_wall.is_not(None), postgresql_where=Job.held_wall.is_not(None))


class JobDependency(Base):
    """Job ``job_id`` waits until ``depends_on_id`` is done (an invoice after its customer)."""

    __tablename__ = "job_dependencies"
    __table_args__ = (Index("ix_job_dependencies_depends_on", "depends_on_id"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    depends_on_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)


class JobEvent(Base):
    """Every state change of a job, with when and why: the job's history."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str] = mapped_column(String(16), default="")
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")


class JobPage(Base):
    """One page of a paged query, kept until the last page arrives and they are merged."""

    __tablename__ = "job_pages"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    response_xml: Mapped[str] = mapped_column(CompressedText)


class AuthResultKind(str, enum.Enum):
    """What authenticate answered, as recorded in the audit trail."""

    OK = "ok"
    NONE = "none"
    NVU = "nvu"
    LOCKED = "locked"
    BUSY = "busy"


class AuthEvent(Base):
    """One authenticate call: the audit trail, and the memory of known-good addresses."""

    __tablename__ = "auth_events"
    __table_args__ = (
        Index("ix_auth_events_connection", "connection_id", "client_address", "at"),
        Index("ix_auth_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    connection_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), nullable=True
    )
    client_address: Mapped[str] = mapped_column(String(64), default="")
    result: Mapped[str] = mapped_column(String(16))
    #: Why, for operators only (e.g. "wrong password"); never sent to the client.
    detail: Mapped[str] = mapped_column(String(255), default="")


class AuthCounter(Base):
    """Failed logins counted per scope, and the lockout they led to.

    Scopes: one client address (``addr:…``), one address against one
    connection (``conn:…:addr:…``), and one connection from anywhere
    (``conn:…``). Kept in the database so every server process sees them.
    """

    __tablename__ = "auth_counters"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    connection_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), nullable=True
    )
    client_address: Mapped[str] = mapped_column(String(64), default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    #: How many lockouts in a row; each one lasts twice as long as the last.
    level: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token for the HTTP API, stored only as a SHA-256 hash.

    A token scoped to a connection sees and touches nothing else: one
    integrator's token can never read another company file's jobs.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters of the token, to tell tokens apart in listings.
    prefix: Mapped[str] = mapped_column(String(16))
    #: None = every connection.
    connection_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)


class WebhookDelivery(Base):
    """One webhook call owed for a settled job: an outbox row, retried until delivered.

    Written in the same transaction that settles the job, so a delivery is
    never lost; sent later by a background worker, so a slow receiver never
    holds up a Web Connector call.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_job", "job_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    #: The job state that triggered it (done, failed, in_doubt, cancelled).
    event: Mapped[str] = mapped_column(String(16))
    #: The JSON body, fixed when the job settled.
    payload: Mapped[str] = mapped_column(Text)
    #: pending, delivered, or failed (gave up after the last attempt).
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime, nullable=True)
