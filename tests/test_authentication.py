"""The dedicated sync user: who gets in, lockouts, the fast path, busy sessions and the audit trail."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from conftest import FakeClock
from qwc_service import authentication, health
from qwc_service.conversation import NVU_RESULT, AuthResult, Conversation
from qwc_service.models import AuthEvent, Connection, SessionState, WebConnectorSession
from qwc_service.passwords import Passwords
from qwc_service.wsgi import client_address, parse_networks

QUERY = "<CustomerQueryRq/>"


class CountingPasswords(Passwords):
    """Real argon2, counting how often the slow check runs."""

    verifications = 0

    def verify(self, stored_hash, password):  # type: ignore[override]
        type(self).verifications += 1
        return super().verify(stored_hash, password)


@pytest.fixture
def strict(db, settings, clock) -> Conversation:
    """Small limits so the tests reach them quickly."""
    tight = replace(settings, lockout_failures=3, lockout_window_seconds=60, lockout_connection_failures=5,
                    lockout_max_seconds=3600)
    return Conversation(db, tight, Passwords(time_cost=1, memory_cost=8, parallelism=1), clock)


def events(db) -> list[tuple[str, str, str]]:
    with db.begin() as s:
        return [(e.result, e.client_address, e.detail) for e in s.scalars(select(AuthEvent).order_by(AuthEvent.id))]


def test_every_refusal_is_the_same_nvu(strict, add_connection, enqueue, db) -> None:
    conn = add_connection()
    other = add_connection(name="other", username="other-sync", password="other pw")
    add_connection(name="off", username="off-sync", password="pw")
    enqueue(conn, QUERY)
    with db.begin() as s:
        s.get(Connection, 3).enabled = False
    attempts = [("acme-sync", "wrong"), ("ghost", "correct horse"), ("other-sync", "correct horse"),
                ("off-sync", "pw"), ("", "")]
    answers = [strict.authenticate(u, p, f"10.0.0.{i}").as_array() for i, (u, p) in enumerate(attempts)]
    assert all(a == NVU_RESULT.as_array() == ["", "nvu"] for a in answers)
    assert [detail for _, _, detail in events(db)] == [
        "wrong password", "unknown user", "wrong password", "connection disabled", "unknown user"]
    assert other.username == "other-sync"


def test_unknown_user_and_wrong_password_take_the_same_time(db, settings, clock, enqueue) -> None:
    from qwc_service import connections

    # Costly enough that argon2 dominates, as it does in production.
    passwords = Passwords(time_cost=2, memory_cost=4096, parallelism=1)
    conversation = Conversation(db, replace(settings, lockout_failures=10_000, lockout_connection_failures=10_000),
                                passwords, clock)
    with db.begin() as s:
        conn = connections.add_connection(s, name="acme", username="acme-sync", password="correct horse",
                                          passwords=passwords, now=clock())
    enqueue(conn, QUERY)

    def timed(username: str) -> float:
        start = time.perf_counter()
        assert conversation.authenticate(username, "not the password", "10.1.1.1").status == "nvu"
        return time.perf_counter() - start

    samples = {"acme-sync": [], "nobody-here": []}
    for _ in range(25):
        for username in samples:  # interleaved, so machine noise hits both alike
            samples[username].append(timed(username))
    known, unknown = (statistics.median(samples[u]) for u in samples)
    # Skipping argon2 for unknown users would make them ~10x faster; noise on a busy
    # 2-core machine stays well inside this band.
    assert 0.5 < known / unknown < 2.0, (known, unknown)


def test_lockout_then_unlock(strict, add_connection, enqueue, db, clock: FakeClock) -> None:
    conn = add_connection()
    enqueue(conn, QUERY)
    for _ in range(3):
        assert strict.authenticate("acme-sync", "guess", "203.0.113.9").status == "nvu"
    # locked: even the right password is refused, without being checked
    assert strict.authenticate("acme-sync", "correct horse", "203.0.113.9").status == "nvu"
    assert events(db)[-1] == ("locked", "203.0.113.9", "locked out")
    # another address (the real Web Connector) is not affected
    assert strict.authenticate("acme-sync", "correct horse", "192.0.2.50").status == ""

    with db.begin() as s:
        assert authentication.unlock(s, s.get(Connection, conn.id), clock(), 3600) >= 2
    assert strict.authenticate("acme-sync", "correct horse", "203.0.113.9").status in ("", "busy")


def test_lockouts_grow_and_expire(strict, add_connection, enqueue, db, clock: FakeClock) -> None:
    enqueue(add_connection(), QUERY)

    def lock_out() -> None:
        for _ in range(3):
            strict.authenticate("acme-sync", "guess", "198.51.100.7")

    lock_out()
    clock.advance(seconds=59)
    assert strict.authenticate("acme-sync", "correct horse", "198.51.100.7").status == "nvu"
    clock.advance(seconds=2)  # the first lockout (one window, 60 s) is over
    assert strict.authenticate("acme-sync", "correct horse", "198.51.100.7").status == ""
    strict.close_connection("x")
    with db.begin() as s:  # end the session opened above so the next login is not busy
        for session in s.scalars(select(WebConnectorSession)):
            session.state = SessionState.CLOSED.value
    lock_out()
    clock.advance(seconds=61)  # the second lockout lasts twice as long
    assert strict.authenticate("acme-sync", "correct horse", "198.51.100.7").status == "nvu"
    clock.advance(seconds=60)
    assert strict.authenticate("acme-sync", "correct horse", "198.51.100.7").status == ""


def test_unknown_user_failures_lock_the_address(strict, add_connection, enqueue) -> None:
    enqueue(add_connection(), QUERY)
    for i in range(3):
        strict.authenticate(f"user{i}", "x", "203.0.113.77")
    assert strict.authenticate("acme-sync", "correct horse", "203.0.113.77").status == "nvu"
    assert strict.authenticate("acme-sync", "correct horse", "203.0.113.78").status == ""


def test_distributed_attack_spares_the_known_web_connector(strict, add_connection, enqueue, clock) -> None:
    conn = add_connection()
    enqueue(conn, QUERY)
    known = strict.authenticate("acme-sync", "correct horse", "192.0.2.10")
    strict.close_connection(known.ticket)
    for i in range(5):  # five addresses, one failure each: below the per-address limit
        strict.authenticate("acme-sync", "guess", f"203.0.113.{i}")
    # the connection is now locked for addresses it has never seen succeed ...
    assert strict.authenticate("acme-sync", "correct horse", "203.0.113.200").status == "nvu"
    # ... but not for the real Web Connector's
    assert strict.authenticate("acme-sync", "correct horse", "192.0.2.10").status == ""


def test_correct_logins_skip_argon2_wrong_ones_never_do(db, settings, clock, add_connection, enqueue) -> None:
    enqueue(add_connection(), QUERY)
    passwords = CountingPasswords(time_cost=1, memory_cost=8, parallelism=1)
    conversation = Conversation(db, settings, passwords, clock)
    CountingPasswords.verifications = 0
    for _ in range(5):
        result = conversation.authenticate("acme-sync", "correct horse", "192.0.2.1")
        conversation.close_connection(result.ticket)
    assert CountingPasswords.verifications == 1
    for _ in range(3):
        conversation.authenticate("acme-sync", "correct horsf", "192.0.2.1")
    assert CountingPasswords.verifications == 4


def test_changed_password_invalidates_the_fast_path(db, settings, clock, add_connection, enqueue) -> None:
    from qwc_service import connections

    conn = add_connection()
    enqueue(conn, QUERY)
    conversation = Conversation(db, settings, Passwords(time_cost=1, memory_cost=8, parallelism=1), clock)
    first = conversation.authenticate("acme-sync", "correct horse", "192.0.2.1")
    conversation.close_connection(first.ticket)
    with db.begin() as s:
        connections.set_password(s, s.get(Connection, conn.id), "new horse", conversation.passwords, clock())
    assert conversation.authenticate("acme-sync", "correct horse", "192.0.2.1").status == "nvu"
    assert conversation.authenticate("acme-sync", "new horse", "192.0.2.1").status == ""


def test_every_result_is_audited(conversation, add_connection, enqueue, db, clock) -> None:
    conn = add_connection()
    assert conversation.authenticate("acme-sync", "correct horse", "192.0.2.1").status == "none"
    enqueue(conn, QUERY)
    assert conversation.authenticate("acme-sync", "correct horse", "192.0.2.1").status == ""
    assert conversation.authenticate("acme-sync", "correct horse", "192.0.2.2").status == "busy"
    assert conversation.authenticate("acme-sync", "nope", "192.0.2.3").status == "nvu"
    assert [(r, a) for r, a, _ in events(db)] == [
        ("none", "192.0.2.1"), ("ok", "192.0.2.1"), ("busy", "192.0.2.2"), ("nvu", "192.0.2.3")]


def test_pruning_events_keeps_what_logins_and_health_rely_on(strict, add_connection, enqueue, db, clock) -> None:
    conn = add_connection()
    for address in ("192.0.2.10", "192.0.2.10", "192.0.2.11"):  # idle polls ("none") from two addresses
        assert strict.authenticate("acme-sync", "correct horse", address).status == "none"
    strict.authenticate("acme-sync", "guess", "203.0.113.9")
    strict.authenticate("nobody", "guess", "203.0.113.9")  # unknown user: no connection
    polled_at = clock()
    clock.advance(days=10)  # pruned at 7 days, within the 30 days an address stays known
    strict.authenticate("acme-sync", "guess", "203.0.113.9")  # recent: kept
    with db.begin() as s:
        assert authentication.prune_events(s, clock() - timedelta(days=7)) == 3
    assert [(r, a) for r, a, _ in events(db)] == [
        ("none", "192.0.2.10"), ("none", "192.0.2.11"), ("nvu", "203.0.113.9")]
    with db.begin() as s:
        assert authentication.prune_events(s, clock() - timedelta(days=7)) == 0
        assert health.connection_health(s, s.get(Connection, conn.id), clock()).last_authenticate == polled_at
    # The kept success still proves the real Web Connector's address when the connection is attacked.
    enqueue(conn, QUERY)
    for i in range(5):
        strict.authenticate("acme-sync", "guess", f"198.51.100.{i}")
    assert strict.authenticate("acme-sync", "correct horse", "198.51.100.200").status == "nvu"
    assert strict.authenticate("acme-sync", "correct horse", "192.0.2.11").status == ""


def test_always_open_and_minimum_run_interval(conversation, add_connection, db) -> None:
    conn = add_connection()
    with db.begin() as s:
        row = s.get(Connection, conn.id)
        row.always_open, row.min_run_every_seconds = True, 300
    result = conversation.authenticate("acme-sync", "correct horse")
    assert result.as_array() == [result.ticket, "", "0", "300"]


def test_busy_answer_carries_a_postpone(conversation, add_connection, enqueue) -> None:
    enqueue(add_connection(), QUERY)
    conversation.authenticate("acme-sync", "correct horse")
    busy = conversation.authenticate("acme-sync", "correct horse")
    ticket, status, postpone = busy.as_array()
    assert status == AuthResult.BUSY and int(postpone) == conversation.settings.session_takeover_seconds
    assert ticket and conversation.get_last_error(ticket).startswith("Session expired or unknown")


def test_a_ticket_only_reaches_its_own_connection(conversation, add_connection, enqueue, get_job) -> None:
    a, b = add_connection(), add_connection(name="b", username="b-sync", password="b pw")
    job_a, job_b = enqueue(a, "<CustomerQueryRq><FullName>A</FullName></CustomerQueryRq>"), enqueue(b, QUERY)
    ticket_a = conversation.authenticate("acme-sync", "correct horse").ticket
    request = conversation.send_request_xml(ticket_a, "", "", "US", 13, 0)
    assert "<FullName>A</FullName>" in request
    empty = ('<QBXML><QBXMLMsgsRs><CustomerQueryRs statusCode="1" statusSeverity="Info" statusMessage="none"/>'
             "</QBXMLMsgsRs></QBXML>")
    assert conversation.receive_response_xml(ticket_a, empty) == 100  # B's queue does not count
    assert conversation.send_request_xml(ticket_a, "", "", "US", 13, 0) == ""  # B's job is never offered
    assert get_job(job_a.id).state == "done" and get_job(job_b.id).state == "queued"


@pytest.mark.parametrize("minimum,warning,version,answer", [
    ("", "", "2.3.0.215", ""),
    ("2.2.0.80", "", "2.1.0.30", "O:2.2.0.80"),
    ("2.2.0.80", "", "2.3.0.215", ""),
    ("2.2.0.80", "", "garbage", "O:2.2.0.80"),
    ("", "Update soon", "2.3.0.215", "W:Update soon"),
])
def test_client_version_policy(db, settings, clock, minimum, warning, version, answer) -> None:
    policy = replace(settings, min_client_version=minimum, client_version_warning=warning)
    assert Conversation(db, policy, Passwords(time_cost=1, memory_cost=8, parallelism=1), clock).client_version(
        version) == answer


@pytest.mark.parametrize("remote,forwarded,trusted,expected", [
    ("203.0.113.5", "1.2.3.4", "", "203.0.113.5"),              # no trusted proxies: header ignored
    ("203.0.113.5", "1.2.3.4", "10.0.0.0/8", "203.0.113.5"),    # not from a trusted proxy
    ("10.0.0.2", "198.51.100.9", "10.0.0.0/8", "198.51.100.9"),
    ("10.0.0.2", "6.6.6.6, 198.51.100.9", "10.0.0.0/8", "198.51.100.9"),  # leftmost is client-written
    ("10.0.0.2", "198.51.100.9, 10.0.0.3", "10.0.0.0/8", "198.51.100.9"),
    ("10.0.0.2", "", "10.0.0.2", "10.0.0.2"),
])
def test_forwarded_for_only_from_trusted_proxies(remote, forwarded, trusted, expected) -> None:
    environ = {"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": forwarded}
    assert client_address(environ, parse_networks(trusted)) == expected


def test_bad_trusted_proxy_is_a_config_error() -> None:
    from qwc_service.config import ConfigError

    with pytest.raises(ConfigError, match="QWC_TRUSTED_PROXIES"):
        parse_networks("10.0.0.1, not-an-ip")


def test_two_server_processes_racing_authenticate_open_one_session(spawn_server, add_connection, enqueue, db) -> None:
    """Concurrent logins for one connection through two processes: one session, the rest busy."""
    import threading

    from wire import WireClient

    enqueue(add_connection(), QUERY)
    urls = [spawn_server(), spawn_server()]
    barrier = threading.Barrier(8)
    statuses: list[str] = []

    def race(url: str) -> None:
        client = WireClient(url)
        barrier.wait()
        reply = client.call("authenticate", ("strUserName", "acme-sync"), ("strPassword", "correct horse"))
        statuses.append(reply.strings()[1])
        client.close()

    threads = [threading.Thread(target=race, args=(urls[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [""] + ["busy"] * 7
    with db.begin() as s:
        assert s.query(WebConnectorSession).filter_by(state="open").count() == 1


def test_serve_passes_forwarded_for_through_when_proxies_are_trusted(settings, make_live_server, add_connection,
                                                                     enqueue, db) -> None:
    """waitress must not strip X-Forwarded-For when the application judges it itself."""
    import requests
    from wire import INTUIT, envelope

    enqueue(add_connection(), QUERY)
    server_ = make_live_server(replace(settings, trusted_proxies="127.0.0.1"))
    requests.post(server_.url, data=envelope("authenticate", ("strUserName", "acme-sync"), ("strPassword", "nope")),
                  headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{INTUIT}authenticate"',
                           "X-Forwarded-For": "198.51.100.77"}, timeout=10)
    assert events(db)[-1][:2] == ("nvu", "198.51.100.77")
