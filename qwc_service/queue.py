"""The job queue: what waits for QuickBooks, what was sent, what came back.

Two promises hold here. **Every job is answered**: a job handed to a session
is marked ``sent`` under that session in the same transaction that hands it
out, and a session that ends without the answer settles it. **No write
reaches QuickBooks twice by itself**: a query whose answer never came is
simply queued again, but a write becomes ``in_doubt`` (QuickBooks may already
have applied it) and waits for a person's ``retry`` or ``cancel``.

Every state change goes through ``_move``, which checks it against
``TRANSITIONS`` and records it in ``job_events`` with the time and reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from sqlalchemy import and_, bindparam, delete, exists, func, insert, inspect, literal, or_, select, text
from sqlalchemy.orm import Session, aliased, defer, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict

from . import metrics, qbxml, webhooks
from .exceptions import InvalidInput, NotFound
from .models import Connection, Job, JobDependency, JobEvent, JobPage, JobState
from .qbxml import ResponseStatus

log = logging.getLogger(__name__)

Q, S, D, F, I, C = (JobState.QUEUED, JobState.SENT, JobState.DONE, JobState.FAILED, JobState.IN_DOUBT,
                    JobState.CANCELLED)

#: Every allowed state change. Anything else is a bug or a refused request.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    Q: frozenset({S, C, F}),          # handed out, withdrawn, or its dependency failed
    S: frozenset({D, F, Q, I}),       # answered, or (query) requeued / (write) in doubt
    I: frozenset({Q, C}),             # a person decides: send again, or it is already there
    F: frozenset({Q, C}),             # retried, or dismissed, by a person
    D: frozenset(),
    C: frozenset(),
}

#: "Record in use", "modified by another user" and kin: QuickBooks did nothing, try later.
TRANSIENT_CODES = frozenset({3170, 3175, 3176, 3180})
#: "The request has not been processed" (after an earlier failure under stopOnError).
NOT_PROCESSED = 3231
#: The iterator is gone (it lives only inside one QuickBooks session).
ITERATOR_EXPIRED = 3391
MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 30
#: Sessions in a row that may hit the same wall before its jobs fail for good:
#: QBWC must never be sent into the same refusal forever.
MAX_WALL_HITS = 3

#: Given a failing status, the wall it shows (e.g. "permission:CustomerAdd"),
#: or None when only this job failed. The conversation decides, via diagnosis.
WallOf = Callable[[ResponseStatus], "str | None"]


class TransitionRefused(InvalidInput):
    """A person asked for a state change the job's state does not allow."""


@dataclass(frozen=True)
class Enqueued:
    job: Job
    #: False when a pending job with the same dedupe key was returned instead.
    created: bool
    #: Things QuickBooks may reject, e.g. text outside ISO-8859-1.
    warnings: tuple[str, ...] = field(default_factory=tuple)


# -- enqueue ------------------------------------------------------------------


def enqueue(
    db: Session,
    connection: Connection,
    request: str,
    *,
    now: datetime,
    priority: int = 0,
    after: Sequence[int] = (),
    key: str | None = None,
    replace: bool = False,
    not_before: datetime | None = None,
    page_size: int | None = None,
    webhook_url: str | None = None,
) -> Enqueued:
    """Validate a qbXML request and queue it for the connection's next session.

    With ``key``, a still-queued job with the same key is returned instead
    of a new one (or, with ``replace``, given this payload). ``after`` names
    jobs of the same connection that must be done first.
    """
    prepared = qbxml.prepare_request(request)
    xml = prepared.xml
    if page_size is not None:
        xml = _paged(prepared, page_size)
    if key is not None:
        key = key.strip()
        if not key or len(key) > 200:
            raise InvalidInput("the dedupe key must be 1 to 200 characters")
        # Lock the connection row so two enqueues of one key cannot both insert.
        db.get(Connection, connection.id, with_for_update=True)
        existing = db.scalar(
            select(Job).where(Job.connection_id == connection.id, Job.dedupe_key == key, Job.state == Q.value)
            .order_by(Job.id).limit(1)
        )
        if existing is not None:
            if replace:
                _set_payload(existing, prepared, xml, page_size)
                existing.updated_at = now
                _record(db, existing, Q, Q, now, "payload replaced (same dedupe key)")
            return Enqueued(existing, False, tuple(qbxml.unrepresentable_text(xml)))
    dependencies = _check_dependencies(db, connection, after)
    job = Job(
        connection_id=connection.id,
        state=Q.value,
        priority=priority,
        dedupe_key=key,
        not_before=not_before,
        webhook_url=webhook_url,
        created_at=now,
        updated_at=now,
    )
    _set_payload(job, prepared, xml, page_size)
    db.add(job)
    db.flush()
    db.add_all(JobDependency(job_id=job.id, depends_on_id=d.id) for d in dependencies)
    _record(db, job, None, Q, now, "enqueued")
    for dependency in dependencies:
        if dependency.state in (F.value, C.value):
            _move(db, job, F, now, _dependency_reason(dependency))
            break
    return Enqueued(job, True, tuple(qbxml.unrepresentable_text(xml)))


def _set_payload(job: Job, prepared: qbxml.PreparedRequest, xml: str, page_size: int | None) -> None:
    job.request_xml = xml
    job.request_types = " ".join(prepared.request_types)
    job.is_write = prepared.is_write
    job.qbxml_version = prepared.qbxml_version
    job.page_size = page_size


def _paged(prepared: qbxml.PreparedRequest, page_size: int) -> str:
    if not 1 <= page_size <= 100_000:
        raise InvalidInput("the page size must be between 1 and 100000")
    if len(prepared.request_types) != 1 or not prepared.request_types[0].endswith("Query"):
        raise InvalidInput("only a job with exactly one …QueryRq can be paged")
    return qbxml.start_iterator(prepared.xml, page_size)


def _check_dependencies(db: Session, connection: Connection, after: Sequence[int]) -> list[Job]:
    jobs = []
    for job_id in dict.fromkeys(after):
        dependency = db.get(Job, job_id)
        if dependency is None or dependency.connection_id != connection.id:
            raise InvalidInput(f"--after {job_id}: no such job for connection {connection.name!r}")
        jobs.append(dependency)
    return jobs


def _dependency_reason(dependency: Job) -> str:
    what = "was cancelled" if dependency.state == C.value else "failed"
    return f"it waits for job {dependency.id} ({dependency.request_types}), which {what}"


# -- enqueue in batches --------------------------------------------------------------

#: The most jobs one ``enqueue_many`` takes. A batch holds the database's write
#: lock (on SQLite, the whole database's) while it is written and Web Connector
#: calls wait behind it: 1,000 jobs are a fraction of a second, and one bad item
#: rejects no more than that. Callers with more split them.
MAX_BATCH = 1000


@dataclass(frozen=True)
class NewJob:
    """One job of a batch: a qbXML request and the options ``enqueue`` takes, with the same defaults.

    A frozen dataclass rather than a dict, so that a misspelt option is an
    error where it is written instead of a silently ignored key.
    """

    request: str
    priority: int = 0
    after: Sequence[int] = ()
    key: str | None = None
    replace: bool = False
    not_before: datetime | None = None
    page_size: int | None = None
    webhook_url: str | None = None


@dataclass
class _Planned:
    """A validated batch item, and whether it is written in bulk."""

    index: int
    item: NewJob
    prepared: qbxml.PreparedRequest
    xml: str
    key: str | None
    after: tuple[int, ...]
    warnings: tuple[str, ...]
    #: True: a new queued job, written by the batch's multi-row inserts; False: through ``enqueue``.
    bulk: bool = True


def enqueue_many(db: Session, connection: Connection, requests: Sequence[str | NewJob], *,
                 now: datetime) -> list[Enqueued]:
    """Queue many requests for one connection, in the caller's transaction: ``enqueue`` for each, in bulk.

    The answer, the rows and the history are those of calling ``enqueue`` for
    each item in order (the same validation, dedupe keys, ``replace``,
    ``after``, ``created`` and ``warnings``), and new jobs get ascending ids
    in input order, so they are handed out in the same order. What differs is
    the cost: ``enqueue`` flushes the ORM once per job to learn its id for the
    history row (60 % of a batch's time). Here every item is validated first
    (a bad one raises the usual error, prefixed with ``item N:``, its 0-based
    index, before anything is written), then the new jobs are written with
    one multi-row insert, and their history and dependency rows with one
    executemany each.

    Items that might not simply add a queued job go through ``enqueue``
    itself, at their place in the order, in the same transaction: a ``key``
    that matches a queued job or an earlier item of the batch (the job is
    returned or, with ``replace``, given the new payload), and a job waiting
    for one that already failed or was cancelled (it fails at once, which
    settles it and may owe a webhook). That keeps a single implementation of
    those rules, which are rare in bulk.

    ``after`` names jobs that exist before the call: a batch's own ids are not
    known until it returns. More than ``MAX_BATCH`` items are refused.
    """
    items = [NewJob(r) if isinstance(r, str) else r for r in requests]
    if len(items) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} jobs; this one has {len(items)}: split it")
    plans = [_plan(index, item) for index, item in enumerate(items)]
    _choose_paths(db, connection, plans)
    results: list[Enqueued] = []
    run: list[_Planned] = []
    for plan in plans:
        if plan.bulk:
            run.append(plan)
            continue
        results += _insert_run(db, connection, run, now)  # earlier items first: ids follow the input order
        run = []
        item = plan.item
        results.append(enqueue(db, connection, item.request, now=now, priority=item.priority, after=item.after,
                               key=item.key, replace=item.replace, not_before=item.not_before,
                               page_size=item.page_size, webhook_url=item.webhook_url))
    results += _insert_run(db, connection, run, now)
    return results


def _plan(index: int, item: object) -> _Planned:
    """``enqueue``'s validation of one item, without the database; errors name the item."""
    try:
        if not isinstance(item, NewJob):
            raise InvalidInput(f"expected a qbXML string or a NewJob, not {type(item).__name__}")
        if not isinstance(item.request, str):
            raise InvalidInput("the request must be a string holding qbXML")
        if not _is_int32(item.priority) or not all(_is_int32(a) for a in item.after) or not (
                item.page_size is None or _is_int32(item.page_size)):
            raise InvalidInput("priority, page_size and the ids in after must be 32-bit integers")
        prepared = qbxml.prepare_request(item.request)
        xml = prepared.xml if item.page_size is None else _paged(prepared, item.page_size)
        key = item.key
        if key is not None:
            key = key.strip()
            if not key or len(key) > 200:
                raise InvalidInput("the dedupe key must be 1 to 200 characters")
        if item.not_before is not None and item.not_before.tzinfo is None:
            raise InvalidInput("not_before must be timezone-aware")
        return _Planned(index, item, prepared, xml, key, tuple(dict.fromkeys(item.after)),
                        tuple(qbxml.unrepresentable_text(xml)))
    except InvalidInput as exc:
        raise _at(index, exc) from None


def _is_int32(value: object) -> bool:
    """What the integer columns hold; anything else would fail in the database, mid-batch."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31


def _at(index: int, exc: InvalidInput) -> InvalidInput:
    """The same error (so QbxmlError stays QbxmlError), naming the batch item."""
    return type(exc)(f"item {index}: {exc}")


def _choose_paths(db: Session, connection: Connection, plans: list[_Planned]) -> None:
    """Check every ``after`` and mark the items ``enqueue`` must write, as it would decide them in order.

    An item whose key matches a queued job is answered with that job, and
    ``enqueue`` then never looks at its ``after``; every other item adds a
    job, and a bad dependency of any of those refuses the batch here, before
    anything is written.
    """
    keys = sorted({p.key for p in plans if p.key is not None})
    queued_keys: set[str] = set()
    if keys:
        # Lock the connection row, as enqueue does, so two batches of one key cannot both insert.
        db.get(Connection, connection.id, with_for_update=True)
        queued_keys = set(db.scalars(select(Job.dedupe_key).where(
            Job.connection_id == connection.id, Job.state == Q.value, Job.dedupe_key.in_(keys))))
    wanted = sorted({job_id for p in plans for job_id in p.after})
    found: dict[int, tuple[int, str]] = {}
    for start in range(0, len(wanted), 1000):
        rows = db.execute(select(Job.id, Job.connection_id, Job.state).where(Job.id.in_(wanted[start:start + 1000])))
        found.update((job_id, (connection_id, state)) for job_id, connection_id, state in rows)
    for plan in plans:
        if plan.key is not None and plan.key in queued_keys:
            plan.bulk = False
            continue
        for job_id in plan.after:
            if found.get(job_id, (None, ""))[0] != connection.id:
                raise _at(plan.index, InvalidInput(
                    f"--after {job_id}: no such job for connection {connection.name!r}"))
        plan.bulk = not any(found[job_id][1] in (F.value, C.value) for job_id in plan.after)
        if plan.key is not None and plan.bulk:
            queued_keys.add(plan.key)  # a later item with this key is answered with this job


_INSERT_JOB = insert(Job.__table__)
_INSERT_DEPENDENCY = insert(JobDependency.__table__)
#: Job columns a new job leaves NULL (no default of any kind): the ORM objects
#: made for bulk-written jobs carry them, the rest are loaded if ever read.
_NULL_ON_INSERT = tuple(c.key for c in Job.__table__.columns
                        if c.default is None and c.server_default is None and not c.primary_key)


def _insert_run(db: Session, connection: Connection, run: list[_Planned], now: datetime) -> list[Enqueued]:
    """Write consecutive new queued jobs: one insert for the jobs, one executemany each for history and dependencies."""
    if not run:
        return []
    rows: list[dict[str, Any]] = [
        {"connection_id": connection.id, "state": Q.value, "priority": p.item.priority, "request_xml": p.xml,
         "request_types": " ".join(p.prepared.request_types), "is_write": p.prepared.is_write,
         "qbxml_version": p.prepared.qbxml_version, "dedupe_key": p.key, "not_before": p.item.not_before,
         "page_size": p.item.page_size, "webhook_url": p.item.webhook_url, "attempts": 0, "wall_hits": 0,
         "created_at": now, "updated_at": now}
        for p in run
    ]
    ids = _insert_jobs(db, rows)
    conn = db.connection()
    conn.execute(_INSERT_EVENT, [{"job_id": job_id, "at": now, "from_state": "", "to_state": Q.value,
                                  "reason": "enqueued"} for job_id in ids])
    dependencies = [{"job_id": job_id, "depends_on_id": d} for job_id, p in zip(ids, run) for d in p.after]
    if dependencies:
        conn.execute(_INSERT_DEPENDENCY, dependencies)
    nulls = dict.fromkeys(_NULL_ON_INSERT)
    jobs = [_as_loaded({**nulls, **row, "id": job_id}) for job_id, row in zip(ids, rows)]
    db.add_all(jobs)
    return [Enqueued(job, True, plan.warnings) for job, plan in zip(jobs, run)]


_JOB_CLASS_MANAGER = inspect(Job).class_manager


def _as_loaded(values: dict[str, Any]) -> Job:
    """A Job as the session would load this row, without a query: persistent and clean once added.

    Built the way SQLAlchemy's loader builds one (a bare instance, its
    ``__dict__`` filled): the ``Job(...)`` constructor fires an attribute
    event per column and cost 70 µs a job, a third of a batch's budget.
    """
    job = _JOB_CLASS_MANAGER.new_instance()
    instance_dict(job).update(values)
    make_transient_to_detached(job)  # the row's identity, no pending changes
    return job


def _insert_jobs(db: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert job rows and return their ids in the rows' order.

    PostgreSQL: the ids are taken from the table's sequence first, then the
    rows go in as one executemany (psycopg pipelines it). That costs a third of
    the CPU of a multi-row ``INSERT … RETURNING`` in parameter order, whose
    1,000-row statement SQLAlchemy builds and binds in Python. SQLite (3.35+):
    one multi-row ``INSERT … RETURNING id`` (SQLAlchemy's ordered variant
    would send one statement per row there). Each new rowid is the largest so
    far plus one, and from its first row on the transaction holds the write
    lock, so the ids ascend in row order: they are sorted (RETURNING's order
    is not promised) and checked to be consecutive. Older SQLite: one INSERT
    per row. Elsewhere SQLAlchemy's own ``sort_by_parameter_order``.
    """
    conn = db.connection()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        ids = sorted(conn.execute(_NEXT_JOB_IDS, {"n": len(rows)}).scalars())
        conn.execute(_INSERT_JOB, [{**row, "id": job_id} for row, job_id in zip(rows, ids)])
        return ids
    if dialect == "sqlite" and not conn.dialect.insert_returning:  # SQLite before 3.35 (RHEL 9 has 3.34)
        return [conn.execute(_INSERT_JOB, row).inserted_primary_key[0] for row in rows]
    if dialect == "sqlite":
        ids = sorted(conn.execute(_INSERT_JOB.returning(Job.__table__.c.id), rows).scalars())
        if len(ids) != len(rows) or ids[-1] - ids[0] != len(rows) - 1:
            raise RuntimeError(f"SQLite gave {len(rows)} new jobs the ids {ids[:3]}…{ids[-3:]}, not consecutive ones; "
                               "they cannot be matched to the requests")
        return ids
    returning = _INSERT_JOB.returning(Job.__table__.c.id, sort_by_parameter_order=True)
    return list(conn.execute(returning, rows).scalars())


_NEXT_JOB_IDS = text(f"SELECT nextval(pg_get_serial_sequence('{Job.__tablename__}', 'id')) "
                     "FROM generate_series(1, :n)")


# -- handing jobs out ---------------------------------------------------------------


def _claimable(held: bool | None):  # type: ignore[no-untyped-def]
    """Queued, due, and every job it waits for is done; held or not (None: either).

    Built once with bind parameters (``:connection_id``, ``:now``): these
    statements run on every poll, and building SQLAlchemy expressions costs
    more than executing them.
    """
    dependency = aliased(Job)
    unmet = exists().where(
        JobDependency.job_id == Job.id,
        JobDependency.depends_on_id == dependency.id,
        dependency.state != D.value,
    )
    conditions = [
        Job.connection_id == bindparam("connection_id"),
        Job.state == Q.value,
        or_(Job.not_before.is_(None), Job.not_before <= bindparam("now", type_=Job.not_before.type)),
        ~unmet,
    ]
    if held is not None:
        conditions.append(Job.held_wall.is_not(None) if held else Job.held_wall.is_(None))
    return and_(*conditions)


_NEXT = (select(Job).where(_claimable(held=False)).order_by(Job.priority.desc(), Job.id).limit(1)
         .with_for_update(skip_locked=True, of=Job))
_PROBE = select(Job).where(_claimable(held=True)).order_by(Job.id).limit(1).with_for_update(skip_locked=True, of=Job)
_ANY_WORK = select(Job.id).where(_claimable(held=None)).limit(1)
#: work_count stops counting here: it only feeds QBWC's progress bar (and
#: "100 = finished", for which any count above zero will do); counting a long
#: queue after every answer costs more than the answer (measured: 2.5 ms at 1,000).
WORK_COUNT_HORIZON = 100
_WORK_COUNT = select(func.count()).select_from(
    select(Job.id).where(_claimable(held=False)).limit(WORK_COUNT_HORIZON).subquery())


def claim_next(db: Session, connection_id: int, session_id: int, now: datetime) -> Job | None:
    """Mark the connection's next job ``sent`` under this session and return it.

    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (ignored on SQLite, whose
    transactions already hold the write lock) keeps two processes from
    handing out the same job.
    """
    job = db.scalar(_NEXT, {"connection_id": connection_id, "now": now})
    if job is None:
        return None
    return _hand_out(db, job, session_id, now, f"sent in session {session_id}")


def claim_probe(db: Session, connection_id: int, session_id: int, now: datetime) -> Job | None:
    """When only held jobs remain, send the oldest one to see whether the wall is gone."""
    job = db.scalar(_PROBE, {"connection_id": connection_id, "now": now})
    if job is None:
        return None
    return _hand_out(db, job, session_id, now, f"sent in session {session_id} to see whether this is fixed: "
                                               f"{job.held_wall}")


def _hand_out(db: Session, job: Job, session_id: int, now: datetime, reason: str) -> Job:
    _move(db, job, S, now, reason)
    job.session_id = session_id
    job.sent_at = now
    return job


def has_work(db: Session, connection_id: int, now: datetime) -> bool:
    """Anything a session could send now, held jobs included (one of them probes the wall)."""
    return db.connection().execute(_ANY_WORK, {"connection_id": connection_id, "now": now}).first() is not None


def work_count(db: Session, connection_id: int, now: datetime) -> int:
    """Jobs a session could send now, not held; at most ``WORK_COUNT_HORIZON``."""
    return db.scalar(_WORK_COUNT, {"connection_id": connection_id, "now": now}) or 0


def held_count(db: Session, connection_id: int) -> int:
    return db.scalar(
        select(func.count()).select_from(Job)
        .where(Job.connection_id == connection_id, Job.state == Q.value, Job.held_wall.is_not(None))
    ) or 0


def queued_count(db: Session, connection_id: int) -> int:
    """All queued jobs, including those not yet due or waiting for others."""
    return db.scalar(
        select(func.count()).select_from(Job).where(Job.connection_id == connection_id, Job.state == Q.value)
    ) or 0


_OUTSTANDING = select(Job).where(Job.session_id == bindparam("session_id"), Job.state == S.value,
                                 Job.sent_at.is_not(None)).limit(1)
_NEXT_PAGE = select(Job).where(Job.session_id == bindparam("session_id"), Job.state == S.value,
                               Job.sent_at.is_(None), Job.iterator_id.is_not(None)).limit(1)


_IN_FLIGHT = select(Job).where(Job.session_id == bindparam("session_id"), Job.state == S.value)


def in_flight(db: Session, session_id: int) -> list[Job]:
    """The session's jobs out with QuickBooks: the one awaiting an answer and any paged query
    between pages (at most one of each; one read instead of ``outstanding`` + ``next_page``)."""
    with db.no_autoflush:  # called first in a call: nothing pending concerns these jobs
        return list(db.scalars(_IN_FLIGHT, {"session_id": session_id}))


def outstanding(db: Session, session_id: int) -> Job | None:
    """The job whose answer this session is waiting for, if any."""
    with db.no_autoflush:  # called first in a call: nothing pending concerns these jobs
        return db.scalar(_OUTSTANDING, {"session_id": session_id})


def next_page(db: Session, session_id: int) -> Job | None:
    """A paged query of this session whose next page is yet to be asked for."""
    return db.scalar(_NEXT_PAGE, {"session_id": session_id})


def send_page(job: Job, now: datetime) -> None:
    """The next page of a paged query goes out: its answer is awaited again."""
    job.sent_at = now
    job.updated_at = now


# -- answers -----------------------------------------------------------------------


class ResponseMismatch(InvalidInput):
    """The answer's requestIDs belong to another job: something upstream is confused."""


@dataclass(frozen=True)
class Outcome:
    """What one answer did to its job, for the conversation to act on."""

    state: JobState
    status: ResponseStatus | None = None
    #: More pages of an iterated query are to be requested in this session.
    continues: bool = False
    #: The job went back to the queue behind a wall (see ``hit_wall``).
    held: bool = False


def record_response(db: Session, job: Job, response: str, now: datetime, wall_of: WallOf | None = None) -> Outcome:
    """Store QuickBooks' answer and settle the job.

    The job fails when any ``…Rs`` has severity Error (status 1, a query that
    matched nothing, and warnings are successes); a failure made only of
    transient codes is retried later, up to ``MAX_ATTEMPTS``; an iterated
    query stays ``sent`` until its last page.
    """
    try:
        statuses = qbxml.read_statuses(response)
    except InvalidInput as exc:
        job.response_xml = response
        _move(db, job, F, now, f"QuickBooks' answer could not be read: {exc}")
        return Outcome(F)
    if not statuses:
        job.response_xml = response
        _move(db, job, F, now, "QuickBooks' answer contains no …Rs element")
        return Outcome(F)
    foreign = [s.request_id for s in statuses if s.request_id and not s.request_id.startswith(f"{job.id}.")]
    if foreign:
        raise ResponseMismatch(
            f"the answer carries requestID {foreign[0]!r}, which does not belong to job {job.id}"
        )
    job.statuses = [_status_dict(s) for s in statuses]
    failing = [s for s in statuses if s.failed]
    status = failing[0] if failing else statuses[-1]
    job.status_code, job.status_severity, job.status_message = status.code, status.severity, status.message
    if failing:
        return _record_failure(db, job, response, statuses, failing, now, wall_of)
    if status.iterator_id and (status.iterator_remaining or 0) > 0:
        return _record_page(db, job, response, status, now)
    job.response_xml = _merge_pages(db, job, response)
    job.iterator_id = None
    job.held_wall, job.wall_hits = None, 0
    _move(db, job, D, now, "answered")
    return Outcome(D, status)


def _record_failure(
    db: Session, job: Job, response: str, statuses: list[ResponseStatus], failing: list[ResponseStatus],
    now: datetime, wall_of: WallOf | None,
) -> Outcome:
    first = failing[0]
    if first.code == ITERATOR_EXPIRED and job.page_size:
        _discard_pages(db, job)
        job.attempts += 1
        if job.attempts <= MAX_ATTEMPTS:
            _requeue(db, job, now, "the QuickBooks iterator expired (3391); the query starts over next session")
            return Outcome(Q, first)
    nothing_applied = all(s.code in TRANSIENT_CODES or s.code == NOT_PROCESSED for s in failing) and not any(
        not s.failed for s in statuses
    )
    if first.code in TRANSIENT_CODES and nothing_applied and job.attempts < MAX_ATTEMPTS:
        job.attempts += 1
        delay = RETRY_BASE_SECONDS * 2 ** (job.attempts - 1)
        job.response_xml = response
        _requeue(db, job, now, f"QuickBooks was busy ({first.code}: {first.message}); retry {job.attempts} of "
                               f"{MAX_ATTEMPTS} in {delay} s", not_before=now + timedelta(seconds=delay))
        return Outcome(Q, first)
    job.response_xml = response
    error = f"{first.request_type} failed with status {first.code}: {first.message}"
    if len(statuses) > 1:
        error += f" ({len(failing)} of {len(statuses)} requests failed)"
    wall = wall_of(first) if wall_of is not None and nothing_applied_or_blocked(statuses) else None
    if wall is not None and hit_wall(db, job, wall, now, error):
        return Outcome(Q, first, held=True)
    if JobState(job.state) is S:
        _move(db, job, F, now, error)
    return Outcome(F, first)


def nothing_applied_or_blocked(statuses: list[ResponseStatus]) -> bool:
    """Holding (and later resending) a job is safe only if no request in it took effect."""
    return not any(not s.failed for s in statuses)


def _record_page(db: Session, job: Job, response: str, status: ResponseStatus, now: datetime) -> Outcome:
    seq = db.scalar(select(func.count()).select_from(JobPage).where(JobPage.job_id == job.id)) or 0
    db.add(JobPage(job_id=job.id, seq=seq, response_xml=response))
    job.iterator_id = status.iterator_id
    job.sent_at = None  # answered; the next page is asked for by the next sendRequestXML
    job.updated_at = now
    _record(db, job, S, S, now, f"page {seq + 1} received, {status.iterator_remaining} records remain")
    return Outcome(S, status, continues=True)


def _merge_pages(db: Session, job: Job, last: str) -> str:
    if not job.page_size:
        return last  # only paged queries have pages
    pages = list(db.scalars(select(JobPage.response_xml).where(JobPage.job_id == job.id).order_by(JobPage.seq)))
    if not pages:
        return last
    _discard_pages(db, job)
    return qbxml.merge_pages([*pages, last])


def _discard_pages(db: Session, job: Job) -> None:
    db.execute(delete(JobPage).where(JobPage.job_id == job.id))
    job.iterator_id = None


def record_rejection(
    db: Session, job: Job, hresult: str, message: str, now: datetime, error: str, wall: str | None = None
) -> Outcome:
    """The request processor refused the request outright (an HRESULT, no response)."""
    job.hresult = hresult
    job.status_message = message
    if wall is not None and hit_wall(db, job, wall, now, error):
        return Outcome(Q, None, held=True)
    if JobState(job.state) is S:
        _move(db, job, F, now, error)
    return Outcome(F)


# -- walls: failures that would hit every similar job ------------------------------


def hit_wall(db: Session, job: Job, wall: str, now: datetime, reason: str) -> bool:
    """Hold the job, and the queued jobs that would hit the same wall; True if held.

    A missing permission or the wrong company file would refuse every
    similar request, so sending them only repeats the refusal. They wait;
    the next session sends one of them to see whether it is fixed, and a
    success releases them all. After ``MAX_WALL_HITS`` sessions in a row at
    the same wall they fail for good (QBWC must not loop on a refusal), with
    the reason, and ``qwc-service retry`` brings them back once it is fixed.
    """
    hits = job.wall_hits + 1 if job.held_wall == wall else 1
    blocked = db.scalars(select(Job).where(Job.connection_id == job.connection_id, Job.state == Q.value,
                                           _on_wall(wall))).all()
    if hits >= MAX_WALL_HITS:
        job.wall_hits = hits
        _move(db, job, F, now, f"{reason}\n{gave_up_text(job)}")
        for other in blocked:
            if other.held_wall == wall:
                other.wall_hits = hits
                _move(db, other, F, now, f"{reason}\n{gave_up_text(other)}")
        return False
    _move(db, job, Q, now, f"held until this is fixed: {reason}")
    job.session_id, job.sent_at = None, None
    job.error = reason
    for held in [job, *blocked]:
        if held is not job:
            _record(db, held, Q, Q, now, f"held: job {job.id} hit the same wall ({wall})")
        held.held_wall, held.wall_hits = wall, hits
    return True


def gave_up_text(job: Job) -> str:
    return (f"QuickBooks refused this in {job.wall_hits} sessions in a row, so it is no longer tried; "
            f"fix the cause above, then run 'qwc-service retry {job.id}'.")


def _on_wall(wall: str):  # type: ignore[no-untyped-def]
    """Queued jobs a wall blocks: one request type for a permission, every job otherwise."""
    kind, _, request_type = wall.partition(":")
    if kind == "permission" and request_type:
        padded = literal(" ") + Job.request_types + literal(" ")
        return padded.like(f"% {request_type} %")
    return Job.id.is_not(None)


_ANY_HELD = select(Job.id).where(Job.connection_id == bindparam("connection_id"), Job.state == Q.value,
                                 Job.held_wall.is_not(None)).limit(1)
_RELEASABLE = select(Job).where(
    Job.connection_id == bindparam("connection_id"),
    Job.state == Q.value,
    Job.held_wall.is_not(None),
    or_(Job.held_wall.in_(bindparam("walls", expanding=True)), ~Job.held_wall.like("permission:%")),
)


def release_walls(db: Session, connection_id: int, request_types: str, now: datetime) -> int:
    """A request succeeded: release the jobs held behind walls it proves are gone."""
    if db.connection().execute(_ANY_HELD, {"connection_id": connection_id}).first() is None:
        return 0  # the usual case, answered from ix_jobs_held without loading anything
    walls = [f"permission:{t}" for t in request_types.split()]
    released = db.scalars(_RELEASABLE, {"connection_id": connection_id, "walls": walls}).all()
    for job in released:
        _record(db, job, Q, Q, now, f"released: a later request succeeded ({job.held_wall} is gone)")
        job.held_wall, job.wall_hits, job.error = None, 0, None
    return len(released)


def fail(db: Session, job: Job, now: datetime, error: str) -> None:
    _move(db, job, F, now, error)


def _status_dict(status: ResponseStatus) -> dict[str, object]:
    return {"request_type": status.request_type, "request_id": status.request_id, "code": status.code,
            "severity": status.severity, "message": status.message}


# -- sessions that end ------------------------------------------------------------

IN_DOUBT_TEXT = (
    "{reason}: QuickBooks may or may not have applied this write. Check in QuickBooks whether "
    "{types} was recorded; then run 'qwc-service job retry {id}' to send it again, or "
    "'qwc-service job cancel {id}' if it is already there. It will not be resent by itself."
)


def release_unanswered(db: Session, session_id: int, now: datetime, reason: str) -> tuple[int, int]:
    """Settle the jobs a session left without an answer: (requeued, in doubt).

    A query is harmless to repeat, so it goes back to the queue (an iterated
    one starts over: iterators die with the QuickBooks session). A write may
    already be in the company file, so it waits for a person.
    """
    requeued = in_doubt = 0
    for job in db.scalars(select(Job).where(Job.session_id == session_id, Job.state == S.value)):
        if job.is_write:
            _move(db, job, I, now, IN_DOUBT_TEXT.format(reason=reason, types=job.request_types.replace(" ", ", "),
                                                       id=job.id))
            in_doubt += 1
        else:
            _discard_pages(db, job)
            _requeue(db, job, now, f"{reason}; the query will be sent again")
            requeued += 1
    return requeued, in_doubt


def _requeue(db: Session, job: Job, now: datetime, reason: str, not_before: datetime | None = None) -> None:
    _move(db, job, Q, now, reason)
    job.session_id = None
    job.sent_at = None
    job.not_before = not_before
    job.error = reason if not_before else None


# -- a person's decisions ---------------------------------------------------------------


def cancel(db: Session, job_id: int, now: datetime, reason: str = "cancelled") -> Job:
    """Withdraw a queued job, settle an in-doubt write, or dismiss a failed job nobody will retry."""
    job = _locked(db, job_id)
    if JobState(job.state) not in (Q, I, F):
        raise TransitionRefused(f"job {job_id} is {job.state}; only queued, in-doubt or failed jobs can be cancelled")
    _move(db, job, C, now, reason)
    return job


def retry(db: Session, job_id: int, now: datetime, reason: str = "retried") -> Job:
    job = _locked(db, job_id)
    if JobState(job.state) not in (F, I):
        raise TransitionRefused(f"job {job_id} is {job.state}; only failed or in-doubt jobs can be retried")
    for column in ("response_xml", "statuses", "status_code", "status_severity", "status_message", "hresult",
                   "iterator_id", "finished_at"):
        setattr(job, column, None)
    job.attempts = 0
    job.held_wall, job.wall_hits = None, 0
    _discard_pages(db, job)
    _requeue(db, job, now, reason)
    job.error = None
    return job


def _locked(db: Session, job_id: int) -> Job:
    job = db.get(Job, job_id, with_for_update=True)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


# -- the state machine ------------------------------------------------------------------


def _move(db: Session, job: Job, to: JobState, now: datetime, reason: str) -> None:
    current = JobState(job.state)
    if to not in TRANSITIONS[current]:
        raise TransitionRefused(f"job {job.id} cannot go from {current.value} to {to.value}")
    job.state = to.value
    job.updated_at = now
    if to in (D, F, C, I):
        job.finished_at = now
        if to in (F, I):
            job.error = reason
    _record(db, job, current, to, now, reason)
    metrics.JOB_TRANSITIONS.labels(to.value).inc()
    if to in (D, F, I, C):
        webhooks.on_settled(db, job, now)
    if to in (F, C):
        _fail_dependents(db, job, now)


_INSERT_EVENT = insert(JobEvent)


def _record(db: Session, job: Job, old: JobState | None, new: JobState, now: datetime, reason: str) -> None:
    # A Core insert: the history row needs no unit of work, and this runs on every transition.
    db.connection().execute(_INSERT_EVENT, {"job_id": job.id, "at": now, "from_state": old.value if old else "",
                                            "to_state": new.value, "reason": reason[:4000]})


def _fail_dependents(db: Session, job: Job, now: datetime) -> None:
    """A job that failed or was cancelled takes the queued jobs waiting for it along."""
    waiting = db.scalars(
        select(Job).join(JobDependency, JobDependency.job_id == Job.id)
        .where(JobDependency.depends_on_id == job.id, Job.state == Q.value)
    ).all()
    for dependent in waiting:
        _move(db, dependent, F, now, _dependency_reason(job))


# -- reading ------------------------------------------------------------------------------


def get_job(db: Session, job_id: int) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def history(db: Session, job_id: int) -> list[JobEvent]:
    return list(db.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def dependencies(db: Session, job_id: int) -> list[int]:
    return list(db.scalars(select(JobDependency.depends_on_id).where(JobDependency.job_id == job_id)))


def list_jobs(
    db: Session,
    *,
    connection_id: int | None = None,
    states: Sequence[str] = (),
    limit: int = 1000,
    before_id: int | None = None,
) -> list[Job]:
    """Newest first; ``before_id`` continues a listing (cursor pagination)."""
    # Listings never need the payloads (an answer can be 100 MB): load them only if read.
    query = select(Job).options(defer(Job.request_xml), defer(Job.response_xml)).order_by(Job.id.desc()).limit(limit)
    if connection_id is not None:
        query = query.where(Job.connection_id == connection_id)
    if states:
        query = query.where(Job.state.in_(list(states)))
    if before_id is not None:
        query = query.where(Job.id < before_id)
    return list(db.scalars(query))


def prune(db: Session, older_than: datetime) -> int:
    """Drop the payloads of jobs finished before ``older_than``; pending jobs are never touched."""
    finished = select(Job.id).where(Job.state.in_([D.value, F.value, C.value]), Job.finished_at < older_than,
                                    or_(Job.response_xml.is_not(None), Job.request_xml != ""))
    ids = list(db.scalars(finished))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        db.execute(
            Job.__table__.update().where(Job.id.in_(chunk)).values(response_xml=None, request_xml="", statuses=None)
        )
    return len(ids)
