"""Fuzzing the SOAP layer: whatever arrives, the answer is a SOAP envelope and the database stays sane."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from lxml import etree
from sqlalchemy import select
from werkzeug.test import Client

from qwc_service import server
from qwc_service.models import Job, JobState, SessionState, WebConnectorSession
from wire import INTUIT, SOAP_ENV, envelope

OPERATIONS = {
    "serverVersion": [], "clientVersion": ["strVersion"], "authenticate": ["strUserName", "strPassword"],
    "sendRequestXML": ["ticket", "strHCPResponse", "strCompanyFileName", "qbXMLCountry", "qbXMLMajorVers",
                       "qbXMLMinorVers"],
    "receiveResponseXML": ["ticket", "response", "hresult", "message"],
    "connectionError": ["ticket", "hresult", "message"], "getLastError": ["ticket"], "closeConnection": ["ticket"],
    "getInteractiveURL": ["wcTicket", "sessionID"], "interactiveDone": ["wcTicket"],
    "interactiveRejected": ["wcTicket", "reason"],
}
# Any text XML 1.0 can carry (control characters other than tab/newline cannot be in a document at all).
XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
                   | st.sampled_from("\t\n\r"), max_size=200)
VALUES = st.one_of(
    XML_TEXT,
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.sampled_from(["", "13", "-1", "0x80040400", "<QBXML>", "nvu", "acme-sync", "correct horse",
                     "<QBXML><QBXMLMsgsRs><CustomerAddRs statusCode='0'/></QBXMLMsgsRs></QBXML>"]),
    st.integers(min_value=1000, max_value=200_000).map(lambda n: "x" * n),
)


@st.composite
def mutated_envelopes(draw) -> bytes:
    operation = draw(st.sampled_from([*OPERATIONS, "noSuchOperation"]))
    names = list(OPERATIONS.get(operation, ["ticket"]))
    if names and draw(st.booleans()):
        del names[draw(st.integers(0, len(names) - 1))]  # a missing element
    if names and draw(st.booleans()):
        names.append(draw(st.sampled_from(names)))  # a duplicated one
    body = envelope(operation, *[(n, draw(VALUES)) for n in names])
    mutation = draw(st.sampled_from(["none", "namespace", "dtd", "truncate", "nest", "encoding", "header"]))
    if mutation == "namespace":
        body = body.replace(INTUIT.encode(), b"http://example.invalid/")
    elif mutation == "dtd":
        body = body.replace(b"?>", b'?><!DOCTYPE e [<!ENTITY x "' + b"y" * 50 + b'">]>', 1)
    elif mutation == "truncate":
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif mutation == "nest":
        depth = draw(st.integers(1, 3000))
        body = body.replace(b"</soap:Body>", b"<a>" * depth + b"</a>" * depth + b"</soap:Body>")
    elif mutation == "encoding":
        body = body.decode("utf-8").encode(draw(st.sampled_from(["utf-16", "latin-1", "utf-32"])), "replace")
    elif mutation == "header":
        body = body.replace(b"<soap:Body>", f"<soap:Header><x>{draw(XML_TEXT)}</x></soap:Header><soap:Body>"
                            .encode("utf-8"))
    return body


@pytest.fixture
def app_client(settings, fast_passwords, add_connection, enqueue):
    conn = add_connection()
    for n in range(3):
        enqueue(conn, f"<CustomerAddRq><CustomerAdd><Name>N{n}</Name></CustomerAdd></CustomerAddRq>")
    service = server.build(replace(settings, max_body_bytes=1_000_000), migrate=False, passwords=fast_passwords)
    yield Client(service.app), service
    service.engine.dispose()


def assert_soap_answer(status: int, content_type: str, body: bytes) -> None:
    assert status in (200, 400, 405, 413, 500), status
    assert content_type.startswith("text/xml"), content_type
    root = etree.fromstring(body)  # well-formed, or this raises
    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    assert b"Traceback" not in body and b"<html" not in body.lower()
    answer = root.find(f"{{{SOAP_ENV}}}Body")[0]
    if status != 200:
        assert answer.tag == f"{{{SOAP_ENV}}}Fault"


def assert_database_consistent(service) -> None:
    with service.conversation.db.begin() as db:
        states = {s.value for s in JobState}
        for job in db.scalars(select(Job)):
            assert job.state in states
            if job.state == "sent":
                session = db.get(WebConnectorSession, job.session_id)
                assert session is not None and session.state == SessionState.OPEN.value
        open_sessions = db.scalars(select(WebConnectorSession).where(WebConnectorSession.state == "open")).all()
        assert len({s.connection_id for s in open_sessions}) == len(open_sessions)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=mutated_envelopes())
def test_mutated_envelopes_get_soap_answers(app_client, body: bytes) -> None:
    client, service = app_client
    reply = client.post("/qbwc", data=body, headers={"Content-Type": "text/xml; charset=utf-8",
                                                     "SOAPAction": f'"{INTUIT}getLastError"'})
    assert_soap_answer(reply.status_code, reply.headers["Content-Type"], reply.data)
    assert_database_consistent(service)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2000), content_type=st.sampled_from(["text/xml", "application/json", ""]))
def test_random_bytes_get_soap_faults(app_client, body: bytes, content_type: str) -> None:
    client, service = app_client
    reply = client.post("/qbwc", data=body, headers={"Content-Type": content_type} if content_type else {})
    assert_soap_answer(reply.status_code, reply.headers["Content-Type"], reply.data)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(st.sampled_from(list(OPERATIONS)), st.lists(VALUES, min_size=6, max_size=6)),
                      min_size=1, max_size=12))
def test_random_conversations_keep_the_queue_consistent(app_client, calls) -> None:
    """Valid envelopes in a random order, with a real login mixed in: state stays coherent."""
    client, service = app_client
    ticket = ""
    for operation, values in calls:
        params = list(zip(OPERATIONS[operation], values))
        if operation == "authenticate" and values[0] == "acme-sync":
            params = [("strUserName", "acme-sync"), ("strPassword", "correct horse")]
        params = [(n, ticket if n in ("ticket", "wcTicket") and ticket and values[0] != "" else v)
                  for n, v in params]
        reply = client.post("/qbwc", data=envelope(operation, *params),
                            headers={"Content-Type": "text/xml; charset=utf-8"})
        assert_soap_answer(reply.status_code, reply.headers["Content-Type"], reply.data)
        if operation == "authenticate" and reply.status_code == 200:
            strings = etree.fromstring(reply.data).findall(f".//{{{INTUIT}}}string")
            if strings and strings[0].text:
                ticket = strings[0].text
    assert_database_consistent(service)
