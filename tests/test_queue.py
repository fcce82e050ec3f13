"""The queue's promises: order, dependencies, scheduling, dedupe, retries, paging, and no write sent twice."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree
from sqlalchemy import select

from conftest import PG_URL, FakeClock
from qwc_service import queue
from qwc_service.conversation import Conversation
from qwc_service.exceptions import InvalidInput
from qwc_service.models import (Connection, Job, JobDependency, JobEvent, JobState, WebConnectorSession,
                                WebhookDelivery)

ADD = "<CustomerAddRq><CustomerAdd><Name>Joe</Name></CustomerAdd></CustomerAddRq>"
INVOICE = "<InvoiceAddRq><InvoiceAdd><CustomerRef><FullName>Joe</FullName></CustomerRef></InvoiceAdd></InvoiceAddRq>"
QUERY = "<CustomerQueryRq/>"


def respond(request: str, *codes: int, records: int = 0, iterator: tuple[str, int] | None = None) -> str:
    """QuickBooks' answer to a request, echoing each requestID; one status code per request."""
    sent = etree.fromstring(request.encode())
    root = etree.Element("QBXML")
    msgs = etree.SubElement(root, "QBXMLMsgsRs")
    for index, rq in enumerate(sent.iterfind("QBXMLMsgsRq/*")):
        code = codes[index] if index < len(codes) else 0
        rs = etree.SubElement(msgs, rq.tag[:-2] + "Rs", requestID=rq.get("requestID", ""), statusCode=str(code),
                              statusSeverity="Error" if code >= 3000 else "Info", statusMessage=f"status {code}")
        if iterator is not None:
            rs.set("iteratorID", iterator[0])
            rs.set("iteratorRemainingCount", str(iterator[1]))
        for n in range(records):
            etree.SubElement(etree.SubElement(rs, "InvoiceRet"), "TxnID").text = f"{iterator and iterator[1]}-{n}"
    return etree.tostring(root, encoding="unicode")


@pytest.fixture
def session(conversation: Conversation, add_connection):
    """A connection, and a function that logs in and returns the ticket."""
    conn = add_connection()

    def login() -> str:
        result = conversation.authenticate("acme-sync", "correct horse")
        assert result.status in ("", "none"), result
        return result.ticket

    return conn, login


def next_request(conversation: Conversation, ticket: str) -> str:
    return conversation.send_request_xml(ticket, "", "", "US", 13, 0)


def test_an_invoice_never_goes_before_its_customer(conversation, session, enqueue, get_job) -> None:
    conn, login = session
    customer = enqueue(conn, ADD)
    invoice = enqueue(conn, INVOICE, after=[customer.id], priority=10)  # priority cannot jump the dependency
    ticket = login()
    first = next_request(conversation, ticket)
    assert "<CustomerAddRq" in first
    assert conversation.receive_response_xml(ticket, respond(first)) == 50
    second = next_request(conversation, ticket)
    assert "<InvoiceAddRq" in second
    assert conversation.receive_response_xml(ticket, respond(second)) == 100
    assert get_job(invoice.id).state == "done"


def test_a_failed_dependency_fails_its_dependents_with_the_reason(conversation, session, enqueue, get_job) -> None:
    conn, login = session
    customer = enqueue(conn, ADD)
    invoice = enqueue(conn, INVOICE, after=[customer.id])
    payment = enqueue(conn, "<ReceivePaymentAddRq/>", after=[invoice.id])
    ticket = login()
    conversation.receive_response_xml(ticket, respond(next_request(conversation, ticket), 3100))
    assert next_request(conversation, ticket) == ""
    invoice, payment = get_job(invoice.id), get_job(payment.id)
    assert invoice.state == "failed" and f"waits for job {customer.id} (CustomerAdd), which failed" in invoice.error
    assert payment.state == "failed" and f"waits for job {invoice.id}" in payment.error


def test_enqueue_after_a_cancelled_job_fails_at_once(db, session, enqueue, get_job, clock) -> None:
    conn, _ = session
    customer = enqueue(conn, ADD)
    with db.begin() as s:
        queue.cancel(s, customer.id, clock())
    invoice = enqueue(conn, INVOICE, after=[customer.id])
    assert invoice.state == "failed" and "was cancelled" in invoice.error


def test_dependencies_must_belong_to_the_connection(db, session, add_connection, enqueue) -> None:
    from qwc_service.exceptions import InvalidInput

    conn, _ = session
    other = enqueue(add_connection(name="other", username="other-sync"), QUERY)
    with pytest.raises(InvalidInput, match=f"--after {other.id}"):
        enqueue(conn, QUERY, after=[other.id])


def test_scheduled_jobs_wait_without_opening_quickbooks(conversation, session, enqueue, clock: FakeClock) -> None:
    conn, _ = session
    enqueue(conn, QUERY, not_before=clock() + timedelta(hours=1))
    assert conversation.authenticate("acme-sync", "correct horse").status == "none"
    clock.advance(hours=1)
    assert conversation.authenticate("acme-sync", "correct horse").status == ""


def test_dedupe_key_returns_or_replaces_the_pending_job(db, session, clock) -> None:
    conn, login = session
    with db.begin() as s:
        c = s.get(Connection, conn.id)
        first = queue.enqueue(s, c, QUERY, now=clock(), key="sync-customers")
        again = queue.enqueue(s, c, ADD, now=clock(), key="sync-customers")
        assert (again.created, again.job.id, again.job.request_types) == (False, first.job.id, "CustomerQuery")
        replaced = queue.enqueue(s, c, ADD, now=clock(), key="sync-customers", replace=True)
        assert (replaced.created, replaced.job.request_types, replaced.job.is_write) == (False, "CustomerAdd", True)
        replaced.job.state = JobState.DONE.value  # once it is no longer pending, the key is free
        assert queue.enqueue(s, c, QUERY, now=clock(), key="sync-customers").created


def test_transient_errors_retry_with_backoff_then_fail(conversation, session, enqueue, get_job, clock) -> None:
    conn, login = session
    job = enqueue(conn, ADD)
    delays = []
    for attempt in range(1, queue.MAX_ATTEMPTS + 2):
        ticket = login()
        request = next_request(conversation, ticket)
        assert request, f"attempt {attempt} was not sent"
        conversation.receive_response_xml(ticket, respond(request, 3175))
        conversation.close_connection(ticket)
        current = get_job(job.id)
        if current.state == "failed":
            break
        delays.append((current.not_before - clock()).total_seconds())
        clock.advance(seconds=delays[-1])
    assert delays == [30, 60, 120, 240, 480]
    assert current.state == "failed" and current.attempts == queue.MAX_ATTEMPTS
    assert "3175" in current.error


def test_no_retry_when_part_of_the_job_was_applied(conversation, session, enqueue, get_job) -> None:
    conn, login = session
    doc = ('<QBXML><QBXMLMsgsRq onError="continueOnError">' + ADD + INVOICE + "</QBXMLMsgsRq></QBXML>")
    job = enqueue(conn, doc)
    ticket = login()
    conversation.receive_response_xml(ticket, respond(next_request(conversation, ticket), 0, 3175))
    job = get_job(job.id)
    assert job.state == "failed"  # retrying would add the customer twice
    assert [s["code"] for s in job.statuses] == [0, 3175]
    assert "1 of 2 requests failed" in job.error


def test_paged_query_continues_in_the_session_and_merges_pages(conversation, session, enqueue, get_job) -> None:
    conn, login = session
    job = enqueue(conn, "<InvoiceQueryRq/>", page_size=2)
    ticket = login()
    first = next_request(conversation, ticket)
    assert 'iterator="Start"' in first and "<MaxReturned>2</MaxReturned>" in first
    assert conversation.receive_response_xml(ticket, respond(first, records=2, iterator=("{it}", 3))) < 100
    second = next_request(conversation, ticket)
    assert 'iterator="Continue"' in second and 'iteratorID="{it}"' in second
    conversation.receive_response_xml(ticket, respond(second, records=2, iterator=("{it}", 1)))
    third = next_request(conversation, ticket)
    assert conversation.receive_response_xml(ticket, respond(third, records=1, iterator=("{it}", 0))) == 100
    done = get_job(job.id)
    assert done.state == "done"
    ids = [t.text for t in etree.fromstring(done.response_xml.encode()).iter("TxnID")]
    assert ids == ["3-0", "3-1", "1-0", "1-1", "0-0"]


def test_a_session_ending_mid_iteration_starts_over(conversation, session, enqueue, get_job, db) -> None:
    conn, login = session
    job = enqueue(conn, "<InvoiceQueryRq/>", page_size=2)
    ticket = login()
    conversation.receive_response_xml(ticket, respond(next_request(conversation, ticket), records=2,
                                                      iterator=("{old}", 5)))
    conversation.close_connection(ticket)
    assert get_job(job.id).state == "queued" and get_job(job.id).iterator_id is None
    ticket = login()
    restarted = next_request(conversation, ticket)
    assert 'iterator="Start"' in restarted and "{old}" not in restarted


def test_expired_iterator_restarts_the_query(conversation, session, enqueue, get_job) -> None:
    conn, login = session
    job = enqueue(conn, "<InvoiceQueryRq/>", page_size=2)
    ticket = login()
    conversation.receive_response_xml(ticket, respond(next_request(conversation, ticket), records=2,
                                                      iterator=("{it}", 5)))
    conversation.receive_response_xml(ticket, respond(next_request(conversation, ticket), 3391))
    assert get_job(job.id).state == "queued"


def test_in_doubt_write_is_resent_only_when_a_person_says_so(conversation, session, enqueue, get_job, db, clock):
    conn, login = session
    job = enqueue(conn, ADD)
    ticket = login()
    next_request(conversation, ticket)
    conversation.close_connection(ticket)  # the answer never came
    assert get_job(job.id).state == "in_doubt"
    assert conversation.authenticate("acme-sync", "correct horse").status == "none"  # not resent by itself
    with db.begin() as s:
        queue.retry(s, job.id, clock(), "retried by a person")
    ticket = login()
    assert "<CustomerAddRq" in next_request(conversation, ticket)
    with db.begin() as s:
        states = [(e.from_state, e.to_state) for e in queue.history(s, job.id)]
    assert states == [("", "queued"), ("queued", "sent"), ("sent", "in_doubt"), ("in_doubt", "queued"),
                      ("queued", "sent")]


@pytest.mark.parametrize("state,action,allowed", [
    ("queued", "cancel", True), ("in_doubt", "cancel", True), ("failed", "cancel", True), ("sent", "cancel", False),
    ("done", "cancel", False),
    ("failed", "retry", True), ("in_doubt", "retry", True), ("queued", "retry", False), ("done", "retry", False),
])
def test_people_can_only_make_safe_transitions(db, session, enqueue, clock, state, action, allowed) -> None:
    conn, _ = session
    job = enqueue(conn, ADD)
    with db.begin() as s:
        s.get(Job, job.id).state = state
    with db.begin() as s:
        if allowed:
            getattr(queue, action)(s, job.id, clock())
        else:
            with pytest.raises(queue.TransitionRefused, match=f"job {job.id} is {state}"):
                getattr(queue, action)(s, job.id, clock())


def test_prune_drops_old_payloads_but_never_pending_jobs(db, session, enqueue, clock, get_job) -> None:
    conn, _ = session
    old_done, pending = enqueue(conn, QUERY), enqueue(conn, QUERY)
    with db.begin() as s:
        job = s.get(Job, old_done.id)
        job.state, job.finished_at, job.response_xml = "done", clock() - timedelta(days=40), "<QBXML/>"
    with db.begin() as s:
        assert queue.prune(s, clock() - timedelta(days=30)) == 1
    assert get_job(old_done.id).response_xml is None and get_job(old_done.id).request_xml == ""
    assert get_job(pending.id).request_xml.startswith("<QBXML>")


def test_responses_are_stored_compressed(db, session, enqueue, engine) -> None:
    from sqlalchemy import text

    conn, _ = session
    job = enqueue(conn, QUERY)
    big = "<QBXML><QBXMLMsgsRs>" + "<CustomerQueryRs statusCode='0'/>" * 5000 + "</QBXMLMsgsRs></QBXML>"
    with db.begin() as s:
        s.get(Job, job.id).response_xml = big
    with engine.connect() as c:
        stored = c.execute(text("SELECT response_xml FROM jobs WHERE id = :id"), {"id": job.id}).scalar()
    assert len(stored) < len(big) / 20


@pytest.mark.skipif(not PG_URL, reason="row locking across connections needs PostgreSQL")
def test_concurrent_claims_never_share_a_job(db, session, enqueue, clock) -> None:
    conn, _ = session
    for _ in range(40):
        enqueue(conn, QUERY)
    with db.begin() as s:
        sessions = []
        for n in range(4):
            row = WebConnectorSession(ticket_hash=f"{n:064d}", connection_id=conn.id, created_at=clock(),
                                      last_seen_at=clock())
            s.add(row)
            s.flush()
            sessions.append(row.id)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(session_id: int) -> None:
        while True:
            with db.begin() as s:
                job = queue.claim_next(s, conn.id, session_id, clock())
                if job is None:
                    return
                with lock:
                    claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(sid,)) for sid in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(claimed) == 40 and len(set(claimed)) == 40
    with db.begin() as s:
        assert s.query(JobEvent).filter_by(to_state="sent").count() == 40


# -- enqueue_many: enqueue for each item, in bulk ----------------------------------------------------

HOOK = "https://example.invalid/hook"


def _batch(ok: int, failed: int) -> list[str | queue.NewJob]:
    """Every option and every path of enqueue, in one batch; ``ok`` is queued, ``failed`` failed."""
    return [
        QUERY,
        queue.NewJob(ADD, priority=5, webhook_url=HOOK),
        queue.NewJob("<InvoiceQueryRq/>", page_size=50, not_before=datetime(2026, 12, 1, 9, tzinfo=timezone.utc)),
        queue.NewJob("<CustomerAddRq><CustomerAdd><Name>Zoë 😀</Name></CustomerAdd></CustomerAddRq>"),
        queue.NewJob(INVOICE, after=[ok, ok]),
        queue.NewJob(INVOICE, after=[ok, failed], webhook_url=HOOK),  # fails at once, a webhook is owed
        queue.NewJob(QUERY, key=" nightly "),  # a new key (stripped)
        queue.NewJob(ADD, key="nightly"),  # answered with the previous item's job
        queue.NewJob(ADD, key="nightly", replace=True),  # which now carries this request
        queue.NewJob(QUERY, key="before"),  # a job queued before the batch has this key
        queue.NewJob(ADD, key="gone", after=[failed]),  # fails at once, so its key stays free...
        queue.NewJob(QUERY, key="gone"),  # ...and this is a new job
        queue.NewJob(QUERY, key="before", after=[999_999]),  # answered by key: after is not looked at, as in enqueue
        queue.NewJob(ADD, priority=-3),
    ]


def _prepare(db, add_connection, clock, name: str) -> tuple[int, int, int]:
    conn = add_connection(name=name, username=f"{name}-sync")
    with db.begin() as s:
        c = s.get(Connection, conn.id)
        ok = queue.enqueue(s, c, QUERY, now=clock()).job.id
        failed = queue.enqueue(s, c, ADD, now=clock()).job.id
        queue.fail(s, s.get(Job, failed), clock(), "QuickBooks said no")
        queue.enqueue(s, c, QUERY, now=clock(), key="before")
    return conn.id, ok, failed


def _state_of(s, connection_id: int) -> dict[str, object]:
    """Everything a connection's jobs left in the database, with ids replaced by their rank."""
    jobs = [dict(row._mapping) for row in s.execute(select(Job.__table__).where(Job.connection_id == connection_id)
                                                    .order_by(Job.id))]
    rank = {job["id"]: n for n, job in enumerate(jobs)}

    def ids_to_ranks(text: str | None) -> str | None:
        return re.sub(r"job (\d+)", lambda m: f"job #{rank[int(m.group(1))]}", text) if text else text

    events: dict[int, list[tuple[object, ...]]] = {}
    for e in s.scalars(select(JobEvent).where(JobEvent.job_id.in_(rank)).order_by(JobEvent.id)):
        events.setdefault(rank[e.job_id], []).append((e.at, e.from_state, e.to_state, ids_to_ranks(e.reason)))
    return {
        "jobs": [{**{k: v for k, v in job.items() if k not in ("id", "connection_id")},
                  "error": ids_to_ranks(job["error"])} for job in jobs],
        "events": events,
        "dependencies": sorted((rank[d.job_id], rank[d.depends_on_id]) for d in s.scalars(
            select(JobDependency).where(JobDependency.job_id.in_(rank)))),
        "webhooks": sorted((rank[w.job_id], w.url, w.event) for w in s.scalars(
            select(WebhookDelivery).where(WebhookDelivery.job_id.in_(rank)))),
        "rank": rank,
    }


def test_enqueue_many_writes_exactly_what_enqueue_writes(db, add_connection, clock) -> None:
    one_by_one, ok_a, failed_a = _prepare(db, add_connection, clock, "one")
    batched, ok_b, failed_b = _prepare(db, add_connection, clock, "many")
    clock.advance(seconds=5)
    with db.begin() as s:
        c = s.get(Connection, one_by_one)
        expected = []
        for item in _batch(ok_a, failed_a):
            item = queue.NewJob(item) if isinstance(item, str) else item
            expected.append(queue.enqueue(s, c, item.request, now=clock(), priority=item.priority, after=item.after,
                                          key=item.key, replace=item.replace, not_before=item.not_before,
                                          page_size=item.page_size, webhook_url=item.webhook_url))
        expected_answers = [(r.job.id, r.created, r.warnings) for r in expected]
    with db.begin() as s:
        results = queue.enqueue_many(s, s.get(Connection, batched), _batch(ok_b, failed_b), now=clock())
        # The jobs answered are the session's own, as if loaded: nothing pending, every column as stored.
        assert not s.new and not s.dirty
        for result in results:
            stored = dict(s.execute(select(Job.__table__).where(Job.id == result.job.id)).one()._mapping)
            assert {column: getattr(result.job, column) for column in stored} == stored
        answers = [(r.job.id, r.created, r.warnings) for r in results]
    with db.begin() as s:
        want, got = _state_of(s, one_by_one), _state_of(s, batched)
    assert got["jobs"] == want["jobs"] and got["events"] == want["events"]
    assert got["dependencies"] == want["dependencies"] and got["webhooks"] == want["webhooks"]
    assert [(got["rank"][i], c, w) for i, c, w in answers] == [(want["rank"][i], c, w) for i, c, w in expected_answers]
    assert [c for _, c, _ in answers] == [True] * 7 + [False, False, False, True, True, False, True]
    assert answers[7][0] == answers[8][0] == answers[6][0] and "U+1F600" in answers[3][2][0]
    created = [i for i, c, _ in answers if c]
    assert created == sorted(created)  # ids ascend in input order: handed out in the same order


def test_enqueue_many_works_on_sqlite_without_returning(db, session, clock, monkeypatch) -> None:
    conn, _ = session
    engine = db.kw["bind"]
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite before 3.35 has no INSERT … RETURNING")
    from sqlalchemy import event

    monkeypatch.setattr(engine.dialect, "insert_returning", False)  # as SQLAlchemy sets it below 3.35
    sent: list[str] = []
    record = lambda conn, cursor, statement, *rest: sent.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", record)
    try:
        with db.begin() as s:
            results = queue.enqueue_many(s, s.get(Connection, conn.id), ["<ItemQueryRq/>", "<VendorQueryRq/>",
                                                                         ADD], now=clock())
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not [statement for statement in sent if "RETURNING" in statement.upper()]  # a syntax error there
    with db.begin() as s:
        stored = {j.id: j.request_types for j in s.scalars(select(Job).where(Job.id.in_([r.job.id for r in results])))}
    assert [stored[r.job.id] for r in results] == ["ItemQuery", "VendorQuery", "CustomerAdd"]


def test_a_batch_is_handed_out_by_priority_then_input_order(conversation, session, db, clock) -> None:
    conn, login = session
    with db.begin() as s:
        customer = queue.enqueue(s, s.get(Connection, conn.id), ADD, now=clock()).job.id
        queue.enqueue_many(s, s.get(Connection, conn.id), [
            queue.NewJob(INVOICE, after=[customer], priority=10),  # waits for the customer despite its priority
            "<ItemQueryRq/>", "<VendorQueryRq/>",
            queue.NewJob("<AccountQueryRq/>", priority=1),
            queue.NewJob("<ClassQueryRq/>", not_before=clock() + timedelta(hours=1)),
        ], now=clock())
    ticket = login()
    sent = []
    while request := next_request(conversation, ticket):
        sent.append(etree.fromstring(request.encode()).find("QBXMLMsgsRq")[0].tag)
        conversation.receive_response_xml(ticket, respond(request))
    assert sent == ["AccountQueryRq", "CustomerAddRq", "InvoiceAddRq", "ItemQueryRq", "VendorQueryRq"]


def _count(s) -> tuple[int, int, int]:
    return (s.query(Job).count(), s.query(JobEvent).count(), s.query(JobDependency).count())


@pytest.mark.parametrize("make_bad", [
    lambda theirs: "<CustomerQueryRq><MaxReturned>5</MaxReturned>\n<Oops></CustomerQueryRq>",
    lambda theirs: "<Customer/>",
    lambda theirs: "",
    lambda theirs: queue.NewJob(ADD, page_size=10),
    lambda theirs: queue.NewJob(QUERY, page_size=0),
    lambda theirs: queue.NewJob(QUERY, key="x" * 201),
    lambda theirs: queue.NewJob(QUERY, key="  "),
    lambda theirs: queue.NewJob(QUERY, after=[424242]),
    lambda theirs: queue.NewJob(QUERY, after=[theirs]),  # another connection's job
])
def test_one_bad_item_refuses_the_batch_before_anything_is_written(db, session, add_connection, enqueue, clock,
                                                                   make_bad) -> None:
    conn, _ = session
    theirs = enqueue(add_connection(name="other", username="other-sync"), QUERY)
    dependency = enqueue(conn, QUERY)
    bad = make_bad(theirs.id)
    with db.begin() as s:  # what enqueue says about the same item
        item = queue.NewJob(bad) if isinstance(bad, str) else bad
        with pytest.raises(InvalidInput) as alone:
            queue.enqueue(s, s.get(Connection, conn.id), item.request, now=clock(), after=item.after, key=item.key,
                          page_size=item.page_size)
    with db.begin() as s:
        before = _count(s)
        batch = [QUERY, queue.NewJob(ADD, key="k", after=[dependency.id]), bad, QUERY]
        with pytest.raises(InvalidInput) as refused:
            queue.enqueue_many(s, s.get(Connection, conn.id), batch, now=clock())
        assert type(refused.value) is type(alone.value)  # a QbxmlError stays one (the API answers 422)
        assert str(refused.value) == f"item 2: {alone.value}"
        assert _count(s) == before and not s.new  # not even inside the caller's transaction


@pytest.mark.parametrize("bad,message", [
    (queue.NewJob(QUERY, not_before=datetime(2026, 12, 1, 9)), "item 1: not_before must be timezone-aware"),
    (queue.NewJob(QUERY, priority="high"), "item 1: priority, page_size and the ids in after must be 32-bit"),
    (queue.NewJob(QUERY, priority=2**31), "item 1: priority, page_size and the ids in after must be 32-bit"),
    (queue.NewJob(QUERY, after=[True]), "item 1: priority, page_size and the ids in after must be 32-bit"),
    (queue.NewJob(b"<CustomerQueryRq/>"), "item 1: the request must be a string holding qbXML"),
    ({"request": QUERY}, "item 1: expected a qbXML string or a NewJob, not dict"),
])
def test_items_that_would_fail_in_the_database_are_refused_up_front(db, session, clock, bad, message) -> None:
    conn, _ = session
    with db.begin() as s:
        with pytest.raises(InvalidInput, match=re.escape(message)):
            queue.enqueue_many(s, s.get(Connection, conn.id), [QUERY, bad], now=clock())
        assert _count(s) == (0, 0, 0)


def test_batches_are_at_most_max_batch(db, session, clock) -> None:
    conn, _ = session
    with db.begin() as s:
        c = s.get(Connection, conn.id)
        with pytest.raises(InvalidInput, match=f"at most {queue.MAX_BATCH} jobs; this one has {queue.MAX_BATCH + 1}"):
            queue.enqueue_many(s, c, [QUERY] * (queue.MAX_BATCH + 1), now=clock())
        assert _count(s) == (0, 0, 0)
        assert queue.enqueue_many(s, c, [], now=clock()) == []
        full = queue.enqueue_many(s, c, [f"<CustomerQueryRq><Name>{n}</Name></CustomerQueryRq>"
                                         for n in range(queue.MAX_BATCH)], now=clock())
        assert [f"<Name>{n}</Name>" in r.job.request_xml for n, r in enumerate(full)] == [True] * queue.MAX_BATCH
        ids = [r.job.id for r in full]
        assert ids == list(range(ids[0], ids[0] + queue.MAX_BATCH))
        assert _count(s) == (queue.MAX_BATCH, queue.MAX_BATCH, 0)


@pytest.mark.skipif(not PG_URL, reason="row locking across connections needs PostgreSQL")
def test_concurrent_batches_with_one_key_add_one_job(db, session, clock) -> None:
    conn, _ = session
    barrier = threading.Barrier(4)
    answers: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        with db.begin() as s:
            results = queue.enqueue_many(s, s.get(Connection, conn.id), [QUERY, queue.NewJob(ADD, key="k"), QUERY],
                                         now=clock())
            with lock:
                answers.append((results[1].job.id, results[1].created))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 4 and len({job_id for job_id, _ in answers}) == 1
    assert sorted(created for _, created in answers) == [False, False, False, True]
    with db.begin() as s:
        assert s.query(Job).count() == 1 + 4 * 2
