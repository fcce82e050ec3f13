"""Raw Web Connector traffic for tests: envelopes exactly as QBWC sends them.

One line, the wrapper carrying a default namespace, empty parameters as empty
elements, a quoted SOAPAction and ``Expect: 100-continue`` over a keep-alive
connection (QBWC-PROTOCOL.md §1).
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
INTUIT = "http://developer.intuit.com/"


def envelope(operation: str, *params: tuple[str, str | int | None]) -> bytes:
    root = etree.Element(
        f"{{{SOAP_ENV}}}Envelope",
        nsmap={"soap": SOAP_ENV, "xsi": "http://www.w3.org/2001/XMLSchema-instance",
               "xsd": "http://www.w3.org/2001/XMLSchema"},
    )
    body = etree.SubElement(root, f"{{{SOAP_ENV}}}Body")
    wrapper = etree.SubElement(body, f"{{{INTUIT}}}{operation}", nsmap={None: INTUIT})
    for name, value in params:
        child = etree.SubElement(wrapper, f"{{{INTUIT}}}{name}")
        if value not in (None, ""):
            child.text = str(value)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes

    @property
    def root(self) -> etree._Element:
        return etree.fromstring(self.body)

    def result(self, operation: str) -> str:
        node = self.root.find(f".//{{{INTUIT}}}{operation}Result")
        assert node is not None, self.body[:500]
        return node.text or ""

    def strings(self) -> list[str]:
        return [s.text or "" for s in self.root.iterfind(f".//{{{INTUIT}}}authenticateResult/{{{INTUIT}}}string")]

    def fault(self) -> tuple[str, str]:
        node = self.root.find(f".//{{{SOAP_ENV}}}Fault")
        assert node is not None, self.body[:500]
        return node.findtext("faultcode") or "", node.findtext("faultstring") or ""


class WireClient:
    """One keep-alive HTTP connection, as QBWC holds for a session."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.path
        self.http = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def post(self, body: bytes, action: str | None, content_type: str = "text/xml; charset=utf-8") -> Reply:
        headers = {"Content-Type": content_type, "Expect": "100-continue", "Connection": "Keep-Alive"}
        if action is not None:
            headers["SOAPAction"] = f'"{INTUIT}{action}"'
        self.http.request("POST", self.path, body=body, headers=headers)
        response = self.http.getresponse()
        return Reply(response.status, response.getheader("Content-Type", ""), response.read())

    def call(self, operation: str, *params: tuple[str, str | int | None]) -> Reply:
        return self.post(envelope(operation, *params), operation)

    def close(self) -> None:
        self.http.close()
