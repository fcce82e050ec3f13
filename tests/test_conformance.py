"""Conformance: whole Web Connector sessions against the real server, driven by the simulator.

Every test here runs the FakeWebConnector over real HTTP (QBWC's envelopes,
headers and call order) with a FakeQuickBooks behind it, on SQLite and, with
QWC_TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from qwc_service.simulator import (
    CrashFault,
    DropFault,
    FakeQuickBooks,
    FakeWebConnector,
    Faults,
    HresultFault,
    OpenFault,
    Outcome,
    QuickBooksProfile,
    StatusFault,
    build_scenario,
)

PASSWORD = "correct horse"


@pytest.fixture
def connection(add_connection):
    return add_connection()


def connector(url: str, conn, quickbooks: FakeQuickBooks | None = None, faults: Faults | None = None,
              **options) -> FakeWebConnector:
    quickbooks = quickbooks or FakeQuickBooks(QuickBooksProfile(owner_id=conn.owner_id, file_id=conn.file_id))
    return FakeWebConnector(url, quickbooks, faults=faults, username=conn.username, password=PASSWORD,
                            noop_wait=0.01, **options)


def customer_add(name: str) -> str:
    return f"<CustomerAddRq><CustomerAdd><Name>{name}</Name></CustomerAdd></CustomerAddRq>"


def test_many_jobs_in_one_session(live_server, connection, enqueue, get_job) -> None:
    jobs = [enqueue(connection, customer_add(f"Customer {n}")) for n in range(12)]
    jobs.append(enqueue(connection, "<CustomerQueryRq/>"))
    quickbooks = FakeQuickBooks()
    result = connector(live_server.url, connection, quickbooks).run()
    assert result.outcome is Outcome.OK
    assert result.operations[:3] == ["serverVersion", "clientVersion", "authenticate"]
    assert result.operations[-1] == "closeConnection"
    assert result.operations.count("sendRequestXML") == 13 == result.operations.count("receiveResponseXML")
    progress = [int(c.answer) for c in result.calls("receiveResponseXML")]
    assert progress == sorted(progress) and progress[-1] == 100 and all(0 <= p < 100 for p in progress[:-1])
    assert result.close_message.startswith("13 jobs done, 0 failed")
    assert {get_job(j.id).state for j in jobs} == {"done"}
    assert len(quickbooks.company.records("Customer")) == 12
    query = get_job(jobs[-1].id)
    assert query.response_xml.count("<CustomerRet>") == 12  # the query ran after the adds, in order


def test_empty_queue_never_opens_quickbooks(live_server, connection) -> None:
    result = connector(live_server.url, connection).run()
    assert result.outcome is Outcome.NONE
    assert result.operations == ["serverVersion", "clientVersion", "authenticate", "closeConnection"]


def test_wrong_password_is_nvu(live_server, connection, enqueue) -> None:
    enqueue(connection, "<CustomerQueryRq/>")
    run = FakeWebConnector(live_server.url, FakeQuickBooks(), username=connection.username, password="wrong")
    assert run.run().outcome is Outcome.NVU


def test_failed_job_in_the_middle_and_the_session_goes_on(live_server, connection, enqueue, get_job) -> None:
    first = enqueue(connection, customer_add("Alpha"))
    duplicate = enqueue(connection, customer_add("Alpha"))  # QuickBooks: 3100, the name is taken
    last = enqueue(connection, customer_add("Beta"))
    result = connector(live_server.url, connection).run()
    assert result.outcome is Outcome.OK
    assert result.close_message.startswith("2 jobs done, 1 failed")
    failed = get_job(duplicate.id)
    assert failed.state == "failed" and failed.status_code == 3100 and "3100" in failed.error
    assert get_job(first.id).state == get_job(last.id).state == "done"


def test_qbxml_error_status_fails_only_its_job(live_server, connection, enqueue, get_job) -> None:
    job = enqueue(connection, "<CustomerQueryRq><ListID>80000099-1</ListID></CustomerQueryRq>")
    result = connector(live_server.url, connection).run()
    assert result.outcome is Outcome.OK
    assert get_job(job.id).status_code == 3120


def test_hresult_answer(live_server, connection, enqueue, get_job) -> None:
    job = enqueue(connection, "<CustomerQueryRq/>")
    faults = Faults(HresultFault(hresult="0x80040400", message="QuickBooks found an error when parsing the "
                                                             "provided XML text stream."))
    result = connector(live_server.url, connection, faults=faults).run()
    assert result.calls("receiveResponseXML")[0].parameters["hresult"] == "0x80040400"
    job = get_job(job.id)
    assert job.state == "failed" and job.hresult == "0x80040400" and "0x80040400" in job.error
    assert result.outcome is Outcome.OK  # a parse error fails the job, not the session


def test_connection_error_path(live_server, connection, enqueue, get_job) -> None:
    job = enqueue(connection, "<CustomerQueryRq/>")
    faults = Faults(OpenFault(hresult="0x80040408", message="Could not start QuickBooks.", times=None))
    result = connector(live_server.url, connection, faults=faults).run()
    assert result.outcome is Outcome.CONNECTION_ERROR
    assert "connectionError" in result.operations and result.calls("connectionError")[0].answer == "done"
    assert get_job(job.id).state == "queued"  # never sent: the next run tries again


def test_permission_denied_names_user_request_area_and_menu(live_server, connection, enqueue) -> None:
    enqueue(connection, customer_add("Gamma"))
    quickbooks, faults = build_scenario("permission-denied", profile=QuickBooksProfile(
        product_name="QuickBooks Enterprise Solutions 23.0", is_automatic_login=True,
        is_automatic_login_allowed=True, automatic_login_user_name="acme-sync"))
    result = connector(live_server.url, connection, quickbooks, faults).run()
    assert result.outcome is Outcome.ERROR
    text = result.final_status
    for fact in ("3260", "CustomerAdd", "acme-sync", "Customer Center",
                 "Company > Users > Set Up Users and Roles", "single-user", "Admin"):
        assert fact in text, fact


def test_wrong_login_user_warning(live_server, connection, enqueue) -> None:
    enqueue(connection, "<CustomerQueryRq/>")
    quickbooks, faults = build_scenario("wrong-login-user")
    result = connector(live_server.url, connection, quickbooks, faults).run()
    assert result.outcome is Outcome.OK
    assert "logged in as 'Admin', not the dedicated sync user 'acme-sync'" in result.close_message
    assert "Integrated Applications" in result.close_message and "Login as" in result.close_message


def test_iterator_query_pages_through_the_company(live_server, connection, enqueue, get_job) -> None:
    job = enqueue(connection, "<InvoiceQueryRq/>", page_size=10)
    quickbooks, faults = build_scenario("iterator")
    result = connector(live_server.url, connection, quickbooks, faults).run()
    assert result.outcome is Outcome.OK
    assert result.operations.count("sendRequestXML") == 3
    assert get_job(job.id).response_xml.count("<InvoiceRet>") == 25


def test_dropped_connection_and_crash_leave_the_write_in_doubt(settings, make_live_server, connection, enqueue,
                                                               get_job) -> None:
    server = make_live_server(replace(settings, session_takeover_seconds=1))
    for fault in (DropFault(call=1), CrashFault(call=1)):
        write = enqueue(connection, customer_add(f"Delta {type(fault).__name__}"))
        query = enqueue(connection, "<CustomerQueryRq/>")
        quickbooks = FakeQuickBooks()
        first = connector(server.url, connection, quickbooks, Faults(fault)).run()
        assert first.outcome in (Outcome.DROPPED, Outcome.CRASHED)
        assert get_job(write.id).state == "sent"
        time.sleep(1.1)  # the next run takes the silent session over
        second = connector(server.url, connection, quickbooks).run()
        assert second.outcome is Outcome.OK
        in_doubt = get_job(write.id)
        assert in_doubt.state == "in_doubt" and f"qwc-service job retry {write.id}" in in_doubt.error
        assert get_job(query.id).state == "done"
        applied = [c for c in quickbooks.company.records("Customer")
                   if c.findtext("Name") == f"Delta {type(fault).__name__}"]
        assert len(applied) == (1 if isinstance(fault, CrashFault) else 0)  # and never twice


def test_slow_quickbooks_is_fine(live_server, connection, enqueue, get_job) -> None:
    from qwc_service.simulator import SlowFault

    job = enqueue(connection, "<CustomerQueryRq/>")
    result = connector(live_server.url, connection, faults=Faults(SlowFault(seconds=0.3))).run()
    assert result.outcome is Outcome.OK and get_job(job.id).state == "done"


def test_transient_busy_record_is_retried_later(live_server, connection, enqueue, get_job) -> None:
    job = enqueue(connection, customer_add("Epsilon"))
    faults = Faults(StatusFault(code=3175, request="CustomerAdd"))
    result = connector(live_server.url, connection, faults=faults).run()
    assert result.outcome is Outcome.OK
    retried = get_job(job.id)
    assert retried.state == "queued" and retried.attempts == 1 and retried.not_before is not None


ENTERPRISE_AUTO_LOGIN = dict(product_name="QuickBooks Enterprise Solutions 23.0", is_automatic_login=True,
                             is_automatic_login_allowed=True, automatic_login_user_name="acme-sync")


@pytest.mark.parametrize("code,request_xml,facts", [
    (3260, "<InvoiceAddRq><InvoiceAdd><CustomerRef><FullName>Acme Corporation</FullName></CustomerRef>"
           "</InvoiceAdd></InvoiceAddRq>", ("InvoiceAdd", "acme-sync", "Invoices", "Set Up Users and Roles",
                                             "single-user")),
    (3261, "<EmployeeQueryRq/>", ("EmployeeQuery", "personal data", "Integrated Applications")),
])
def test_every_permission_status_stops_with_the_fix(live_server, connection, enqueue, code, request_xml,
                                                    facts) -> None:
    enqueue(connection, request_xml)
    quickbooks = FakeQuickBooks(QuickBooksProfile(owner_id=connection.owner_id, file_id=connection.file_id,
                                                  **ENTERPRISE_AUTO_LOGIN))
    result = connector(live_server.url, connection, quickbooks, Faults(StatusFault(code=code))).run()
    assert result.outcome is Outcome.ERROR
    text = result.final_status
    assert str(code) in text.splitlines()[0] and len(text.splitlines()[0]) < 300
    for fact in facts:
        assert fact.lower() in text.lower(), fact


def test_a_closed_period_fails_only_its_job_with_the_fix(live_server, connection, enqueue, get_job) -> None:
    """3171 depends on the transaction's date, so the session goes on with the other jobs."""
    dated = enqueue(connection, "<InvoiceAddRq><InvoiceAdd><CustomerRef><FullName>Acme Corporation</FullName>"
                                "</CustomerRef></InvoiceAdd></InvoiceAddRq>")
    later = enqueue(connection, "<CustomerQueryRq/>")
    quickbooks = FakeQuickBooks(QuickBooksProfile(owner_id=connection.owner_id, file_id=connection.file_id,
                                                  **ENTERPRISE_AUTO_LOGIN))
    result = connector(live_server.url, connection, quickbooks,
                       Faults(StatusFault(code=3171, request="InvoiceAdd"))).run()
    assert result.outcome is Outcome.OK and get_job(later.id).state == "done"
    error = get_job(dated.id).error
    for fact in ("3171", "InvoiceAdd", "closing date", "Accounting"):
        assert fact.lower() in error.lower(), fact


@pytest.mark.parametrize("hresult,facts", [
    ("0x80040418", ("Yes, always", "Login as", "Admin")),
    ("0x8004041A", ("Integrated Applications",)),
    ("0x8004041D", ("Integrated Applications", "Login as")),
    ("0x80040420", ("Integrated Applications",)),
    ("0x80040430", ("Integrated Applications",)),
    ("0x80040408", ("No Company Open",)),
])
def test_access_refusals_at_open_time_explain_the_steps(live_server, connection, enqueue, hresult, facts) -> None:
    job = enqueue(connection, "<CustomerQueryRq/>")
    result = connector(live_server.url, connection,
                       faults=Faults(OpenFault(hresult=hresult, times=None))).run()
    assert result.outcome is Outcome.CONNECTION_ERROR
    shown = result.close_message
    assert hresult.lower() in shown.lower() and shown.startswith("0 jobs done, 0 failed. ")
    with live_server.service.conversation.db.begin() as db:
        from qwc_service.models import WebConnectorSession

        details = db.query(WebConnectorSession).order_by(WebConnectorSession.id.desc()).first().last_error
    for fact in facts:
        assert fact.lower() in details.lower(), fact
    assert job.state == "queued"


@pytest.mark.parametrize("warning,profile,setup", [
    ("keyboard-user", dict(is_automatic_login=False), None),
    ("wrong-login-user", dict(is_automatic_login=True, is_automatic_login_allowed=True,
                              automatic_login_user_name="Admin"), None),
    ("personal-data-off", dict(is_automatic_login=True, automatic_login_user_name="acme-sync",
                               is_personal_data_access_allowed=False), "personal"),
    ("other-company-file", dict(is_automatic_login=True, automatic_login_user_name="acme-sync"), "other-file"),
    ("multi-user", dict(is_automatic_login=True, automatic_login_user_name="acme-sync", file_mode="MultiUser"),
     None),
])
def test_every_preflight_warning_reaches_the_status_text(live_server, connection, enqueue, db, warning, profile,
                                                         setup) -> None:
    from qwc_service.models import Connection

    if setup == "personal":
        enqueue(connection, "<EmployeeQueryRq/>")
        enqueue(connection, "<EmployeeAddRq><EmployeeAdd><FirstName>Pat</FirstName><SSN>123-45-6789</SSN>"
                            "</EmployeeAdd></EmployeeAddRq>")
    else:
        enqueue(connection, "<CustomerQueryRq/>")
    if setup == "other-file":
        with db.begin() as s:
            row = s.get(Connection, connection.id)
            row.last_file_id, row.last_company_name = "{11111111-2222-3333-4444-555555555555}", "Old Company"
    quickbooks = FakeQuickBooks(QuickBooksProfile(owner_id=connection.owner_id, file_id="{AAAAAAAA-0000-0000-0000-"
                                                  "000000000001}", **profile))
    result = connector(live_server.url, connection, quickbooks).run()
    with db.begin() as s:
        from qwc_service.models import WebConnectorSession

        codes = [w["code"] for w in s.query(WebConnectorSession).order_by(WebConnectorSession.id.desc())
                 .first().warnings]
    assert warning in codes
    assert "Warning:" in result.close_message and "Fix:" in result.close_message
