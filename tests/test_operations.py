"""Operators' signals: /healthz, /readyz, per-connection health with overdue detection, /metrics."""

from __future__ import annotations

import re
from dataclasses import replace

import requests
from werkzeug.test import Client

from qwc_service import health, server
from qwc_service.models import Connection
from qwc_service.simulator import FakeQuickBooks, FakeWebConnector, QuickBooksProfile


def scrape(url: str, **headers: str) -> dict[str, float]:
    text = requests.get(url.replace("/qbwc", "/metrics"), headers=headers, timeout=10).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def run_session(url: str, conn) -> None:
    quickbooks = FakeQuickBooks(QuickBooksProfile(owner_id=conn.owner_id, file_id=conn.file_id))
    FakeWebConnector(url, quickbooks, username=conn.username, password="correct horse").run()


def test_healthz_needs_no_database_and_readyz_checks_migrations(settings, fast_passwords, tmp_path) -> None:
    ready = server.build(settings, migrate=False, passwords=fast_passwords)
    assert Client(ready.app).get("/healthz").data == b"ok\n"
    reply = Client(ready.app).get("/readyz")
    assert reply.status_code == 200 and b"ok (migration" in reply.data
    empty = server.build(replace(settings, database_url=f"sqlite:///{tmp_path / 'empty.db'}"), migrate=False,
                         passwords=fast_passwords)
    reply = Client(empty.app).get("/readyz")
    assert reply.status_code == 503 and b"qwc-service db upgrade" in reply.data
    broken = server.build(replace(settings, database_url=f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"),
                          migrate=False, passwords=fast_passwords)
    assert Client(broken.app).get("/healthz").status_code == 200  # alive, even with the database gone
    assert Client(broken.app).get("/readyz").status_code == 503
    for service in (ready, empty, broken):
        service.engine.dispose()


def test_overdue_after_three_missed_schedules(db, add_connection, conversation, clock) -> None:
    conn = add_connection()
    with db.begin() as s:
        row = s.get(Connection, conn.id)
        row.run_every_seconds = 300
    assert conversation.authenticate("acme-sync", "correct horse").status == "none"
    with db.begin() as s:
        row = s.get(Connection, conn.id)
        assert health.connection_health(s, row, clock()).overdue is False
        clock.advance(seconds=3 * 300 + 1)
        report = health.connection_health(s, row, clock())
        assert report.overdue is True and report.last_authenticate is not None
        row.run_every_seconds = None
        assert health.connection_health(s, row, clock()).overdue is None  # schedule unknown


def test_metrics_reflect_a_simulated_session(live_server, add_connection, enqueue) -> None:
    conn = add_connection()
    before = scrape(live_server.url)
    for n in range(2):
        enqueue(conn, f"<CustomerAddRq><CustomerAdd><Name>M{n}</Name></CustomerAdd></CustomerAddRq>")
    enqueue(conn, "<CustomerAddRq><CustomerAdd><Name>M0</Name></CustomerAdd></CustomerAddRq>")  # 3100: taken
    enqueue(conn, "<CustomerQueryRq/>", not_before=None)
    run_session(live_server.url, conn)
    after = scrape(live_server.url)

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert delta('qwc_soap_calls_total{operation="sendRequestXML",outcome="ok"}') == 4
    assert delta('qwc_soap_calls_total{operation="authenticate",outcome="ok"}') == 1
    assert delta('qwc_auth_results_total{result="ok"}') == 1
    assert delta('qwc_sessions_total{event="opened"}') == 1 and delta('qwc_sessions_total{event="closed"}') == 1
    assert delta('qwc_quickbooks_errors_total{category="data",code="3100"}') == 1
    assert delta('qwc_job_transitions_total{to_state="done"}') == 3
    assert after['qwc_jobs{connection="acme",state="done"}'] == 3
    assert after['qwc_jobs{connection="acme",state="failed"}'] == 1
    assert after['qwc_queue_depth{connection="acme"}'] == 0
    assert any(re.match(r'qwc_soap_call_seconds_bucket\{le="[^"]+",operation="receiveResponseXML"\}', k)
               for k in after)


def test_metrics_can_require_a_token(settings, make_live_server) -> None:
    server_ = make_live_server(replace(settings, metrics_token="s3cret"))
    url = server_.url.replace("/qbwc", "/metrics")
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code == 200
