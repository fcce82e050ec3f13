"""QBWC-shaped calls answered directly must be indistinguishable from Spyne's answers.

Every envelope here goes through the WSGI app twice, once with the direct path
and once through Spyne alone, against a conversation that records what it was
asked and answers what the test says. The two must give the same status, the
same bytes and the same conversation calls; envelopes that are not QBWC's plain
shape must be left to Spyne.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from werkzeug.test import Client

from qwc_service import envelopes
from qwc_service.wsgi import QwcApplication
from wire import INTUIT, SOAP_ENV, envelope

METHODS = {
    "serverVersion": "server_version", "clientVersion": "client_version", "authenticate": "authenticate",
    "sendRequestXML": "send_request_xml", "receiveResponseXML": "receive_response_xml",
    "connectionError": "connection_error", "getLastError": "get_last_error",
    "closeConnection": "close_connection", "getInteractiveURL": "get_interactive_url",
    "interactiveDone": "interactive_done", "interactiveRejected": "interactive_rejected",
}
HEAD = (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">')


class _Array(list):
    """What authenticate's AuthResult gives the adapters."""

    def as_array(self) -> list[str]:
        return list(self)


class Scripted:
    """Stands in for Conversation's eleven methods: records calls, answers ``answers[op]``."""

    def __init__(self, conversation: Any) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers: dict[str, Any] = {}
        for operation, method in METHODS.items():
            setattr(conversation, method, self._method(operation))

    def _method(self, operation: str):  # type: ignore[no-untyped-def]
        def answer(*args: Any) -> Any:
            self.calls.append((operation, args))
            value = self.answers.get(operation, _default(operation))
            if isinstance(value, Exception):
                raise value
            return _Array(value) if operation == "authenticate" else value
        return answer


def _default(operation: str) -> Any:
    return {"authenticate": ["ticket", "none"], "receiveResponseXML": 100}.get(operation, f"{operation} answer")


@pytest.fixture
def app(conversation) -> QwcApplication:
    return QwcApplication(conversation)


@pytest.fixture
def scripted(conversation) -> Scripted:
    return Scripted(conversation)


def both(app: QwcApplication, scripted: Scripted, body: bytes, action: str = "authenticate") -> tuple[Any, Any]:
    """(status, headers, body, calls) through the direct path and through Spyne alone."""
    replies = []
    for direct in (True, False):
        app.direct_calls = direct
        scripted.calls.clear()
        response = Client(app).post("/qbwc", data=body, headers={
            "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{INTUIT}{action}"'})
        headers = sorted((k, v) for k, v in response.headers.items())
        replies.append((response.status, headers, response.get_data(), list(scripted.calls)))
    app.direct_calls = True
    return replies[0], replies[1]


def direct_only(app: QwcApplication, monkeypatch) -> None:
    """Make Spyne unusable, to prove a call was answered without it."""
    def refuse(environ: Any, start_response: Any) -> Any:
        raise AssertionError("this call should not have reached Spyne")
    monkeypatch.setattr(app, "soap", refuse)


QBWC_CALLS = [
    ("serverVersion", ()),
    ("clientVersion", (("strVersion", "2.3.0.215"),)),
    ("authenticate", (("strUserName", "acme-sync"), ("strPassword", "correct horse"))),
    ("sendRequestXML", (("ticket", "t"), ("strHCPResponse", "<?xml version=\"1.0\"?><QBXML/>"),
                        ("strCompanyFileName", r"C:\Company Files\Acme & Sons.qbw"), ("qbXMLCountry", "US"),
                        ("qbXMLMajorVers", 13), ("qbXMLMinorVers", 0))),
    ("receiveResponseXML", (("ticket", "t"), ("response", "<QBXML><QBXMLMsgsRs/></QBXML>"), ("hresult", ""),
                            ("message", ""))),
    ("connectionError", (("ticket", "t"), ("hresult", "0x80040408"), ("message", "Could not start QuickBooks."))),
    ("getLastError", (("ticket", "t"),)),
    ("closeConnection", (("ticket", "t"),)),
    ("getInteractiveURL", (("wcTicket", "t"), ("sessionID", "s"))),
    ("interactiveDone", (("wcTicket", "t"),)),
    ("interactiveRejected", (("wcTicket", "t"), ("reason", "no"))),
]


@pytest.mark.parametrize("operation,params", QBWC_CALLS, ids=[c[0] for c in QBWC_CALLS])
def test_every_operation_in_qbwc_shape_is_answered_directly_as_spyne_would(app, scripted, monkeypatch, operation,
                                                                           params) -> None:
    direct, spyne = both(app, scripted, envelope(operation, *params), operation)
    assert direct == spyne
    assert direct[0] == "200 OK" and direct[3] and direct[3][0][0] == operation
    direct_only(app, monkeypatch)
    assert Client(app).post("/qbwc", data=envelope(operation, *params),
                            headers={"Content-Type": "text/xml"}).status_code == 200


@pytest.mark.parametrize("answer", [
    "", "plain", "<&>\"' quoted", "line\r\nbreaks\tand tabs", "é ü 中文 😀", "x" * 100_000, "]]>",
    "  leading and trailing  ",
])
@pytest.mark.parametrize("operation", ["sendRequestXML", "closeConnection", "getLastError", "connectionError"])
def test_string_answers_are_written_byte_for_byte_as_spyne(app, scripted, operation, answer) -> None:
    scripted.answers[operation] = answer
    params = dict(QBWC_CALLS)[operation]
    assert both(app, scripted, envelope(operation, *params), operation)[0] == \
        both(app, scripted, envelope(operation, *params), operation)[1]


@pytest.mark.parametrize("array", [["", "nvu"], ["abc", ""], ["abc", "busy", "30", "600"], ["t", "C:\\A&B.qbw"]])
def test_authenticate_arrays_keep_every_element(app, scripted, array) -> None:
    scripted.answers["authenticate"] = array
    direct, spyne = both(app, scripted, envelope("authenticate", *dict(QBWC_CALLS)["authenticate"]))
    assert direct == spyne
    assert direct[2].count(b"<tns:string") == len(array)


@pytest.mark.parametrize("number", [-1, 0, 1, 50, 99, 100])
def test_receive_response_numbers(app, scripted, number) -> None:
    scripted.answers["receiveResponseXML"] = number
    direct, spyne = both(app, scripted, envelope("receiveResponseXML", *dict(QBWC_CALLS)["receiveResponseXML"]), "receiveResponseXML")
    assert direct == spyne


@pytest.mark.parametrize("answer", ["bell \x07 in text", "nul \x00"])
def test_an_answer_xml_cannot_carry_is_a_fault_not_a_broken_envelope(app, scripted, answer) -> None:
    """The one place the paths differ: Spyne answers 200 with an empty envelope; the direct path faults."""
    scripted.answers["closeConnection"] = answer
    direct, spyne = both(app, scripted, envelope("closeConnection", ("ticket", "t")), "closeConnection")
    assert direct[0].startswith("500") and b"<faultcode>soap11env:Server</faultcode>" in direct[2]
    assert b"closeConnectionResult" not in spyne[2]  # Spyne's answer carries nothing QBWC can use
    assert answer.encode() not in direct[2] and answer.encode() not in spyne[2]


def test_a_crash_in_the_core_is_the_same_fault_without_a_traceback(app, scripted, caplog) -> None:
    scripted.answers["getLastError"] = RuntimeError("secret detail")
    direct, spyne = both(app, scripted, envelope("getLastError", ("ticket", "t")), "getLastError")
    assert direct == spyne
    assert direct[0].startswith("500") and b"soap11env:Server" in direct[2]
    assert b"secret" not in direct[2] and b"Traceback" not in direct[2]
    assert "secret detail" in caplog.text  # the server log has it


def _raw(inner: str, head: str = HEAD) -> bytes:
    return f"{head}{inner}</soap:Envelope>".encode()


ODD_ENVELOPES = {
    "pretty printed": _raw(f'\n  <soap:Body>\n    <authenticate xmlns="{INTUIT}">\n      <strUserName>u</strUserName>'
                           '\n      <strPassword>p</strPassword>\n    </authenticate>\n  </soap:Body>\n'),
    "empty header": _raw(f'<soap:Header/><soap:Body><authenticate xmlns="{INTUIT}"><strUserName>u</strUserName>'
                         '<strPassword>p</strPassword></authenticate></soap:Body>'),
    "header with content": _raw(f'<soap:Header><x xmlns="urn:x">1</x></soap:Header><soap:Body><authenticate '
                                f'xmlns="{INTUIT}"><strUserName>u</strUserName><strPassword>p</strPassword>'
                                '</authenticate></soap:Body>'),
    "prefixed parameters": _raw(f'<soap:Body><q:authenticate xmlns:q="{INTUIT}"><q:strUserName>u</q:strUserName>'
                                '<q:strPassword>p</q:strPassword></q:authenticate></soap:Body>'),
    "parameters out of order": _raw(f'<soap:Body><authenticate xmlns="{INTUIT}"><strPassword>p</strPassword>'
                                    '<strUserName>u</strUserName></authenticate></soap:Body>'),
    "missing parameter": _raw(f'<soap:Body><authenticate xmlns="{INTUIT}"><strUserName>u</strUserName>'
                              '</authenticate></soap:Body>'),
    "no parameters at all": _raw(f'<soap:Body><authenticate xmlns="{INTUIT}"/></soap:Body>'),
    "nil parameter": _raw(f'<soap:Body><authenticate xmlns="{INTUIT}"><strUserName xsi:nil="true"/>'
                          '<strPassword>p</strPassword></authenticate></soap:Body>'),
    "duplicate parameter": _raw(f'<soap:Body><authenticate xmlns="{INTUIT}"><strUserName>a</strUserName>'
                                '<strUserName>b</strUserName><strPassword>p</strPassword></authenticate></soap:Body>'),
    "unknown parameter": _raw(f'<soap:Body><authenticate xmlns="{INTUIT}"><strUserName>a</strUserName>'
                              '<extra>x</extra><strPassword>p</strPassword></authenticate></soap:Body>'),
    "parameter in no namespace": _raw(f'<soap:Body><q:authenticate xmlns:q="{INTUIT}"><strUserName>a</strUserName>'
                                      '<strPassword>p</strPassword></q:authenticate></soap:Body>'),
    "child elements in a string": _raw(f'<soap:Body><authenticate xmlns="{INTUIT}"><strUserName>a<b>c</b>d'
                                       '</strUserName><strPassword>p</strPassword></authenticate></soap:Body>'),
    "comments, CDATA and character references": _raw(
        f'<soap:Body><!-- c --><authenticate xmlns="{INTUIT}"><strUserName><![CDATA[a<&>b]]>&#x263A;&amp;'
        '</strUserName><strPassword>p<!-- x -->q</strPassword></authenticate></soap:Body>'),
    "whitespace-only values": _raw(f'<soap:Body><authenticate xmlns="{INTUIT}"><strUserName>  </strUserName>'
                                   '<strPassword>\n</strPassword></authenticate></soap:Body>'),
    "wrong operation namespace": _raw('<soap:Body><authenticate xmlns="urn:other"><strUserName>u</strUserName>'
                                      '</authenticate></soap:Body>'),
    "unknown operation": _raw(f'<soap:Body><deleteEverything xmlns="{INTUIT}"/></soap:Body>'),
    "two operations": _raw(f'<soap:Body><serverVersion xmlns="{INTUIT}"/><serverVersion xmlns="{INTUIT}"/>'
                           '</soap:Body>'),
    "empty body": _raw('<soap:Body/>'),
    "no body": _raw(''),
    "text in the body": _raw(f'<soap:Body>junk<serverVersion xmlns="{INTUIT}"/></soap:Body>'),
    "SOAP 1.2": (f'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>'
                 f'<serverVersion xmlns="{INTUIT}"/></env:Body></env:Envelope>').encode(),
    "not an envelope": b'<html><body>hi</body></html>',
    "malformed": _raw(f'<soap:Body><serverVersion xmlns="{INTUIT}"></soap:Body>'),
    "truncated": _raw(f'<soap:Body><serverVersion xmlns="{INTUIT}"/></soap:Body>')[:-20],
    "DTD with an entity": (f'<?xml version="1.0"?><!DOCTYPE soap:Envelope [<!ENTITY x "boom">]>'
                           f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><closeConnection xmlns="{INTUIT}">'
                           '<ticket>&x;</ticket></closeConnection></soap:Body></soap:Envelope>').encode(),
    "UTF-16": _raw(f'<soap:Body><clientVersion xmlns="{INTUIT}"><strVersion>2.3 é</strVersion></clientVersion>'
                   '</soap:Body>', HEAD.replace("utf-8", "utf-16")).decode().encode("utf-16"),
    "latin-1": _raw(f'<soap:Body><clientVersion xmlns="{INTUIT}"><strVersion>\xe9</strVersion></clientVersion>'
                    '</soap:Body>', HEAD.replace("utf-8", "iso-8859-1")).decode().encode("latin-1"),
    "attribute on the operation": _raw(f'<soap:Body><serverVersion xmlns="{INTUIT}" a="1"/></soap:Body>'),
}
INTS = ["13", "013", "0", "-1", "+13", " 13", "13 ", "1_3", "\u0661\u0663", "2147483647", "2147483648",
        "-2147483649", "99999999999999999999", "", "x", "1.0"]


@pytest.mark.parametrize("name", list(ODD_ENVELOPES))
def test_odd_but_possible_envelopes_get_spynes_answer(app, scripted, name) -> None:
    direct, spyne = both(app, scripted, ODD_ENVELOPES[name])
    assert direct == spyne


@pytest.mark.parametrize("major", INTS)
def test_integer_parameters_are_read_as_spyne_reads_them(app, scripted, major) -> None:
    params = (("ticket", "t"), ("strHCPResponse", ""), ("strCompanyFileName", ""), ("qbXMLCountry", "US"),
              ("qbXMLMajorVers", major), ("qbXMLMinorVers", "0"))
    direct, spyne = both(app, scripted, envelope("sendRequestXML", *params), "sendRequestXML")
    assert direct == spyne


def test_plain_integers_are_answered_directly(app, scripted, monkeypatch) -> None:
    direct_only(app, monkeypatch)
    for major in ("13", "0", "7"):
        params = (("ticket", "t"), ("qbXMLMajorVers", major), ("qbXMLMinorVers", "0"))
        assert Client(app).post("/qbwc", data=envelope("sendRequestXML", *params)).status_code == 200
    assert [args[4] for _, args in scripted.calls] == [13, 0, 7]


_xml_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"
                                  ).filter(lambda c: c in "\t\n\r" or ord(c) >= 0x20 and c not in "\ufffe\uffff"),
                    max_size=60)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=_xml_text, password=_xml_text, ticket=_xml_text)
def test_any_text_values_are_read_alike(app, scripted, user, password, ticket) -> None:
    direct, spyne = both(app, scripted, envelope("authenticate", ("strUserName", user), ("strPassword", password)))
    assert direct == spyne
    direct, spyne = both(app, scripted, envelope("closeConnection", ("ticket", ticket)), "closeConnection")
    assert direct == spyne


def test_read_call_leaves_other_shapes_alone() -> None:
    from lxml import etree

    parse = lambda body: etree.fromstring(body, envelopes.new_parser())  # noqa: E731
    call = envelopes.read_call(parse(envelope("clientVersion", ("strVersion", "2.3"))))
    assert call == envelopes.Call("clientVersion", {"strVersion": "2.3"})
    assert envelopes.read_call(parse(ODD_ENVELOPES["header with content"])) is None
    assert envelopes.read_call(parse(envelope("sendRequestXML", ("qbXMLMajorVers", "13")))) is None


def test_a_full_temporary_directory_spares_qbwc_shaped_calls(app, scripted, monkeypatch, caplog) -> None:
    import tempfile

    from qwc_service import wsgi

    class Full(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(wsgi.tempfile, "SpooledTemporaryFile", Full)
    app.direct_calls = True
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{INTUIT}authenticate"'}
    plain = Client(app).post("/qbwc", data=envelope("authenticate", ("strUserName", "u"), ("strPassword", "p")),
                             headers=headers)
    assert plain.status_code == 200 and [(op, args[:2]) for op, args in scripted.calls] == [("authenticate", ("u", "p"))]
    odd = Client(app).post("/qbwc", data=ODD_ENVELOPES["header with content"], headers=headers)
    assert odd.status_code == 500 and b"could not store this request temporarily" in odd.data
    assert b"Traceback" not in odd.data and "No space left on device" in caplog.text
