"""The conversation core, with no HTTP: each test reads like a Web Connector run."""

from __future__ import annotations

from typing import Callable

import pytest

from conftest import FakeClock, sample
from qwc_service.conversation import (
    CLOSED_SESSION_TEXT,
    NOOP,
    UNKNOWN_SESSION_TEXT,
    AuthResult,
    Conversation,
)
from qwc_service.models import Connection, Job, JobState

CUSTOMER_QUERY = "<CustomerQueryRq><MaxReturned>10</MaxReturned></CustomerQueryRq>"
CUSTOMER_ADD = "<CustomerAddRq><CustomerAdd><Name>Joe</Name></CustomerAdd></CustomerAddRq>"
HCP = sample("qbxml_strHCPResponse_QuickBooksPro2014_qbxml13_qbwc-gem-fixture.xml")
ADD_OK = sample("qbxml_CustomerAddRs_statusCode0_qbwc-gem-fixture.xml")
QUERY_ERROR = sample("qbxml_CustomerQueryRs_statusCode3120_Error_qbwc-gem-fixture.xml")
QUERY_WARN = sample("qbxml_CustomerQueryRs_statusCode500_Warn_qbwc-gem-fixture.xml")
EMPTY_QUERY = (
    '<?xml version="1.0" ?><QBXML><QBXMLMsgsRs><CustomerQueryRs statusCode="1" '
    'statusSeverity="Info" statusMessage="A query request did not find a matching object in QuickBooks" />'
    "</QBXMLMsgsRs></QBXML>"
)
PERMISSION_DENIED = (
    '<?xml version="1.0" ?><QBXML><QBXMLMsgsRs><CustomerAddRs statusCode="3260" statusSeverity="Error" '
    'statusMessage="Insufficient permission level to perform this action." /></QBXMLMsgsRs></QBXML>'
)


def login(conversation: Conversation, username: str = "acme-sync", password: str = "correct horse") -> AuthResult:
    assert conversation.server_version().startswith("qwc-service")
    assert conversation.client_version("2.3.0.215") == ""
    return conversation.authenticate(username, password, "10.0.0.5")


def closing(conversation: Conversation, ticket: str) -> str:
    """closeConnection's summary, without the error and warnings that may follow it."""
    return conversation.close_connection(ticket).split(". ")[0]


def first_request(conversation: Conversation, ticket: str) -> str:
    return conversation.send_request_xml(ticket, HCP, r"C:\Company.qbw", "US", 13, 0)


def test_whole_session_with_several_jobs(
    conversation: Conversation, add_connection: Callable[..., Connection], enqueue: Callable[..., Job], get_job
) -> None:
    conn = add_connection()
    jobs = [enqueue(conn, CUSTOMER_ADD), enqueue(conn, CUSTOMER_QUERY), enqueue(conn, CUSTOMER_QUERY)]

    auth = login(conversation)
    assert auth.status == ""  # work is queued: use the company file open in QuickBooks
    assert len(auth.ticket) >= 32

    request = first_request(conversation, auth.ticket)
    assert "<CustomerAddRq requestID=" in request and '<?qbxml version="13.0"?>' in request
    assert conversation.receive_response_xml(auth.ticket, ADD_OK) == 33

    assert "<CustomerQueryRq requestID=" in conversation.send_request_xml(auth.ticket, "", "", "US", 13, 0)
    assert conversation.receive_response_xml(auth.ticket, EMPTY_QUERY) == 66

    conversation.send_request_xml(auth.ticket, "", "", "US", 13, 0)
    assert conversation.receive_response_xml(auth.ticket, QUERY_WARN) == 100

    assert closing(conversation, auth.ticket) == "3 jobs done, 0 failed"
    states = [get_job(j.id) for j in jobs]
    assert [j.state for j in states] == ["done", "done", "done"]
    assert states[0].response_xml == ADD_OK
    assert (states[1].status_code, states[1].status_severity) == (1, "Info")
    assert (states[2].status_code, states[2].status_severity) == (500, "Warn")


def test_first_call_facts_are_stored(conversation, add_connection, enqueue, db) -> None:
    from qwc_service.models import WebConnectorSession

    conn = add_connection()
    enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    with db.begin() as s:
        session = s.query(WebConnectorSession).one()
        facts = session.host_facts
        assert facts["product_name"] == "QuickBooks Pro 2014"
        assert facts["file_mode"] == "SingleUser"
        assert facts["company_name"] == "myCompany"
        assert facts["is_automatic_login"] is False
        assert "13.0" in facts["supported_qbxml_versions"]
        assert (session.company_file_name, session.qbxml_major, session.client_address) == (
            r"C:\Company.qbw",
            13,
            "10.0.0.5",
        )


def test_higher_priority_first_then_oldest(conversation, add_connection, enqueue) -> None:
    conn = add_connection()
    enqueue(conn, "<CustomerQueryRq><FullName>old</FullName></CustomerQueryRq>")
    enqueue(conn, "<CustomerQueryRq><FullName>urgent</FullName></CustomerQueryRq>", priority=5)
    enqueue(conn, "<CustomerQueryRq><FullName>newer</FullName></CustomerQueryRq>")
    auth = login(conversation)
    order = []
    for _ in range(3):
        request = first_request(conversation, auth.ticket)
        order.append(request.split("<FullName>")[1].split("<")[0])
        conversation.receive_response_xml(auth.ticket, EMPTY_QUERY)
    assert order == ["urgent", "old", "newer"]


def test_empty_queue_answers_none_and_opens_no_session(conversation, add_connection, db) -> None:
    from qwc_service.models import WebConnectorSession

    add_connection()
    auth = login(conversation)
    assert auth.status == AuthResult.NONE
    assert auth.as_array() == [auth.ticket, "none"]
    assert closing(conversation, auth.ticket) == CLOSED_SESSION_TEXT
    with db.begin() as s:
        assert s.query(WebConnectorSession).count() == 0


def test_company_file_path_is_the_status_when_configured(conversation, add_connection, enqueue) -> None:
    conn = add_connection(company_file=r"C:\Users\Public\Acme.qbw")
    enqueue(conn, CUSTOMER_QUERY)
    assert login(conversation).status == r"C:\Users\Public\Acme.qbw"


@pytest.mark.parametrize(
    "username,password",
    [("acme-sync", "wrong"), ("nobody", "correct horse"), ("", ""), ("other-sync", "correct horse")],
)
def test_only_the_dedicated_user_gets_in(conversation, add_connection, enqueue, username, password) -> None:
    conn = add_connection()
    add_connection(name="other", username="other-sync", password="different")
    enqueue(conn, CUSTOMER_QUERY)
    result = conversation.authenticate(username, password)
    assert result.as_array() == ["", "nvu"]


def test_disabled_connection_is_nvu(conversation, add_connection, enqueue, db) -> None:
    conn = add_connection()
    enqueue(conn, CUSTOMER_QUERY)
    with db.begin() as s:
        s.get(Connection, conn.id).enabled = False
    assert login(conversation).as_array() == ["", "nvu"]


def test_failed_job_in_the_middle_does_not_stop_the_session(conversation, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    first, failing, last = (enqueue(conn, CUSTOMER_QUERY) for _ in range(3))
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    assert conversation.receive_response_xml(auth.ticket, EMPTY_QUERY) == 33
    first_request(conversation, auth.ticket)
    assert conversation.receive_response_xml(auth.ticket, QUERY_ERROR) == 66
    first_request(conversation, auth.ticket)
    assert conversation.receive_response_xml(auth.ticket, EMPTY_QUERY) == 100
    assert closing(conversation, auth.ticket) == "2 jobs done, 1 failed"
    failed = get_job(failing.id)
    assert failed.state == "failed"
    assert failed.status_code == 3120
    assert "3120" in failed.error and "CustomerQuery" in failed.error
    assert get_job(last.id).state == "done"


def test_permission_denied_stops_the_session_and_holds_what_would_hit_it(
    conversation, add_connection, enqueue, get_job
) -> None:
    conn = add_connection()
    denied = enqueue(conn, CUSTOMER_ADD)
    same_wall = enqueue(conn, CUSTOMER_ADD)
    other = enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    assert conversation.receive_response_xml(auth.ticket, PERMISSION_DENIED) < 0
    error = conversation.get_last_error(auth.ticket)
    first_line = error.splitlines()[0]
    assert "3260" in first_line and "CustomerAdd" in first_line and "held with 1 other job" in first_line
    assert "Set Up Users" in error  # the fix, after the first line
    assert closing(conversation, auth.ticket) == (
        "0 jobs done, 0 failed, 2 held until a QuickBooks setting is fixed")
    assert [get_job(j.id).held_wall for j in (denied, same_wall, other)] == [
        "permission:CustomerAdd", "permission:CustomerAdd", None]
    assert get_job(denied.id).state == "queued"


def test_held_jobs_are_probed_released_on_success_or_failed_after_three_refusals(
    conversation, add_connection, enqueue, get_job
) -> None:
    conn = add_connection()
    jobs = [enqueue(conn, CUSTOMER_ADD) for _ in range(3)]
    for attempt in (1, 2):
        auth = login(conversation)
        assert auth.status == ""  # held jobs still open QuickBooks: one of them probes the wall
        assert "<CustomerAddRq" in first_request(conversation, auth.ticket)
        assert conversation.receive_response_xml(auth.ticket, PERMISSION_DENIED) < 0
        conversation.close_connection(auth.ticket)
        assert {get_job(j.id).wall_hits for j in jobs} == {attempt}
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    assert conversation.receive_response_xml(auth.ticket, PERMISSION_DENIED) < 0
    conversation.close_connection(auth.ticket)
    final = [get_job(j.id) for j in jobs]
    assert {j.state for j in final} == {"failed"}
    assert all("3 sessions in a row" in j.error and f"qwc-service retry {j.id}" in j.error for j in final)
    assert "3260" in final[0].error  # the diagnosis is kept with the verdict
    assert login(conversation).status == "none"  # QBWC is not sent into the wall again


def test_a_successful_probe_releases_the_held_jobs(conversation, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    first, second = enqueue(conn, CUSTOMER_ADD), enqueue(conn, CUSTOMER_ADD)
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    conversation.receive_response_xml(auth.ticket, PERMISSION_DENIED)
    conversation.close_connection(auth.ticket)
    # the bookkeeper fixes the permission; the next run probes and succeeds
    auth = login(conversation)
    probe = first_request(conversation, auth.ticket)
    assert f'requestID="{first.id}.0"' in probe
    assert conversation.receive_response_xml(auth.ticket, ADD_OK) == 50
    assert get_job(second.id).held_wall is None
    assert f'requestID="{second.id}.0"' in first_request(conversation, auth.ticket)
    assert conversation.receive_response_xml(auth.ticket, ADD_OK) == 100
    assert closing(conversation, auth.ticket) == "2 jobs done, 0 failed"


def test_company_file_errors_hold_every_job(conversation, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    jobs = [enqueue(conn, CUSTOMER_QUERY), enqueue(conn, CUSTOMER_ADD)]
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    assert conversation.receive_response_xml(
        auth.ticket, "", "0x80040410", "The specified file cannot be opened in this mode.") < 0
    assert {get_job(j.id).held_wall for j in jobs} == {"company-file"}


def test_hresult_answer_fails_the_job(conversation, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    job = enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    message = "QuickBooks found an error when parsing the provided XML text stream."
    assert conversation.receive_response_xml(auth.ticket, "", "0x80040400", message) == 100
    job = get_job(job.id)
    assert (job.state, job.hresult, job.status_message) == ("failed", "0x80040400", message)
    assert "0x80040400" in job.error


def test_connection_error_is_recorded_and_answered_done(conversation, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    job = enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    assert conversation.connection_error(auth.ticket, "0x80040408", "Could not start QuickBooks.") == "done"
    assert "0x80040408" in conversation.get_last_error(auth.ticket)
    assert closing(conversation, auth.ticket) == "0 jobs done, 0 failed"
    assert get_job(job.id).state == "queued"  # never sent: waits for the next run


def test_unanswered_query_is_requeued_and_unanswered_write_is_in_doubt(
    conversation, add_connection, enqueue, get_job
) -> None:
    conn = add_connection()
    write = enqueue(conn, CUSTOMER_ADD)
    read = enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    assert closing(conversation, auth.ticket) == "0 jobs done, 0 failed, 1 in doubt"
    in_doubt = get_job(write.id)
    assert in_doubt.state == JobState.IN_DOUBT.value
    assert f"qwc-service job retry {write.id}" in in_doubt.error

    auth = login(conversation)
    assert "<CustomerQueryRq requestID=" in first_request(conversation, auth.ticket)
    conversation.close_connection(auth.ticket)
    assert get_job(read.id).state == "queued"


def test_second_run_is_busy_until_the_first_falls_silent(
    conversation, add_connection, enqueue, get_job, clock: FakeClock
) -> None:
    conn = add_connection()
    write = enqueue(conn, CUSTOMER_ADD)
    enqueue(conn, CUSTOMER_QUERY)
    old = login(conversation)
    first_request(conversation, old.ticket)
    clock.advance(seconds=60)
    busy = login(conversation)  # e.g. a second Web Connector with the same .qwc
    takeover = conversation.settings.session_takeover_seconds
    assert busy.as_array()[1:] == ["busy", str(takeover - 60)]
    assert get_job(write.id).state == "sent"  # the first run is left alone

    clock.advance(seconds=takeover)  # the first Web Connector crashed and restarted
    new = login(conversation)
    assert new.status == ""
    assert get_job(write.id).state == "in_doubt"
    assert "took over" in get_job(write.id).error
    assert conversation.send_request_xml(old.ticket, "", "", "US", 13, 0) == ""
    assert "<CustomerQueryRq requestID=" in first_request(conversation, new.ticket)


def test_unknown_and_closed_tickets_get_harmless_answers(conversation, add_connection, enqueue) -> None:
    conn = add_connection()
    enqueue(conn, CUSTOMER_QUERY)
    for ticket in ("", "not-a-ticket"):
        assert conversation.send_request_xml(ticket, "", "", "US", 13, 0) == ""
        assert conversation.receive_response_xml(ticket, EMPTY_QUERY) < 0
        assert conversation.get_last_error(ticket) == UNKNOWN_SESSION_TEXT
        assert conversation.connection_error(ticket, "0x80040408", "x") == "done"
        assert closing(conversation, ticket) == CLOSED_SESSION_TEXT
    auth = login(conversation)
    conversation.close_connection(auth.ticket)
    assert conversation.send_request_xml(auth.ticket, HCP, "", "US", 13, 0) == ""
    assert conversation.get_last_error(auth.ticket) == UNKNOWN_SESSION_TEXT


def test_idle_session_expires(conversation, add_connection, enqueue, clock: FakeClock, get_job) -> None:
    conn = add_connection()
    job = enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    clock.advance(seconds=conversation.settings.session_idle_seconds + 1)
    assert conversation.receive_response_xml(auth.ticket, EMPTY_QUERY) < 0
    assert conversation.get_last_error(auth.ticket) == UNKNOWN_SESSION_TEXT
    assert get_job(job.id).state == "queued"  # a query is safe to send again


def test_job_needing_newer_qbxml_fails_with_reason(conversation, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    too_new = enqueue(conn, '<?qbxml version="16.0"?><QBXML><QBXMLMsgsRq onError="stopOnError">'
                            "<CustomerQueryRq/></QBXMLMsgsRq></QBXML>")
    fits = enqueue(conn, '<?qbxml version="8.0"?><QBXML><QBXMLMsgsRq onError="stopOnError">'
                         "<CustomerQueryRq/></QBXMLMsgsRq></QBXML>")
    auth = login(conversation)
    request = first_request(conversation, auth.ticket)
    assert '<?qbxml version="8.0"?>' in request
    failed = get_job(too_new.id)
    assert failed.state == "failed"
    assert "16.0" in failed.error and "13.0" in failed.error and "QuickBooks Pro 2014" in failed.error
    conversation.receive_response_xml(auth.ticket, EMPTY_QUERY)
    assert get_job(fits.id).state == "done"


def test_nothing_to_send_explains_itself(conversation, add_connection, enqueue, db) -> None:
    conn = add_connection()
    job = enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    with db.begin() as s:  # cancelled behind the session's back
        s.get(Job, job.id).state = "cancelled"
    assert first_request(conversation, auth.ticket) == ""
    assert conversation.get_last_error(auth.ticket) == "There is nothing left to send."
    assert conversation.get_last_error(auth.ticket) != NOOP


def test_response_without_outstanding_job_stops(conversation, add_connection, enqueue) -> None:
    conn = add_connection()
    enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    assert conversation.receive_response_xml(auth.ticket, EMPTY_QUERY) < 0
    assert "no request was waiting" in conversation.get_last_error(auth.ticket)


def test_unreadable_response_fails_only_that_job(conversation, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    job = enqueue(conn, CUSTOMER_QUERY)
    auth = login(conversation)
    first_request(conversation, auth.ticket)
    assert conversation.receive_response_xml(auth.ticket, "<QBXML><QBXMLMsgsRs>") == 100
    job = get_job(job.id)
    assert job.state == "failed" and "could not be read" in job.error


def test_password_rehashed_when_parameters_change(db, settings, clock, add_connection, enqueue) -> None:
    from qwc_service.passwords import Passwords

    conn = add_connection()
    enqueue(conn, CUSTOMER_QUERY)
    stronger = Passwords(time_cost=2, memory_cost=16, parallelism=1)
    assert login(Conversation(db, settings, stronger, clock)).status == ""
    with db.begin() as s:
        assert "t=2" in s.get(Connection, conn.id).password_hash


def test_interactive_mode_is_declined(conversation) -> None:
    assert conversation.get_interactive_url("t", "s") == ""
    assert conversation.interactive_done("t") == "Done"
    assert "interactive" in conversation.interactive_rejected("t", "no")


def test_an_answer_for_another_job_stops_the_session(conversation, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    job = enqueue(conn, CUSTOMER_ADD)
    auth = login(conversation)
    assert f'requestID="{job.id}.0"' in first_request(conversation, auth.ticket)
    stray = ADD_OK.replace("<CustomerAddRs ", '<CustomerAddRs requestID="999.0" ')
    assert conversation.receive_response_xml(auth.ticket, stray) < 0
    assert "does not belong" in conversation.get_last_error(auth.ticket)
    assert get_job(job.id).state == "in_doubt"  # we cannot tell what QuickBooks did with it
