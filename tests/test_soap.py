"""The SOAP endpoint over real HTTP: raw QBWC-shaped envelopes, zeep, and hostile input."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest
import requests
from lxml import etree

from conftest import sample
from qwc_service.config import Settings
from wire import INTUIT, SOAP_ENV, WireClient, envelope

HCP = sample("qbxml_strHCPResponse_QuickBooksPro2014_qbxml13_qbwc-gem-fixture.xml")
ADD_OK = sample("qbxml_CustomerAddRs_statusCode0_qbwc-gem-fixture.xml")
QUERY_ERROR = sample("qbxml_CustomerQueryRs_statusCode3120_Error_qbwc-gem-fixture.xml")
CUSTOMER_ADD = "<CustomerAddRq><CustomerAdd><Name>Joe &amp; Sons</Name></CustomerAdd></CustomerAddRq>"
CUSTOMER_QUERY = "<CustomerQueryRq><MaxReturned>5</MaxReturned></CustomerQueryRq>"
WSDL_NS = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
           "xs": "http://www.w3.org/2001/XMLSchema"}
OPERATIONS = ["serverVersion", "clientVersion", "authenticate", "sendRequestXML", "receiveResponseXML",
              "connectionError", "getLastError", "closeConnection", "getInteractiveURL", "interactiveDone",
              "interactiveRejected"]


def send_request(client: WireClient, ticket: str, hcp: str = "") -> str:
    reply = client.call("sendRequestXML", ("ticket", ticket), ("strHCPResponse", hcp),
                        ("strCompanyFileName", r"C:\Acme.qbw"), ("qbXMLCountry", "US"),
                        ("qbXMLMajorVers", 13), ("qbXMLMinorVers", 0))
    assert reply.status == 200
    return reply.result("sendRequestXML")


def receive(client: WireClient, ticket: str, response: str, hresult: str = "", message: str = "") -> int:
    reply = client.call("receiveResponseXML", ("ticket", ticket), ("response", response),
                        ("hresult", hresult), ("message", message))
    assert reply.status == 200
    return int(reply.result("receiveResponseXML"))


def test_whole_session_with_raw_qbwc_envelopes(live_server, add_connection, enqueue, get_job) -> None:
    conn = add_connection()
    add, failing = enqueue(conn, CUSTOMER_ADD), enqueue(conn, CUSTOMER_QUERY)
    client = WireClient(live_server.url)
    try:
        assert client.call("serverVersion").result("serverVersion").startswith("qwc-service")
        assert client.call("clientVersion", ("strVersion", "2.3.0.215")).result("clientVersion") == ""
        reply = client.call("authenticate", ("strUserName", "acme-sync"), ("strPassword", "correct horse"))
        assert reply.status == 200 and reply.content_type.startswith("text/xml")
        ticket, status = reply.strings()
        assert status == "" and len(ticket) >= 32
        # the empty second element is on the wire, not dropped
        assert reply.body.count(b"string>") == 4

        request = send_request(client, ticket, HCP)
        assert "<Name>Joe &amp; Sons</Name>" in request  # a plain string, escaped once by SOAP
        assert request.startswith("<?xml") and '<?qbxml version="13.0"?>' in request
        assert receive(client, ticket, ADD_OK) == 50
        assert "<CustomerQueryRq requestID=" in send_request(client, ticket)
        assert receive(client, ticket, QUERY_ERROR) == 100
        closing = client.call("closeConnection", ("ticket", ticket)).result("closeConnection")
        assert closing.startswith("1 job done, 1 failed. Warning: QuickBooks was already open")
    finally:
        client.close()
    assert get_job(add.id).state == "done" and get_job(failing.id).state == "failed"


def test_empty_queue_session(live_server, add_connection) -> None:
    add_connection()
    client = WireClient(live_server.url)
    reply = client.call("authenticate", ("strUserName", "acme-sync"), ("strPassword", "correct horse"))
    ticket, status = reply.strings()
    assert status == "none"
    assert client.call("closeConnection", ("ticket", ticket)).status == 200


def test_nvu_answers_are_byte_identical(live_server, add_connection, enqueue) -> None:
    enqueue(add_connection(), CUSTOMER_QUERY)
    client = WireClient(live_server.url)
    bodies = {
        client.call("authenticate", ("strUserName", user), ("strPassword", password)).body
        for user, password in [("acme-sync", "nope"), ("stranger", "correct horse"), ("", "")]
    }
    assert len(bodies) == 1
    assert WireClient(live_server.url).call("authenticate", ("strUserName", "x"), ("strPassword", "y")).strings() == [
        "", "nvu"]


def test_every_empty_parameter_is_accepted(live_server) -> None:
    client = WireClient(live_server.url)
    for operation, names in [
        ("clientVersion", ["strVersion"]), ("authenticate", ["strUserName", "strPassword"]),
        ("receiveResponseXML", ["ticket", "response", "hresult", "message"]),
        ("connectionError", ["ticket", "hresult", "message"]), ("getLastError", ["ticket"]),
        ("closeConnection", ["ticket"]), ("getInteractiveURL", ["wcTicket", "sessionID"]),
        ("interactiveDone", ["wcTicket"]), ("interactiveRejected", ["wcTicket", "reason"]),
    ]:
        reply = client.call(operation, *[(n, None) for n in names])
        assert reply.status == 200, (operation, reply.body)
        reply.result(operation)


def test_zeep_drives_a_session_from_our_wsdl(live_server, add_connection, enqueue, get_job) -> None:
    zeep = pytest.importorskip("zeep")
    conn = add_connection()
    job = enqueue(conn, CUSTOMER_QUERY)
    client = zeep.Client(live_server.url + "?wsdl")
    service = client.create_service("{http://developer.intuit.com/}QBWebConnectorSvcSoap", live_server.url)
    assert service.serverVersion().startswith("qwc-service")
    assert service.clientVersion("2.3.0.215") in ("", None)
    ticket, status = service.authenticate("acme-sync", "correct horse")
    assert status in ("", None)
    request = service.sendRequestXML(ticket, HCP, "", "US", 13, 0)
    assert "<CustomerQueryRq requestID=" in request
    assert service.receiveResponseXML(ticket, QUERY_ERROR, "", "") == 100
    assert service.closeConnection(ticket).startswith("0 jobs done, 1 failed. Warning:")
    assert get_job(job.id).status_code == 3120


def test_wsdl_matches_intuits_names(live_server) -> None:
    reply = requests.get(live_server.url + "?wsdl", timeout=10)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(reply.content)
    assert root.get("targetNamespace") == INTUIT
    assert root.find("wsdl:service", WSDL_NS).get("name") == "QBWebConnectorSvc"
    assert root.find("wsdl:portType", WSDL_NS).get("name") == "QBWebConnectorSvcSoap"
    binding = root.find("wsdl:binding", WSDL_NS)
    assert binding.get("name") == "QBWebConnectorSvcSoap"
    actions = {op.get("name"): op.find("soap:operation", WSDL_NS).get("soapAction")
               for op in binding.iterfind("wsdl:operation", WSDL_NS)}
    assert actions == {op: INTUIT + op for op in OPERATIONS}
    assert root.find("wsdl:service/wsdl:port/soap:address", WSDL_NS).get("location") == live_server.url

    schema = root.find("wsdl:types/xs:schema", WSDL_NS)
    assert schema.get("elementFormDefault") == "qualified"

    def fields(type_name: str) -> dict[str, tuple[str, str]]:
        complex_type = schema.find(f"xs:complexType[@name='{type_name}']", WSDL_NS)
        return {e.get("name"): (e.get("type"), e.get("minOccurs", "1"))
                for e in complex_type.iterfind(".//xs:element", WSDL_NS)}

    assert fields("serverVersion") == {}
    assert fields("sendRequestXML") == {
        "ticket": ("xs:string", "0"), "strHCPResponse": ("xs:string", "0"),
        "strCompanyFileName": ("xs:string", "0"), "qbXMLCountry": ("xs:string", "0"),
        "qbXMLMajorVers": ("xs:int", "1"), "qbXMLMinorVers": ("xs:int", "1")}
    assert fields("receiveResponseXMLResponse") == {"receiveResponseXMLResult": ("xs:int", "1")}
    assert fields("authenticateResponse") == {"authenticateResult": ("tns:ArrayOfString", "0")}
    array = schema.find("xs:complexType[@name='ArrayOfString']//xs:element", WSDL_NS)
    assert (array.get("name"), array.get("maxOccurs"), array.get("nillable")) == ("string", "unbounded", "true")
    for op in OPERATIONS:
        assert schema.find(f"xs:element[@name='{op}']", WSDL_NS) is not None
        assert schema.find(f"xs:element[@name='{op}Response']", WSDL_NS) is not None


def test_plain_get_and_support_answer_200(live_server) -> None:
    assert requests.get(live_server.url, timeout=10).status_code == 200
    base = live_server.url.rsplit("/qbwc", 1)[0]
    assert requests.get(base + "/support", timeout=10).status_code == 200
    assert requests.get(base + "/healthz", timeout=10).text == "ok\n"
    assert requests.get(base + "/nothing-here", timeout=10).status_code == 404


def assert_soap_fault(status: int, body: bytes, code_prefix: str) -> str:
    assert status in (400, 405, 413, 500)
    root = etree.fromstring(body)
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None, body
    assert fault.findtext("faultcode").split(":", 1)[1].startswith(code_prefix), body
    assert b"Traceback" not in body and b"File \"" not in body
    return fault.findtext("faultstring")


@pytest.mark.parametrize(
    "body,code",
    [
        (b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
         b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
         b'<getLastError xmlns="http://developer.intuit.com/"><ticket>&b;</ticket></getLastError>'
         b"</soap:Body></soap:Envelope>", "Client"),
        (b'<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd"><x/>', "Client"),
        (b"this is not xml", "Client"),
        (b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body>", "Client"),
        (envelope("noSuchOperation", ("ticket", "x")), "Client"),
        (b"<a>no envelope</a>", "Client"),
        (envelope("sendRequestXML", ("ticket", "t"), ("qbXMLMajorVers", "thirteen"), ("qbXMLMinorVers", 0)),
         "Client"),
        ("<?xml version='1.0' encoding='latin-1'?><x>\u00e9</x>".encode("utf-16"), "Client"),
    ],
)
def test_hostile_or_broken_bodies_get_soap_faults(live_server, body: bytes, code: str) -> None:
    client = WireClient(live_server.url)
    reply = client.post(body, "getLastError")
    assert_soap_fault(reply.status, reply.body, code)
    # the connection and the server survive
    assert client.call("serverVersion").status == 200


def test_empty_body_and_wrong_method(live_server) -> None:
    # (No Expect header: waitress would wait for a body that a zero length never sends.)
    reply = requests.post(live_server.url, data=b"", timeout=10,
                          headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{INTUIT}getLastError"'})
    assert "empty" in assert_soap_fault(reply.status_code, reply.content, "Client")
    put = requests.put(live_server.url, data=b"x", timeout=10)
    assert_soap_fault(put.status_code, put.content, "Client")


def test_body_cap_is_enforced_before_reading(settings: Settings, make_live_server) -> None:
    from dataclasses import replace

    server = make_live_server(replace(settings, max_body_bytes=10_000))
    big = envelope("receiveResponseXML", ("ticket", "t"), ("response", "x" * 20_000))
    reply = requests.post(server.url, data=big, timeout=10, headers={"Content-Type": "text/xml; charset=utf-8"})
    # waitress refuses from the Content-Length header alone, before reading the body
    assert reply.status_code == 413
    assert "<html" not in reply.text.lower() and "Traceback" not in reply.text


def test_body_cap_in_the_wsgi_layer_is_a_soap_fault(settings: Settings, fast_passwords) -> None:
    """Behind another WSGI server (gunicorn) our own check answers with a SOAP fault."""
    from dataclasses import replace

    from werkzeug.test import Client

    from qwc_service import server

    service = server.build(replace(settings, max_body_bytes=10_000), migrate=False, passwords=fast_passwords)
    big = envelope("receiveResponseXML", ("ticket", "t"), ("response", "x" * 20_000))
    reply = Client(service.app).post("/qbwc", data=big, content_type="text/xml; charset=utf-8")
    assert "QWC_MAX_BODY_BYTES" in assert_soap_fault(reply.status_code, reply.data, "Client")
    service.engine.dispose()


def test_default_cap_admits_a_100_mb_response(settings: Settings) -> None:
    # 100 MB of qbXML grows when SOAP escapes its markup; measure a realistic document.
    invoice = sample("qbxml_InvoiceQueryRs_iterator_response_consolibyte.xml")
    escaped = len(envelope("receiveResponseXML", ("response", invoice)))
    growth = escaped / len(invoice.encode("utf-8"))
    assert Settings().max_body_bytes >= 100 * 1024 * 1024 * growth


def test_chunked_body_without_length_is_read(live_server) -> None:
    parts = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = envelope("serverVersion")
    conn.request("POST", parts.path, body=iter([body[:50], body[50:]]),
                 headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{INTUIT}serverVersion"',
                          "Transfer-Encoding": "chunked"}, encode_chunked=True)
    reply = conn.getresponse()
    assert reply.status == 200 and b"qwc-service" in reply.read()


def test_request_bodies_are_not_logged(live_server, add_connection, enqueue, caplog) -> None:
    import logging

    enqueue(add_connection(), CUSTOMER_QUERY)
    caplog.set_level(logging.DEBUG)
    client = WireClient(live_server.url)
    reply = client.call("authenticate", ("strUserName", "acme-sync"), ("strPassword", "correct horse"))
    ticket = reply.strings()[0]
    send_request(client, ticket, HCP)
    receive(client, ticket, ADD_OK.replace("mrjoecustomer", "SECRET-PAYLOAD"))
    client.post(b"<broken SECRET-PAYLOAD", "getLastError")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SECRET-PAYLOAD" not in logged and "correct horse" not in logged and ticket not in logged
    assert "receiveResponseXML" in logged  # logging works; it just leaves payloads out
