"""The floor: the same QBWC envelopes parsed and answered by a bare lxml + WSGI app.

No Spyne, no routing, no database, no password hashing: each POST is parsed
with the same hardened lxml parser settings the service uses, the operation
and its parameters are read, and a fixed answer is written with lxml. It runs
under waitress with the same settings as ``qwc-service serve``, so the
difference between the two is what the framework, the conversation core and
the database cost.

Answers: ``authenticate`` says ``none`` to user names starting with ``idle``
and opens the default company file for anyone else; ``sendRequestXML``
always hands out the same rendered qbXML request; ``receiveResponseXML``
says 50 (the load driver stops after the pairs it was told to do).

    python -m bench.floor --port 8099 --threads 8
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any, Callable, Iterable

from lxml import etree

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
QBWC_NS = "http://developer.intuit.com/"
#: What the service would hand out for a CustomerQueryRq job (see qbxml.render_request).
FIXED_REQUEST = ('<?xml version=\'1.0\' encoding=\'utf-8\'?>\n<?qbxml version="13.0"?>\n<QBXML><QBXMLMsgsRq '
                 'onError="stopOnError"><CustomerQueryRq requestID="1.0"><MaxReturned>1</MaxReturned>'
                 '</CustomerQueryRq></QBXMLMsgsRq></QBXML>')


def _parser() -> etree.XMLParser:
    # The service's HardenedSoap11 settings.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True,
                           remove_comments=True, remove_pis=True, strip_cdata=True)


def answer(operation: str, params: dict[str, str]) -> str | list[str]:
    if operation == "serverVersion":
        return "floor 1.0"
    if operation == "clientVersion":
        return ""
    if operation == "authenticate":
        ticket = secrets.token_urlsafe(24)
        return [ticket, "none" if params.get("strUserName", "").startswith("idle") else ""]
    if operation == "sendRequestXML":
        return FIXED_REQUEST
    if operation == "receiveResponseXML":
        return "50"
    if operation == "getLastError":
        return "No error."
    if operation == "closeConnection":
        return "OK"
    return ""


def envelope(operation: str, result: str | list[str]) -> bytes:
    root = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "tns": QBWC_NS})
    body = etree.SubElement(root, f"{{{SOAP_NS}}}Body")
    response = etree.SubElement(body, f"{{{QBWC_NS}}}{operation}Response")
    node = etree.SubElement(response, f"{{{QBWC_NS}}}{operation}Result")
    if isinstance(result, list):
        for item in result:
            etree.SubElement(node, f"{{{QBWC_NS}}}string").text = item
    else:
        node.text = result
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") != "POST":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    root = etree.fromstring(body, _parser())
    call = root.find(f"{{{SOAP_NS}}}Body")[0]  # type: ignore[index]
    operation = etree.QName(call).localname
    params = {etree.QName(child).localname: child.text or "" for child in call}
    reply = envelope(operation, answer(operation, params))
    start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(reply)))])
    return [reply]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    from waitress.server import create_server

    # The waitress options of qwc_service.server.make_server.
    server = create_server(app, host="127.0.0.1", port=args.port, threads=args.threads,
                           max_request_body_size=384 * 1024 * 1024, channel_timeout=600, ident="floor",
                           clear_untrusted_proxy_headers=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
