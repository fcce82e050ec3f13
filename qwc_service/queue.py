"""The job queue: what waits for QuickBooks, what was sent, what came back.

The queue's promises: a connection's jobs go out one at a time, higher
priority first and then oldest first; a job handed to a session is marked
``sent`` under that session in the same transaction that hands it out; and a
write whose answer never came back is set aside as ``in_doubt`` instead of
being sent again, because QuickBooks may already have applied it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import qbxml
from .exceptions import InvalidInput, NotFound
from .models import Connection, Job, JobState
from .qbxml import ResponseStatus


def enqueue(
    db: Session,
    connection: Connection,
    request: str,
    *,
    now: datetime,
    priority: int = 0,
) -> Job:
    """Validate a qbXML request and queue it for the connection's next session."""
    prepared = qbxml.prepare_request(request)
    job = Job(
        connection_id=connection.id,
        state=JobState.QUEUED.value,
        priority=priority,
        request_xml=prepared.xml,
        request_types=" ".join(prepared.request_types),
        is_write=prepared.is_write,
        qbxml_version=prepared.qbxml_version,
        created_at=now,
        updated_at=now,
    )
    db.add(job)
    db.flush()
    return job


def claim_next(db: Session, connection_id: int, session_id: int, now: datetime) -> Job | None:
    """Mark the connection's next job ``sent`` under this session and return it.

    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (ignored on SQLite, whose
    transactions already hold the write lock) keeps two processes from
    handing out the same job.
    """
    job = db.scalar(
        select(Job)
        .where(Job.connection_id == connection_id, Job.state == JobState.QUEUED.value)
        .order_by(Job.priority.desc(), Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if job is None:
        return None
    job.state = JobState.SENT.value
    job.session_id = session_id
    job.sent_at = now
    job.updated_at = now
    return job


def queued_count(db: Session, connection_id: int) -> int:
    return db.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.connection_id == connection_id, Job.state == JobState.QUEUED.value)
    ) or 0


def has_queued(db: Session, connection_id: int) -> bool:
    return (
        db.scalar(
            select(Job.id)
            .where(Job.connection_id == connection_id, Job.state == JobState.QUEUED.value)
            .limit(1)
        )
        is not None
    )


def outstanding(db: Session, session_id: int) -> Job | None:
    """The job this session is waiting to hear about, if any."""
    return db.scalar(
        select(Job).where(Job.session_id == session_id, Job.state == JobState.SENT.value).limit(1)
    )


@dataclass(frozen=True)
class Answer:
    """What QuickBooks said about one job, reduced to what decides its state."""

    failed: bool
    status: ResponseStatus | None


def record_response(db: Session, job: Job, response: str, now: datetime) -> Answer:
    """Store QuickBooks' answer and settle the job as done or failed.

    The job fails when any ``…Rs`` has severity Error; status code 1 (a query
    that matched nothing) and warnings are successes. The status kept on the
    job is the first failing one, or the last one when none failed.
    """
    job.response_xml = response
    try:
        statuses = qbxml.read_statuses(response)
    except InvalidInput as exc:
        _finish(job, JobState.FAILED, now, error=f"QuickBooks' answer could not be read: {exc}")
        return Answer(failed=True, status=None)
    if not statuses:
        _finish(job, JobState.FAILED, now, error="QuickBooks' answer contains no …Rs element")
        return Answer(failed=True, status=None)
    failing = [s for s in statuses if s.failed]
    status = failing[0] if failing else statuses[-1]
    job.status_code = status.code
    job.status_severity = status.severity
    job.status_message = status.message
    if failing:
        error = f"{status.request_type} failed with status {status.code}: {status.message}"
        if len(failing) > 1:
            error += f" ({len(failing)} of {len(statuses)} requests failed)"
        _finish(job, JobState.FAILED, now, error=error)
    else:
        _finish(job, JobState.DONE, now)
    return Answer(failed=bool(failing), status=status)


def record_rejection(db: Session, job: Job, hresult: str, message: str, now: datetime, error: str) -> None:
    """The request processor refused the request outright (an HRESULT, no response)."""
    job.hresult = hresult
    job.status_message = message
    _finish(job, JobState.FAILED, now, error=error)


def fail(job: Job, now: datetime, error: str) -> None:
    _finish(job, JobState.FAILED, now, error=error)


def _finish(job: Job, state: JobState, now: datetime, error: str | None = None) -> None:
    job.state = state.value
    job.error = error
    job.updated_at = now
    job.finished_at = now


IN_DOUBT_TEXT = (
    "The Web Connector session ended before QuickBooks' answer to this write came back, so "
    "QuickBooks may or may not have applied it. Check in QuickBooks whether {types} was recorded; "
    "then run 'qwc-service job retry {id}' to send it again or 'qwc-service job cancel {id}' "
    "if it is already there. It will not be resent by itself."
)


def release_unanswered(db: Session, session_id: int, now: datetime, reason: str) -> tuple[int, int]:
    """Settle the jobs a session left without an answer: (requeued, in doubt).

    A query is harmless to repeat, so it goes back to the queue. A write may
    already be in the company file, so it waits for a person.
    """
    requeued = in_doubt = 0
    for job in db.scalars(
        select(Job).where(Job.session_id == session_id, Job.state == JobState.SENT.value)
    ):
        job.updated_at = now
        if job.is_write:
            job.state = JobState.IN_DOUBT.value
            job.error = f"{reason}. " + IN_DOUBT_TEXT.format(
                types=job.request_types.replace(" ", ", "), id=job.id
            )
            in_doubt += 1
        else:
            job.state = JobState.QUEUED.value
            job.session_id = None
            job.sent_at = None
            requeued += 1
    return requeued, in_doubt


def get_job(db: Session, job_id: int) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def list_jobs(
    db: Session,
    *,
    connection_id: int | None = None,
    states: Sequence[str] = (),
    limit: int = 1000,
) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if connection_id is not None:
        query = query.where(Job.connection_id == connection_id)
    if states:
        query = query.where(Job.state.in_(list(states)))
    return list(db.scalars(query))
