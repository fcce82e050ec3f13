"""Webhook delivery: signed, retried with backoff, given up at the limit, never under a lock, at least once.

A real HTTP receiver on 127.0.0.1 takes the calls; the FakeClock makes
retries due without sleeping; jobs are settled by a real Web Connector
conversation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator

import pytest
from lxml import etree
from sqlalchemy import make_url, select, text
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from conftest import FakeClock
from qwc_service import connections, queue, webhooks
from qwc_service.api import PREFIX, make_api
from qwc_service.conversation import Conversation
from qwc_service.models import Connection, Job, WebhookDelivery
from qwc_service.tokens import create_token
from test_api import ApiClient, schema_errors

QUERY = "<CustomerQueryRq><MaxReturned>1</MaxReturned></CustomerQueryRq>"
ADD = "<CustomerAddRq><CustomerAdd><Name>Joe</Name></CustomerAdd></CustomerAddRq>"


def respond(request: str, code: int = 0) -> str:
    """QuickBooks' answer to every request in ``request``, echoing requestIDs."""
    sent = etree.fromstring(request.encode())
    root = etree.Element("QBXML")
    msgs = etree.SubElement(root, "QBXMLMsgsRs")
    for rq in sent.iterfind("QBXMLMsgsRq/*"):
        etree.SubElement(msgs, rq.tag[:-2] + "Rs", requestID=rq.get("requestID", ""), statusCode=str(code),
                         statusSeverity="Error" if code >= 3000 else "Info", statusMessage=f"status {code}")
    return etree.tostring(root, encoding="unicode")


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (written independently of webhooks.sign)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


# -- a real receiver --------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    #: The statuses to answer with, in order; the last one repeats.
    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    #: Called with each delivery id while the request is being answered.
    during: Callable[[str], None] | None = None
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        with self.lock:
            self.received.append((dict(request.headers), body))
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if self.during is not None:
            try:
                self.during(request.headers.get("X-QWC-Delivery", ""))
            except Exception as exc:  # reported by the test, not lost in the server thread
                self.problems.append(f"{exc.__class__.__name__}: {exc}")
        headers = {"Location": "https://elsewhere.invalid/"} if 300 <= status < 400 else {}
        return Response(f"answer {status}", status=status, headers=headers)(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = make_server("127.0.0.1", 0, rec.app, threaded=True)
    rec.url = f"http://127.0.0.1:{server.server_port}/hooks/qwc"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def acme(add_connection, db, clock, receiver) -> Connection:
    """A connection whose webhook points at the receiver."""
    conn = add_connection()
    with db.begin() as s:
        connections.set_webhook(s, s.get(Connection, conn.id), receiver.url, clock())
    return conn


@pytest.fixture
def settle(conversation: Conversation, enqueue) -> Callable[..., Job]:
    """Enqueue a job and have the Web Connector run it; returns the settled job."""

    def run(connection: Connection, request: str = QUERY, code: int = 0, **options: Any) -> Job:
        job = enqueue(connection, request, **options)
        ticket = conversation.authenticate(connection.username, "correct horse").ticket
        sent = conversation.send_request_xml(ticket, "", "", "US", 13, 0)
        assert f'requestID="{job.id}.' in sent
        conversation.receive_response_xml(ticket, respond(sent, code))
        conversation.close_connection(ticket)
        return job

    return run


def deliveries(db, job_id: int | None = None) -> list[WebhookDelivery]:
    with db.begin() as s:
        query = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if job_id is not None:
            query = query.where(WebhookDelivery.job_id == job_id)
        return list(s.scalars(query))


def secret_of(db, connection: Connection) -> str | None:
    with db.begin() as s:
        return s.scalar(select(Connection.webhook_secret).where(Connection.id == connection.id))


# -- delivery ------------------------------------------------------------------------------------


def test_a_settled_job_is_posted_signed_to_the_connection_url(db, clock, acme, settle, receiver) -> None:
    job = settle(acme)
    assert webhooks.deliver_due(db, clock()) == 1
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Qwc-Event"] == "job.done"
    assert headers["X-Qwc-Delivery"] == str(deliveries(db, job.id)[0].id)
    assert verify_signature(secret_of(db, acme), body, headers["X-Qwc-Signature"])
    assert not verify_signature(secret_of(db, acme), body + b" ", headers["X-Qwc-Signature"])
    document = json.loads(body)
    assert schema_errors(document, {"$ref": "#/components/schemas/WebhookPayload"}) == []
    assert (document["event"], document["job"]["id"], document["job"]["state"], document["job"]["connection"]) == (
        "job.done", job.id, "done", "acme")
    assert "<" not in body.decode()  # never the qbXML payloads
    [delivery] = deliveries(db, job.id)
    assert (delivery.state, delivery.attempts, delivery.last_status, delivery.delivered_at) == (
        "delivered", 1, 200, clock())
    assert webhooks.deliver_due(db, clock()) == 0  # delivered once, not again


def test_a_job_url_wins_and_is_signed_with_a_secret_made_on_demand(db, clock, add_connection, settle, receiver):
    plain = add_connection(name="plain", username="plain-sync")  # no webhook, no secret yet
    assert secret_of(db, plain) is None
    job = settle(plain, ADD, code=3100, webhook_url=receiver.url + "?job=1")
    assert webhooks.deliver_due(db, clock()) == 1
    headers, body = receiver.received[0]
    secret = secret_of(db, plain)
    assert secret and len(secret) >= 40
    assert verify_signature(secret, body, headers["X-Qwc-Signature"])
    assert json.loads(body)["job"]["state"] == "failed" and headers["X-Qwc-Event"] == "job.failed"
    assert deliveries(db, job.id)[0].url.endswith("?job=1")


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(db, clock: FakeClock, acme, settle, receiver):
    receiver.statuses = [500, 200]
    job = settle(acme)
    assert webhooks.deliver_due(db, clock()) == 1
    [delivery] = deliveries(db, job.id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500: answer 500"
    assert delivery.next_attempt_at == clock() + timedelta(seconds=30)
    assert webhooks.deliver_due(db, clock()) == 0
    clock.advance(seconds=29)
    assert webhooks.deliver_due(db, clock()) == 0
    clock.advance(seconds=1)
    assert webhooks.deliver_due(db, clock()) == 1
    [delivery] = deliveries(db, job.id)
    assert (delivery.state, delivery.attempts, delivery.last_status, delivery.last_error) == ("delivered", 2, 200, "")
    first, second = receiver.received
    assert first[1] == second[1] and first[0]["X-Qwc-Delivery"] == second[0]["X-Qwc-Delivery"]  # the same delivery


def test_delivery_gives_up_after_the_last_attempt(db, clock: FakeClock, acme, settle, receiver) -> None:
    receiver.statuses = [503]
    job = settle(acme)
    waits = []
    while True:
        assert webhooks.deliver_due(db, clock()) == 1
        [delivery] = deliveries(db, job.id)
        if delivery.state != "pending":
            break
        waits.append((delivery.next_attempt_at - clock()).total_seconds())
        clock.advance(seconds=waits[-1])
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("failed", webhooks.MAX_ATTEMPTS, 503)
    assert len(receiver.received) == webhooks.MAX_ATTEMPTS
    clock.advance(days=1)
    assert webhooks.deliver_due(db, clock()) == 0


def test_no_answer_redirects_and_other_schemes_are_failures(db, clock, add_connection, settle, receiver) -> None:
    conn = add_connection(name="plain", username="plain-sync")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    refused = settle(conn, webhook_url=closed)
    receiver.statuses = [302]
    redirected = settle(conn, webhook_url=receiver.url)
    local_file = settle(conn, webhook_url="file:///etc/passwd")  # the CLI's --webhook is not checked
    assert webhooks.deliver_due(db, clock()) == 3
    [r] = deliveries(db, refused.id)
    assert (r.state, r.last_status) == ("pending", None) and r.last_error.startswith("no answer:")
    [d] = deliveries(db, redirected.id)
    assert (d.state, d.last_status) == ("pending", 302) and "redirects are not followed" in d.last_error
    assert len(receiver.received) == 1  # and elsewhere.invalid was not called
    [f] = deliveries(db, local_file.id)
    assert (f.state, f.attempts) == ("failed", 1) and "'file' is not http or https" in f.last_error


# -- locks, crashes and concurrency ------------------------------------------------------------------------


def _write_probe(database_url: str, delivery_id: int) -> None:
    """Write the delivery's row and take the write lock from another connection, waiting at most 0.5 s."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database, timeout=0.5, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE webhook_deliveries SET last_error = last_error WHERE id = ?", (delivery_id,))
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        conn.execute("SET lock_timeout = '500ms'")
        conn.execute("UPDATE webhook_deliveries SET last_error = last_error WHERE id = %s", (int(delivery_id),))
        conn.execute("UPDATE connections SET webhook_url = webhook_url")
        conn.rollback()


def test_the_receiver_is_called_while_no_lock_is_held(db, clock, settings, acme, settle, receiver) -> None:
    probed: list[str] = []

    def probe(delivery_id: str) -> None:
        _write_probe(settings.database_url, int(delivery_id))
        probed.append(delivery_id)

    receiver.during = probe
    settle(acme)
    assert webhooks.deliver_due(db, clock()) == 1
    assert receiver.problems == [] and len(probed) == 1


def test_the_probe_does_notice_a_held_lock(db, settings, acme, settle, receiver, clock) -> None:
    """The check above can fail: with the claim's transaction still open, the probe is refused."""
    job = settle(acme)
    [delivery] = deliveries(db, job.id)
    with db.begin() as s:
        s.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery.id).with_for_update())
        s.execute(text("UPDATE webhook_deliveries SET attempts = attempts WHERE id = :id"), {"id": delivery.id})
        with pytest.raises(Exception, match="lock"):
            _write_probe(settings.database_url, delivery.id)


class WorkerDied(BaseException):
    """Like the process being killed mid-send: nothing after the claim runs."""


def test_a_delivery_claimed_by_a_worker_that_died_becomes_due_again(db, clock: FakeClock, acme, settle, receiver):
    job = settle(acme)

    def die(request: webhooks.Request, timeout: float) -> webhooks.Result:
        raise WorkerDied()

    with pytest.raises(WorkerDied):
        webhooks.deliver_due(db, clock(), send=die)
    [delivery] = deliveries(db, job.id)
    assert (delivery.state, delivery.attempts) == ("pending", 1)
    assert webhooks.deliver_due(db, clock()) == 0  # still leased to the dead worker
    clock.advance(seconds=webhooks.CLAIM_LEASE.total_seconds())
    assert webhooks.deliver_due(db, clock()) == 1
    [delivery] = deliveries(db, job.id)
    assert (delivery.state, delivery.attempts) == ("delivered", 2)


def test_a_dead_worker_on_the_last_attempt_ends_in_failed(db, clock: FakeClock, acme, settle, receiver) -> None:
    job = settle(acme)

    def die(request: webhooks.Request, timeout: float) -> webhooks.Result:
        raise WorkerDied()

    with pytest.raises(WorkerDied):
        webhooks.deliver_due(db, clock(), send=die, max_attempts=1)
    clock.advance(seconds=webhooks.CLAIM_LEASE.total_seconds())
    assert webhooks.deliver_due(db, clock(), max_attempts=1) == 0
    [delivery] = deliveries(db, job.id)
    assert delivery.state == "failed" and "stopped before it recorded" in delivery.last_error
    assert receiver.received == []


def test_a_result_that_comes_after_the_lease_does_not_overwrite_a_newer_attempt(db, clock, acme, settle, receiver):
    job = settle(acme)
    later = clock() + webhooks.CLAIM_LEASE

    def slow(request: webhooks.Request, timeout: float) -> webhooks.Result:
        # While this worker hangs past its lease, another one delivers the same row.
        assert webhooks.deliver_due(db, later) == 1
        return webhooks.Result(False, 500, "HTTP 500")

    assert webhooks.deliver_due(db, clock(), send=slow) == 1
    [delivery] = deliveries(db, job.id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 2, 200)


def test_concurrent_workers_never_send_one_delivery_twice(db, clock, acme, enqueue, receiver) -> None:
    jobs = [enqueue(acme, QUERY) for _ in range(24)]
    for job in jobs:
        with db.begin() as s:
            queue.cancel(s, job.id, clock())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while webhooks.deliver_due(db, clock(), limit=3):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    sent = sorted(int(headers["X-Qwc-Delivery"]) for headers, _ in receiver.received)
    assert sent == sorted(d.id for d in deliveries(db)) and len(sent) == len(jobs)
    assert {d.state for d in deliveries(db)} == {"delivered"}


def test_the_worker_thread_delivers_then_stops(db, clock, acme, settle, receiver) -> None:
    worker = webhooks.WebhookWorker(db, clock=clock, interval=0.02).start()
    try:
        job = settle(acme)
        deadline = time.monotonic() + 10
        while deliveries(db, job.id)[0].state != "delivered":
            assert time.monotonic() < deadline, "the worker did not deliver"
            time.sleep(0.02)
    finally:
        worker.stop(timeout=5)
    assert not worker.running and len(receiver.received) == 1


def test_start_worker_runs_beside_a_built_service(live_server) -> None:
    worker = webhooks.start_worker(live_server.service, interval=0.02)
    assert worker.running
    worker.stop(timeout=5)
    assert not worker.running


# -- seen through the API --------------------------------------------------------------------------------


def test_delivery_attempts_are_visible_through_the_api(db, settings, clock: FakeClock, acme, settle, receiver):
    with db.begin() as s:
        token, _ = create_token(s, "ci", now=clock())
    api = ApiClient(make_api(db, settings, clock))
    receiver.statuses = [500, 200]
    job = settle(acme)
    url = f"{PREFIX}/jobs/{job.id}/webhooks"
    [pending] = api.call("GET", url, token=token, expect=200).body["deliveries"]
    assert (pending["state"], pending["attempts"], pending["event"]) == ("pending", 0, "job.done")
    assert pending["payload"]["job"]["id"] == job.id and pending["url"] == receiver.url
    webhooks.deliver_due(db, clock())
    [failed_once] = api.call("GET", url, token=token, expect=200).body["deliveries"]
    assert (failed_once["attempts"], failed_once["last_status"], failed_once["last_error"]) == (
        1, 500, "HTTP 500: answer 500")
    clock.advance(seconds=30)
    webhooks.deliver_due(db, clock())
    [delivered] = api.call("GET", url, token=token, expect=200).body["deliveries"]
    assert (delivered["state"], delivered["attempts"], delivered["last_status"]) == ("delivered", 2, 200)
    assert delivered["delivered_at"] == clock().isoformat()
