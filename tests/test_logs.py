"""Logs: structured, tagged with connection, hashed ticket and job; payloads only on request, redacted."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace

import pytest

from qwc_service import logs
from qwc_service.config import ConfigError
from qwc_service.conversation import Conversation

SECRET_ADD = ("<EmployeeAddRq><EmployeeAdd><Name>Pat</Name><SSN>123-45-6789</SSN></EmployeeAdd></EmployeeAddRq>")


@pytest.fixture
def captured():
    stream = io.StringIO()
    yield stream
    logging.getLogger().handlers.clear()
    logs.payload_log.setLevel(logging.NOTSET)


def run(conversation: Conversation) -> str:
    auth = conversation.authenticate("acme-sync", "correct horse", "192.0.2.9")
    request = conversation.send_request_xml(auth.ticket, "", "", "US", 13, 0)
    job_id = request.split('requestID="')[1].split(".")[0]
    conversation.receive_response_xml(auth.ticket, "<QBXML><QBXMLMsgsRs><EmployeeAddRs requestID=\"%s.0\" statusCode=\"0\" "
                                      "statusSeverity=\"Info\" statusMessage=\"ok\"><EmployeeRet><SSN>123-45-6789</SSN>"
                                      "</EmployeeRet></EmployeeAddRs></QBXMLMsgsRs></QBXML>" % job_id)
    conversation.close_connection(auth.ticket)
    return auth.ticket


def test_json_lines_carry_connection_ticket_hash_and_job(conversation, add_connection, enqueue, captured) -> None:
    enqueue(add_connection(), SECRET_ADD)
    logs.configure(replace(conversation.settings, log_format="json"), captured)
    ticket = run(conversation)
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    sent = next(line for line in lines if line["message"].startswith("sendRequestXML"))
    assert sent["connection"] == "acme" and len(sent["ticket"]) == 12 and isinstance(sent["job"], int)
    text = captured.getvalue()
    assert ticket not in text and "123-45-6789" not in text and "correct horse" not in text
    assert "<EmployeeAdd" not in text  # payloads are off by default
    auth_line = next(line for line in lines if line["message"].startswith("authenticate"))
    assert "job" not in auth_line  # nothing left over from an earlier call


def test_payloads_are_logged_only_when_switched_on_and_then_redacted(db, settings, fast_passwords, clock,
                                                                      add_connection, enqueue, captured) -> None:
    enqueue(add_connection(), SECRET_ADD)
    loud = replace(settings, log_payloads="on")
    logs.configure(loud, captured)
    run(Conversation(db, loud, fast_passwords, clock))
    text = captured.getvalue()
    assert "<Name>Pat</Name>" in text and "<SSN>***</SSN>" in text and "123-45-6789" not in text
    assert "[connection=acme ticket=" in text


@pytest.mark.parametrize("field,value", [("log_format", "xml"), ("log_payloads", "yes"), ("log_level", "LOUD")])
def test_bad_log_settings_are_named(settings, field, value) -> None:
    with pytest.raises(ConfigError, match=f"QWC_{field.upper()}"):
        logs.configure(replace(settings, **{field: value}), io.StringIO())
