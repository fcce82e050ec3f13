"""Stateless processes: any process answers any call; PostgreSQL can restart under a live service.

Run against the configured database (SQLite by default, PostgreSQL in CI with
QWC_TEST_DATABASE_URL): the same code must hold on both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from conftest import PG_URL
from qwc_service.simulator import FakeQuickBooks, FakeWebConnector, Outcome, QuickBooksProfile
from wire import WireClient

PASSWORD = "correct horse"


def test_one_session_alternating_between_two_processes(spawn_server, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    jobs = [enqueue(conn, f"<CustomerAddRq><CustomerAdd><Name>Alt {n}</Name></CustomerAdd></CustomerAddRq>")
            for n in range(3)]
    clients = [WireClient(spawn_server()), WireClient(spawn_server())]
    quickbooks = FakeQuickBooks(QuickBooksProfile(owner_id=conn.owner_id, file_id=conn.file_id))
    turn = iter(range(1000))

    def call(operation: str, *params):
        reply = clients[next(turn) % 2].call(operation, *params)
        assert reply.status == 200, reply.body[:300]
        return reply

    call("serverVersion")
    call("clientVersion", ("strVersion", "2.3.0.215"))
    ticket, status = call("authenticate", ("strUserName", conn.username), ("strPassword", PASSWORD)).strings()
    assert status == ""
    with quickbooks.begin_session() as qb:
        first = True
        while True:
            request = call("sendRequestXML", ("ticket", ticket),
                           ("strHCPResponse", quickbooks.first_call_response() if first else ""),
                           ("strCompanyFileName", ""), ("qbXMLCountry", "US"), ("qbXMLMajorVers", 13),
                           ("qbXMLMinorVers", 0)).result("sendRequestXML")
            first = False
            answer = qb.process_request(request)
            progress = int(call("receiveResponseXML", ("ticket", ticket), ("response", answer.response),
                                ("hresult", answer.hresult), ("message", answer.message)).result("receiveResponseXML"))
            if progress >= 100:
                break
    assert call("closeConnection", ("ticket", ticket)).result("closeConnection").startswith("3 jobs done, 0 failed")
    assert {get_job(j.id).state for j in jobs} == {"done"}
    names = [c.findtext("Name") for c in quickbooks.company.records("Customer")]
    assert sorted(n for n in names if n.startswith("Alt")) == ["Alt 0", "Alt 1", "Alt 2"]


def test_concurrent_connectors_across_processes_lose_nothing_and_send_nothing_twice(
    spawn_server, add_connection, enqueue, get_job
) -> None:
    urls = [spawn_server(), spawn_server()]
    connections, jobs = [], []
    for n in range(8):
        conn = add_connection(name=f"c{n}", username=f"sync{n}")
        connections.append(conn)
        jobs += [(conn, enqueue(conn, f"<CustomerAddRq><CustomerAdd><Name>C{n}-{k}</Name></CustomerAdd>"
                                      f"</CustomerAddRq>")) for k in range(4)]
    sent: list[str] = []
    lock = threading.Lock()

    def run(index: int, conn) -> None:
        quickbooks = FakeQuickBooks(QuickBooksProfile(owner_id=conn.owner_id, file_id=conn.file_id))
        for attempt in range(10):
            # two connectors per connection, on different processes, racing each other
            result = FakeWebConnector(urls[(index + attempt) % 2], quickbooks, username=conn.username,
                                      password=PASSWORD, noop_wait=0.01).run()
            with lock:
                sent.extend(e.request for e in result.exchanges)
            if result.outcome is Outcome.NONE:
                return
            if result.outcome is Outcome.BUSY:
                time.sleep(0.2)

    threads = [threading.Thread(target=run, args=(i, conn)) for i, conn in enumerate(connections * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for conn, job in jobs:
        name = etree.fromstring(get_job(job.id).request_xml.encode()).findtext(".//Name")
        assert get_job(job.id).state == "done", name
        assert sum(f"<Name>{name}</Name>" in request for request in sent) == 1, name


def _pg_ctl() -> list[str] | None:
    if not PG_URL or "127.0.0.1" not in PG_URL or shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    versions = sorted(Path("/etc/postgresql").glob("*"))
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main"] if versions else None


@pytest.mark.skipif(_pg_ctl() is None, reason="needs the local PostgreSQL cluster (root, pg_ctlcluster, QWC_TEST_DATABASE_URL)")
def test_postgresql_restart_mid_session_costs_only_the_calls_made_while_down(
    live_server, add_connection, enqueue, get_job
) -> None:
    command = _pg_ctl()
    assert command is not None
    conn = add_connection()
    jobs = [enqueue(conn, f"<CustomerQueryRq><MaxReturned>{n + 1}</MaxReturned></CustomerQueryRq>") for n in range(2)]
    client = WireClient(live_server.url)
    ticket, _ = client.call("authenticate", ("strUserName", conn.username), ("strPassword", PASSWORD)).strings()
    quickbooks = FakeQuickBooks(QuickBooksProfile(owner_id=conn.owner_id, file_id=conn.file_id))
    qb = quickbooks.begin_session()

    def send(hcp: str = "") -> str:
        return client.call("sendRequestXML", ("ticket", ticket), ("strHCPResponse", hcp), ("strCompanyFileName", ""),
                           ("qbXMLCountry", "US"), ("qbXMLMajorVers", 13), ("qbXMLMinorVers", 0)).result("sendRequestXML")

    request = send(quickbooks.first_call_response())
    subprocess.run([*command, "stop", "-m", "fast"], check=True, capture_output=True)
    try:
        started = time.monotonic()
        answer = qb.process_request(request)
        down = client.call("receiveResponseXML", ("ticket", ticket), ("response", answer.response),
                           ("hresult", ""), ("message", ""))
        assert time.monotonic() - started < 15, "a call hung while the database was down"
        assert down.status == 500 and down.fault()[0].endswith("Server")  # a well-formed SOAP fault
    finally:
        subprocess.run([*command, "start"], check=True, capture_output=True)
    for _ in range(60):
        if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0:
            break
        time.sleep(0.5)
    # The same session goes on, without restarting the service: the answer lost while the
    # database was down is the only cost (the query is simply sent again).
    again = send()
    assert "<CustomerQueryRq" in again
    progress = 0
    while progress < 100:
        answer = qb.process_request(again)
        progress = int(client.call("receiveResponseXML", ("ticket", ticket), ("response", answer.response),
                                   ("hresult", ""), ("message", "")).result("receiveResponseXML"))
        if progress < 100:
            again = send()
    assert {get_job(j.id).state for j in jobs} == {"done"}
