"""The fake Web Connector against a scripted SOAP server over real HTTP.

The stub server below (a WSGI app under ``wsgiref``) is deliberately dumb: it answers each operation from a
queue the test fills and records every raw request, so each test can check
what QBWC would put on the wire (headers, envelope, call order, one TCP
connection) for one kind of session. The same connector runs against the real
server elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from wsgiref.simple_server import (
    ServerHandler,
    WSGIRequestHandler,
    WSGIServer,
    make_server,
)

import pytest
from lxml import etree

from qwc_service.simulator import (
    CrashFault,
    DropFault,
    FakeQuickBooks,
    FakeWebConnector,
    Faults,
    OpenFault,
    Outcome,
    QuickBooksProfile,
    SessionResult,
    build_scenario,
    element,
    format_transcript,
    read_responses,
    request_document,
    result_to_dict,
)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
QBWC = "http://developer.intuit.com/"
DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'

ADD_ACME_JR = request_document(element("CustomerAddRq", {"CustomerAdd": {"Name": "Acme Jr"}}, requestID="1"))
QUERY_CUSTOMERS = request_document(element("CustomerQueryRq", {"MaxReturned": "5"}, requestID="2"))


# --- a scripted QBWC web service ------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Tell the stub to answer with a soap:Fault (HTTP 500), as a server that raised would."""

    message: str


@dataclass(frozen=True)
class Raw:
    """Tell the stub to answer with these bytes and headers, whatever they are."""

    status: str
    content_type: str
    body: bytes


Answer = str | int | tuple[str, ...] | Fault | Raw

DEFAULT_ANSWERS: dict[str, Answer] = {
    "serverVersion": "stub 1.0",
    "clientVersion": "",
    "authenticate": ("ticket-1", ""),
    "sendRequestXML": "",
    "receiveResponseXML": 100,
    "connectionError": "done",
    "getLastError": "stub: nothing to report",
    "closeConnection": "OK",
}


@dataclass(frozen=True)
class Received:
    """One HTTP request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    remote_port: int
    operation: str
    parameters: dict[str, str]


@dataclass
class StubService:
    """A WSGI QBWC service: answers from ``script`` (then defaults) and records raw requests."""

    script: dict[str, list[Answer]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    #: Client ports whose TCP connection has been closed by the client.
    closed_ports: list[int] = field(default_factory=list)
    closed: threading.Condition = field(default_factory=threading.Condition)

    def answer(self, **answers: list[Answer]) -> None:
        self.script.update(answers)

    @property
    def operations(self) -> list[str]:
        return [r.operation for r in self.received]

    def wait_closed(self, port: int, timeout: float = 2.0) -> bool:
        with self.closed:
            return self.closed.wait_for(lambda: port in self.closed_ports, timeout)

    def __call__(self, environ: dict, start_response):  # type: ignore[no-untyped-def]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        wrapper = etree.fromstring(body).find(f"{{{SOAP}}}Body")[0]
        operation = etree.QName(wrapper).localname
        headers = {
            key[5:].replace("_", "-").title(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        headers["Content-Type"] = environ.get("CONTENT_TYPE", "")
        headers["Content-Length"] = environ.get("CONTENT_LENGTH", "")
        self.received.append(
            Received(
                method=environ["REQUEST_METHOD"],
                path=environ["PATH_INFO"],
                headers=headers,
                body=body,
                remote_port=int(environ["REMOTE_PORT"]),
                operation=operation,
                parameters={etree.QName(p).localname: p.text or "" for p in wrapper},
            )
        )
        queue = self.script.get(operation, [])
        reply = queue.pop(0) if queue else DEFAULT_ANSWERS[operation]
        status, content_type, data = self._encode(operation, reply)
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _encode(operation: str, reply: Answer) -> tuple[str, str, bytes]:
        if isinstance(reply, Raw):
            return reply.status, reply.content_type, reply.body
        envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP})
        body = etree.SubElement(envelope, f"{{{SOAP}}}Body")
        status = "200 OK"
        if isinstance(reply, Fault):
            fault = etree.SubElement(body, f"{{{SOAP}}}Fault")
            etree.SubElement(fault, "faultcode").text = "soap:Server"
            etree.SubElement(fault, "faultstring").text = reply.message
            status = "500 Internal Server Error"
        else:
            response = etree.SubElement(body, f"{{{QBWC}}}{operation}Response", nsmap={None: QBWC})
            result = etree.SubElement(response, f"{{{QBWC}}}{operation}Result")
            if isinstance(reply, tuple):
                for value in reply:
                    etree.SubElement(result, f"{{{QBWC}}}string").text = value
            else:
                result.text = str(reply)
        return status, "text/xml; charset=utf-8", etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


class KeepAliveHandler(WSGIRequestHandler):
    """wsgiref's request handler, serving every request of a kept-alive connection.

    wsgiref answers one HTTP/1.0 request per connection. QBWC and production
    servers keep one connection for a whole session, and that is under test,
    so this handler speaks HTTP/1.1 (which also makes http.server answer
    ``Expect: 100-continue``), loops until the client closes, adds
    ``REMOTE_PORT`` to the environ, and reports when the connection ended.
    (Werkzeug's development server cannot stand in: it drains the socket
    after each response, swallowing a quick client's next request.)
    """

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Like waitress: without it, Nagle's algorithm holds each small answer ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        try:
            while True:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    break
                handler = Http11ServerHandler(
                    self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True
                )
                handler.request_handler = self
                handler.run(self.server.get_app())  # type: ignore[attr-defined]
                if self.close_connection:
                    break
        finally:
            stub: StubService = self.server.get_app()  # type: ignore[attr-defined]
            with stub.closed:
                stub.closed_ports.append(self.client_address[1])
                stub.closed.notify_all()

    def get_environ(self) -> dict[str, str]:
        environ = super().get_environ()
        environ["REMOTE_PORT"] = str(self.client_address[1])
        return environ

    def log_message(self, format: str, *args: object) -> None:
        pass


class Http11ServerHandler(ServerHandler):
    """Answer with an HTTP/1.1 status line, so that the client keeps the connection."""

    http_version = "1.1"


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture
def stub() -> Iterator[StubService]:
    service = StubService()
    server = make_server("127.0.0.1", 0, service, server_class=ThreadingWSGIServer, handler_class=KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    service.url = f"http://127.0.0.1:{server.server_port}/qbwc"
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def connector(stub: StubService, quickbooks: FakeQuickBooks | None = None, **options: object) -> FakeWebConnector:
    options.setdefault("username", "sync")
    options.setdefault("password", "s3cret")
    return FakeWebConnector(stub.url, quickbooks, **options)  # type: ignore[arg-type]


# --- a whole session ------------------------------------------------------------------


def test_happy_session_with_two_requests(stub: StubService) -> None:
    quickbooks = FakeQuickBooks()
    stub.answer(
        sendRequestXML=[ADD_ACME_JR, QUERY_CUSTOMERS],
        receiveResponseXML=[50, 100],
        closeConnection=["Synchronised 2 requests"],
    )

    result = connector(stub, quickbooks).run()

    expected = ["serverVersion", "clientVersion", "authenticate", "sendRequestXML", "receiveResponseXML",
                "sendRequestXML", "receiveResponseXML", "closeConnection"]  # fmt: skip
    assert stub.operations == result.operations == expected
    assert (result.outcome, result.final_status, result.ticket) == (Outcome.OK, "Synchronised 2 requests", "ticket-1")
    # What went to QuickBooks and what came back.
    assert [e.request for e in result.exchanges] == [ADD_ACME_JR, QUERY_CUSTOMERS]
    added = read_responses(stub.received[4].parameters["response"])
    assert [(rs.type, rs.request_id, rs.status_code) for rs in added] == [("CustomerAddRs", "1", 0)]
    queried = read_responses(stub.received[6].parameters["response"])
    assert [r.findtext("Name") for r in queried[0].records] == ["Acme Jr"]
    assert stub.received[4].parameters["hresult"] == stub.received[4].parameters["message"] == ""
    assert [c.findtext("Name") for c in quickbooks.company.records("Customer")] == ["Acme Jr"]
    # The parameters QBWC fills in.
    assert stub.received[1].parameters == {"strVersion": "2.3.0.215"}
    assert stub.received[2].parameters == {"strUserName": "sync", "strPassword": "s3cret"}
    first, second = stub.received[3].parameters, stub.received[5].parameters
    assert first["strHCPResponse"] == quickbooks.first_call_response()
    assert second["strHCPResponse"] == ""
    for send in (first, second):
        assert send["ticket"] == "ticket-1"
        assert send["strCompanyFileName"] == QuickBooksProfile().company_file
        assert (send["qbXMLCountry"], send["qbXMLMajorVers"], send["qbXMLMinorVers"]) == ("US", "13", "0")
    assert stub.received[-1].parameters == {"ticket": "ticket-1"}


def test_every_call_carries_qbwc_headers_on_one_kept_alive_connection(stub: StubService) -> None:
    stub.answer(sendRequestXML=[QUERY_CUSTOMERS])

    result = connector(stub).run()

    assert len(stub.received) == 6
    for index, request in enumerate(stub.received):
        assert (request.method, request.path) == ("POST", "/qbwc")
        assert request.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert request.headers["Soapaction"] == f'"http://developer.intuit.com/{request.operation}"'
        assert request.headers["Expect"] == "100-continue"
        assert request.headers["Content-Length"] == str(len(request.body))
        assert request.headers["User-Agent"].startswith(
            "Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol"
        )
        # .NET says Keep-Alive when it opens the connection, then just reuses it.
        assert request.headers.get("Connection") == ("Keep-Alive" if index == 0 else None)
    ports = {request.remote_port for request in stub.received}
    assert len(ports) == 1
    assert {call.local_port for call in result.transcript} == ports
    assert all(call.http_status == 200 and call.duration > 0 for call in result.transcript)


def test_envelopes_are_one_line_like_dotnet_writes_them(stub: StubService) -> None:
    stub.answer(sendRequestXML=[QUERY_CUSTOMERS])
    connector(stub).run()

    for request in stub.received:
        assert request.body.startswith(DECLARATION + b"<soap:Envelope ")
        assert b"\n" not in request.body and b"\r" not in request.body
        root = etree.fromstring(request.body)
        assert root.nsmap == {"soap": SOAP, "xsi": "http://www.w3.org/2001/XMLSchema-instance",
                              "xsd": "http://www.w3.org/2001/XMLSchema"}  # fmt: skip
        [body] = root
        assert body.tag == f"{{{SOAP}}}Body"
        [wrapper] = body
        assert wrapper.tag == f"{{{QBWC}}}{request.operation}"
        assert wrapper.prefix is None and wrapper.nsmap[None] == QBWC
        assert all(child.tag.startswith(f"{{{QBWC}}}") for child in wrapper)

    server_version, _, _, send, receive, _ = stub.received
    assert len(etree.fromstring(server_version.body)[0][0]) == 0
    assert b'<serverVersion xmlns="http://developer.intuit.com/"/></soap:Body>' in server_version.body
    names = [etree.QName(child).localname for child in etree.fromstring(send.body)[0][0]]
    assert names == [
        "ticket",
        "strHCPResponse",
        "strCompanyFileName",
        "qbXMLCountry",
        "qbXMLMajorVers",
        "qbXMLMinorVers",
    ]
    # Empty parameters are sent as empty elements, never left out.
    assert b"<hresult/>" in receive.body and b"<message/>" in receive.body


def test_the_password_never_reaches_the_transcript(stub: StubService) -> None:
    result = connector(stub, password="hunter2").run()

    [authenticate] = result.calls("authenticate")
    assert authenticate.parameters == {"strUserName": "sync", "strPassword": "********"}
    assert "hunter2" not in json.dumps(result_to_dict(result))
    assert stub.received[2].parameters["strPassword"] == "hunter2"


def test_the_body_waits_for_100_continue_like_dotnet() -> None:
    # A bare socket server, to see the bytes and their timing: headers first,
    # the body only after the server's interim "100 Continue".
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, bytes] = {}

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(2)
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(65536)
            seen["head"], seen["early"] = received.split(b"\r\n\r\n", 1)
            connection.settimeout(0.1)
            with contextlib.suppress(TimeoutError):
                seen["early"] += connection.recv(65536)
            connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            connection.settimeout(2)
            seen["body"] = connection.recv(65536)
            _, content_type, answer = StubService._encode("serverVersion", "raw 1.0")
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(answer)}\r\n\r\n"
            connection.sendall(head.encode() + answer)
            connection.recv(1)  # until the client closes

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/qbwc"
    with listener:
        result = FakeWebConnector(url, timeout=2, expect_continue_timeout=1.0).run()
        server.join(timeout=2)

    assert seen["head"].split(b"\r\n") == [
        b"POST /qbwc HTTP/1.1",
        b"Host: " + url.split("/")[2].encode(),
        b"User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)",
        b"Content-Type: text/xml; charset=utf-8",
        b'SOAPAction: "http://developer.intuit.com/serverVersion"',
        b"Content-Length: " + str(len(seen["body"])).encode(),
        b"Expect: 100-continue",
        b"Connection: Keep-Alive",
    ]
    assert seen["early"] == b""
    assert seen["body"].startswith(DECLARATION + b"<soap:Envelope ")
    assert result.transcript[0].answer == "raw 1.0"


# --- authenticate says there is nothing to do -----------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "shown"),
    [
        ("nvu", Outcome.NVU, "did not accept the user name and password"),
        ("none", Outcome.NONE, "No data exchange required"),
        ("NONE", Outcome.NONE, "No data exchange required"),
        ("busy", Outcome.BUSY, "busy"),
    ],
)
def test_authenticate_without_work_closes_at_once(stub: StubService, status: str, outcome: Outcome, shown: str) -> None:
    stub.answer(authenticate=[("ticket-9", status, "", "")])

    result = connector(stub).run()

    assert stub.operations == ["serverVersion", "clientVersion", "authenticate", "closeConnection"]
    assert stub.received[-1].parameters == {"ticket": "ticket-9"}
    assert result.outcome == outcome
    assert shown in result.final_status
    assert result.exchanges == ()


def test_client_version_error_stops_before_authenticate(stub: StubService) -> None:
    stub.answer(clientVersion=["E:Please upgrade"])

    result = connector(stub).run()

    assert stub.operations == ["serverVersion", "clientVersion"]
    assert result.outcome == Outcome.VERSION_REFUSED
    assert result.final_status.startswith("QBWC1037:") and result.final_status.endswith("Please upgrade")


def test_client_version_minimum_is_compared_with_our_version(stub: StubService) -> None:
    stub.answer(clientVersion=["O:2.2.0.71", "O:3.0"], authenticate=[("ticket-1", "none")])

    older_required = connector(stub).run()
    newer_required = connector(stub).run()

    assert older_required.outcome == Outcome.NONE
    assert newer_required.outcome == Outcome.VERSION_REFUSED
    assert newer_required.final_status == (
        "The web service requires QuickBooks Web Connector 3.0 or later; this is 2.3.0.215."
    )


# --- errors the server reports --------------------------------------------------------


def test_negative_percentage_asks_get_last_error_then_closes(stub: StubService) -> None:
    stub.answer(sendRequestXML=[ADD_ACME_JR], receiveResponseXML=[-1], getLastError=["Job 7 failed: 3100"])

    result = connector(stub).run()

    assert stub.operations[3:] == ["sendRequestXML", "receiveResponseXML", "getLastError", "closeConnection"]
    assert stub.received[5].parameters == {"ticket": "ticket-1"}
    assert (result.outcome, result.final_status, result.close_message) == (Outcome.ERROR, "Job 7 failed: 3100", "OK")


def test_noop_waits_and_asks_again(stub: StubService) -> None:
    waits: list[float] = []
    stub.answer(sendRequestXML=["", QUERY_CUSTOMERS], getLastError=["NoOp"])

    result = connector(stub, sleep=waits.append).run()

    assert stub.operations[3:] == ["sendRequestXML", "getLastError", "sendRequestXML", "receiveResponseXML",
                                   "closeConnection"]  # fmt: skip
    assert waits == [5.0]
    hcp = [r.parameters["strHCPResponse"] for r in stub.received if r.operation == "sendRequestXML"]
    assert hcp[0].startswith('<?xml version="1.0" ?><QBXML>') and hcp[1] == ""
    assert result.outcome == Outcome.OK


def test_noops_are_bounded(stub: StubService) -> None:
    stub.answer(getLastError=["NoOp"] * 10)

    result = connector(stub, noop_wait=0.0, max_noops=2).run()

    assert stub.operations[3:] == ["sendRequestXML", "getLastError"] * 3 + ["closeConnection"]
    assert result.outcome == Outcome.STOPPED


def test_empty_send_request_with_an_error_text_ends_the_session(stub: StubService) -> None:
    stub.answer(getLastError=["Nothing queued for this company file"])

    result = connector(stub).run()

    assert stub.operations[3:] == ["sendRequestXML", "getLastError", "closeConnection"]
    assert (result.outcome, result.final_status) == (Outcome.ERROR, "Nothing queued for this company file")


def test_a_request_quickbooks_cannot_parse_comes_back_as_an_hresult(stub: StubService) -> None:
    stub.answer(sendRequestXML=["<QBXML><not-closed>"])

    result = connector(stub).run()

    receive = stub.received[4].parameters
    assert receive["response"] == ""
    assert receive["hresult"] == "0x80040400"
    assert receive["message"] == "QuickBooks found an error when parsing the provided XML text stream."
    assert result.exchanges[0].result.hresult == "0x80040400"


# --- QuickBooks cannot be opened -----------------------------------------------------


def test_connection_error_path_until_the_server_says_done(stub: StubService) -> None:
    stub.answer(authenticate=[("ticket-2", r"C:\Company.qbw")], connectionError=[r"C:\Other.qbw", "done"])

    result = connector(stub, faults=Faults(OpenFault(hresult="0x80040408", times=None))).run()

    assert stub.operations == ["serverVersion", "clientVersion", "authenticate", "connectionError",
                               "connectionError", "closeConnection"]  # fmt: skip
    for request in stub.received[3:5]:
        assert request.parameters == {
            "ticket": "ticket-2",
            "hresult": "0x80040408",
            "message": "Could not start QuickBooks.",
        }
    assert result.outcome == Outcome.CONNECTION_ERROR
    assert result.final_status.endswith("Could not start QuickBooks.")


def test_connection_error_retries_are_bounded(stub: StubService) -> None:
    stub.answer(connectionError=[r"C:\Other.qbw"] * 10)

    result = connector(stub, faults=Faults(OpenFault(times=None))).run()

    assert stub.operations.count("connectionError") == 3  # the first failure and two retries
    assert stub.operations[-1] == "closeConnection"
    assert result.outcome == Outcome.CONNECTION_ERROR


def test_a_retry_that_works_continues_with_the_requested_file(stub: StubService) -> None:
    stub.answer(connectionError=[r"C:\Retry.qbw"], sendRequestXML=[QUERY_CUSTOMERS])

    result = connector(stub, faults=Faults(OpenFault(times=1))).run()

    assert stub.operations[3:] == ["connectionError", "sendRequestXML", "receiveResponseXML", "closeConnection"]
    assert stub.received[4].parameters["strCompanyFileName"] == r"C:\Retry.qbw"
    assert result.outcome == Outcome.OK


def test_quickbooks_not_running_scenario_end_to_end(stub: StubService) -> None:
    quickbooks, faults = build_scenario("quickbooks-not-running")

    result = connector(stub, quickbooks, faults=faults).run()

    assert result.operations == ["serverVersion", "clientVersion", "authenticate", "connectionError", "closeConnection"]
    assert result.outcome == Outcome.CONNECTION_ERROR


# --- the connector goes away ---------------------------------------------------------


def test_dropped_connection_after_send_request_xml(stub: StubService) -> None:
    quickbooks = FakeQuickBooks()
    stub.answer(sendRequestXML=[ADD_ACME_JR])

    result = connector(stub, quickbooks, faults=Faults(DropFault(call=1))).run()

    assert stub.operations == result.operations == ["serverVersion", "clientVersion", "authenticate", "sendRequestXML"]
    # The socket really closed, right after the answer was read.
    assert stub.wait_closed(stub.received[-1].remote_port)
    assert result.outcome == Outcome.DROPPED
    assert result.exchanges == ()
    assert quickbooks.company.records("Customer") == []  # the request never reached QuickBooks


def test_crash_after_quickbooks_performed_the_request(stub: StubService) -> None:
    quickbooks = FakeQuickBooks()
    stub.answer(sendRequestXML=[QUERY_CUSTOMERS, ADD_ACME_JR], receiveResponseXML=[50])

    result = connector(stub, quickbooks, faults=Faults(CrashFault(request="CustomerAdd"))).run()

    assert stub.operations[3:] == ["sendRequestXML", "receiveResponseXML", "sendRequestXML"]
    assert stub.wait_closed(stub.received[-1].remote_port)
    assert result.outcome == Outcome.CRASHED
    assert [e.number for e in result.exchanges] == [1, 2]
    # QuickBooks did the write; the server was never told.
    assert [c.findtext("Name") for c in quickbooks.company.records("Customer")] == ["Acme Jr"]


# --- failures QBWC reports with a QBWC10xx code --------------------------------------


def test_a_soap_fault_ends_the_session_without_further_calls(stub: StubService) -> None:
    stub.answer(sendRequestXML=[Fault("database is locked")])

    result = connector(stub).run()

    assert stub.operations[-1] == "sendRequestXML"
    [send] = result.calls("sendRequestXML")
    assert (send.http_status, send.fault and send.fault.message, send.answer) == (500, "database is locked", None)
    assert result.outcome == Outcome.FAULT
    assert result.final_status == "QBWC1041: SendRequestXML failed due to error message: database is locked."


def test_faults_in_the_version_calls_are_tolerated(stub: StubService) -> None:
    # QBWC lets services without serverVersion/clientVersion through, for backward compatibility.
    stub.answer(serverVersion=[Fault("no such method")], clientVersion=[Fault("no such method")],
                sendRequestXML=[QUERY_CUSTOMERS])  # fmt: skip

    result = connector(stub).run()

    assert [call.fault is not None for call in result.transcript[:3]] == [True, True, False]
    assert result.operations[2:] == ["authenticate", "sendRequestXML", "receiveResponseXML", "closeConnection"]
    assert result.outcome == Outcome.OK


def test_a_non_xml_answer_is_reported_like_dotnet_does(stub: StubService) -> None:
    stub.answer(authenticate=[Raw("500 Internal Server Error", "text/html", b"<h1>Oops</h1>")])

    result = connector(stub).run()

    assert stub.operations == ["serverVersion", "clientVersion", "authenticate"]
    assert result.outcome == Outcome.FAULT
    assert result.final_status == (
        "QBWC1012: Authentication failed due to error message: "
        "Client found response content type of 'text/html', but expected 'text/xml'."
    )


def test_an_authenticate_array_missing_its_empty_status_is_a_fault(stub: StubService) -> None:
    # The bug the protocol notes warn about: a serializer that drops the empty <string/>.
    stub.answer(authenticate=[("ticket-1",)])

    result = connector(stub).run()

    assert result.outcome == Outcome.FAULT
    assert result.final_status.startswith("QBWC1012:")
    assert stub.operations == ["serverVersion", "clientVersion", "authenticate"]


def test_an_answer_that_is_not_an_int_fails_receive_response_xml(stub: StubService) -> None:
    stub.answer(sendRequestXML=[QUERY_CUSTOMERS], receiveResponseXML=["fifty"])

    result = connector(stub).run()

    assert result.outcome == Outcome.FAULT
    assert result.final_status.startswith("QBWC1042: ReceiveResponseXML failed due to error message:")
    assert "not an xs:int" in result.final_status


def test_an_unreachable_server_is_a_fault() -> None:
    result = FakeWebConnector("http://127.0.0.1:9/qbwc", timeout=2).run()

    assert result.outcome == Outcome.FAULT
    assert result.operations == ["serverVersion"]
    assert result.transcript[0].error


# --- reports -------------------------------------------------------------------------


def happy_result(stub: StubService) -> SessionResult:
    stub.answer(sendRequestXML=[ADD_ACME_JR, QUERY_CUSTOMERS], receiveResponseXML=[50, 100], closeConnection=["Done"])
    return connector(stub, faults=Faults()).run()


def test_transcript_reads_as_a_story(stub: StubService) -> None:
    text = format_transcript(happy_result(stub))
    lines = text.splitlines()

    assert lines[0].startswith("  1  serverVersion") and "→ 'stub 1.0'" in lines[0]
    assert (
        "authenticate sync / ********" in lines[2] and "status '' (use the company file open in QuickBooks)" in lines[2]
    )
    assert "sendRequestXML (with first-call response)" in lines[3] and "CustomerAddRq#1 (stopOnError)" in lines[3]
    assert lines[4] == "     QuickBooks: CustomerAddRs#1 0 Info 'Status OK', 1 record(s)"
    assert "receiveResponseXML" in lines[5] and "→ 50%" in lines[5]
    assert lines[-2:] == ["Outcome: ok", "QBWC shows: Done"]


def test_result_as_data_is_json_ready(stub: StubService) -> None:
    data = json.loads(json.dumps(result_to_dict(happy_result(stub))))

    assert (data["outcome"], data["final_status"], data["ticket"]) == ("ok", "Done", "ticket-1")
    assert [c["operation"] for c in data["calls"]][:3] == ["serverVersion", "clientVersion", "authenticate"]
    assert data["calls"][2]["answer"] == ["ticket-1", ""]
    assert data["calls"][4]["answer"] == 50
    assert [e["number"] for e in data["exchanges"]] == [1, 2]
    assert data["exchanges"][0]["request"] == ADD_ACME_JR
    assert data["exchanges"][0]["call_index"] == 3
