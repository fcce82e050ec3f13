"""A small typed client for integrators: the queue from inside your own process.

    from qwc_service import QueueClient

    client = QueueClient("postgresql://…")          # or QueueClient.from_env()
    job = client.enqueue("acme", "<CustomerQueryRq/>")
    done = client.wait(job.id, timeout=600)
    print(done.state, done.status_code, done.response)

It talks to the same database as the server, through the same queue rules,
so it is exactly as safe as the CLI and the HTTP API (which use it too).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from . import connections, database, queue
from .config import Settings
from .models import Connection, Job, JobDependency, JobState, as_utc
from .queue import NewJob  # re-exported: the items of enqueue_many

#: States after which nothing happens to a job without a person.
SETTLED_STATES = frozenset({JobState.DONE.value, JobState.FAILED.value, JobState.CANCELLED.value,
                            JobState.IN_DOUBT.value})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class JobEventInfo:
    at: datetime
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of one job; ``request``/``response`` only when asked for."""

    id: int
    connection: str
    state: str
    priority: int
    request_types: tuple[str, ...]
    is_write: bool
    status_code: int | None
    status_severity: str | None
    status_message: str | None
    hresult: str | None
    error: str | None
    attempts: int
    dedupe_key: str | None
    after: tuple[int, ...]
    not_before: datetime | None
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    statuses: tuple[dict[str, Any], ...] = ()
    request: str | None = None
    response: str | None = None
    history: tuple[JobEventInfo, ...] = ()
    #: Set by enqueue: False when an existing job with the same key was returned.
    created: bool = True
    #: Set by enqueue: text QuickBooks may reject, and where it is.
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def settled(self) -> bool:
        return self.state in SETTLED_STATES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times in ISO 8601, absent payloads left out."""
        data = asdict(self)
        for key, value in list(data.items()):
            if isinstance(value, datetime):
                data[key] = value.isoformat()
            elif isinstance(value, tuple):
                data[key] = list(value)
        data["history"] = [{**e, "at": e["at"].isoformat()} for e in data["history"]]
        for key in ("request", "response"):
            if self.request is None and self.response is None:
                data.pop(key)
        if not self.history:
            data.pop("history")
        return data


class QueueClient:
    def __init__(
        self,
        database_url: str | None = None,
        *,
        engine: Engine | None = None,
        migrate: bool = True,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if engine is None:
            engine = database.make_engine(database_url or Settings.from_env().database_url)
            self._owns_engine = True
        else:
            self._owns_engine = False
        if migrate:
            database.upgrade(engine)
        self.engine = engine
        self.db: sessionmaker[Session] = database.make_sessionmaker(engine)
        self.clock = clock

    @classmethod
    def from_env(cls) -> "QueueClient":
        return cls(Settings.from_env().database_url)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> "QueueClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------

    def enqueue(
        self,
        connection: str,
        request: str,
        *,
        priority: int = 0,
        after: Sequence[int] = (),
        key: str | None = None,
        replace: bool = False,
        not_before: datetime | None = None,
        page_size: int | None = None,
        webhook_url: str | None = None,
    ) -> JobInfo:
        """Queue qbXML for a connection; raises InvalidInput/NotFound with a clear message."""
        if not_before is not None and not_before.tzinfo is None:
            raise ValueError("not_before must be timezone-aware")
        with self.db.begin() as db:
            conn = connections.get_connection(db, connection)
            result = queue.enqueue(
                db, conn, request, now=self.clock(), priority=priority, after=after, key=key, replace=replace,
                not_before=not_before, page_size=page_size, webhook_url=webhook_url,
            )
            info = _info(db, result.job, conn.name, payloads=False)
        return _with(info, created=result.created, warnings=result.warnings)

    def enqueue_many(self, connection: str, requests: Sequence[str | NewJob]) -> list[JobInfo]:
        """Queue many jobs for a connection in one transaction: all of them, or none.

        Each item is a qbXML string (a job with the defaults) or a ``NewJob``
        with the options ``enqueue`` takes, so a batch reads like the calls
        it replaces and a misspelt option fails where it is written. The
        answer is one ``JobInfo`` per item, in the same order: the job, the
        ``created`` flag and the ``warnings`` that calling ``enqueue`` for each
        would give, each job as it stands after the batch (one that a later
        item replaced, by key, shows the later request). Any bad item refuses
        the whole batch with the usual error prefixed ``item N:`` (its
        0-based index); at most ``queue.MAX_BATCH`` items. Much cheaper per
        job than ``enqueue``: one transaction (one commit) for the batch, and
        no ORM flush per job (see ``queue.enqueue_many``).
        """
        with self.db.begin() as db:
            conn = connections.get_connection(db, connection)
            results = queue.enqueue_many(db, conn, list(requests), now=self.clock())
            after = _dependencies_of(db, [r.job.id for r in results])
            return [_info(db, r.job, conn.name, payloads=False, after=after.get(r.job.id, ()), created=r.created,
                          warnings=r.warnings) for r in results]

    def cancel(self, job_id: int) -> JobInfo:
        with self.db.begin() as db:
            job = queue.cancel(db, job_id, self.clock(), "cancelled by a person")
            return _info(db, job, None, payloads=False)

    def retry(self, job_id: int) -> JobInfo:
        with self.db.begin() as db:
            job = queue.retry(db, job_id, self.clock(), "retried by a person")
            return _info(db, job, None, payloads=False)

    # -- reading ---------------------------------------------------------------

    def get(self, job_id: int, *, payloads: bool = True, history: bool = True) -> JobInfo:
        with self.db.begin() as db:
            job = queue.get_job(db, job_id)
            return _info(db, job, None, payloads=payloads, history=history)

    def list(
        self,
        *,
        connection: str | None = None,
        states: Sequence[str] = (),
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[JobInfo]:
        """Newest first; pass the last id as ``before_id`` for the next page."""
        for state in states:
            JobState(state)  # ValueError names a bad state
        with self.db.begin() as db:
            connection_id = connections.get_connection(db, connection).id if connection else None
            jobs = queue.list_jobs(db, connection_id=connection_id, states=states, limit=limit, before_id=before_id)
            names = _names(db)
            return [_info(db, job, names[job.connection_id], payloads=False, history=False) for job in jobs]

    def summary(self, connection: str) -> dict[str, Any]:
        """A connection's queue at a glance: jobs by state and the oldest queued job's age."""
        with self.db.begin() as db:
            conn = connections.get_connection(db, connection)
            counts = dict(
                db.execute(select(Job.state, func.count()).where(Job.connection_id == conn.id).group_by(Job.state)).all()
            )
            oldest = db.scalar(select(func.min(Job.created_at)).where(Job.connection_id == conn.id,
                                                                       Job.state == JobState.QUEUED.value))
        now = self.clock()
        oldest = as_utc(oldest)
        return {
            "connection": conn.name,
            "jobs": {state.value: int(counts.get(state.value, 0)) for state in JobState},
            "oldest_queued_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
        }

    def wait(self, job_id: int, *, timeout: float | None = None, poll_seconds: float = 1.0) -> JobInfo:
        """Block until the job is settled (done, failed, cancelled or in doubt)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.get(job_id, payloads=False, history=False)
            if info.settled:
                return self.get(job_id)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {info.state} after {timeout} s")
            time.sleep(poll_seconds)


def _names(db: Session) -> dict[int, str]:
    return dict(db.execute(select(Connection.id, Connection.name)).all())  # type: ignore[arg-type]


def _with(info: JobInfo, **changes: Any) -> JobInfo:
    from dataclasses import replace

    return replace(info, **changes)


def _dependencies_of(db: Session, job_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """``after`` of many jobs in one query per thousand, for a batch's answer."""
    found: dict[int, list[int]] = {}
    unique = sorted(set(job_ids))
    for start in range(0, len(unique), 1000):
        rows = db.execute(select(JobDependency.job_id, JobDependency.depends_on_id)
                          .where(JobDependency.job_id.in_(unique[start:start + 1000])))
        for job_id, depends_on_id in rows:
            found.setdefault(job_id, []).append(depends_on_id)
    return {job_id: tuple(ids) for job_id, ids in found.items()}


def _info(db: Session, job: Job, connection_name: str | None, *, payloads: bool, history: bool = False,
          after: tuple[int, ...] | None = None, created: bool = True, warnings: tuple[str, ...] = ()) -> JobInfo:
    """A job's snapshot; ``after`` when already known (a batch reads every job's at once)."""
    if connection_name is None:
        connection_name = db.scalar(select(Connection.name).where(Connection.id == job.connection_id)) or "?"
    return JobInfo(
        id=job.id,
        connection=connection_name,
        state=job.state,
        priority=job.priority,
        request_types=tuple(job.request_types.split()),
        is_write=job.is_write,
        status_code=job.status_code,
        status_severity=job.status_severity,
        status_message=job.status_message,
        hresult=job.hresult,
        error=job.error,
        attempts=job.attempts,
        dedupe_key=job.dedupe_key,
        after=tuple(queue.dependencies(db, job.id)) if after is None else after,
        not_before=job.not_before,
        created_at=job.created_at,
        sent_at=job.sent_at,
        finished_at=job.finished_at,
        statuses=tuple(job.statuses or ()),
        request=job.request_xml if payloads else None,
        response=job.response_xml if payloads else None,
        history=tuple(JobEventInfo(e.at, e.from_state, e.to_state, e.reason) for e in queue.history(db, job.id))
        if history else (),
        created=created,
        warnings=warnings,
    )
