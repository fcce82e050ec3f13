"""The Web Connector's SOAP envelopes: written like QBWC writes them, read like .NET reads them.

QBWC is a .NET ``SoapHttpClientProtocol``: it writes one-line, document/literal
envelopes whose wrapper element declares ``xmlns="http://developer.intuit.com/"``
and whose parameters are always present (empty ones as empty elements). It
reads answers by element name and namespace only, ignoring prefixes.

Serialization note: lxml writes an XML declaration only followed by a line
break (and in single quotes). QBWC's body is one line starting with
``<?xml version="1.0" encoding="utf-8"?>``, so the envelope element is
serialized by lxml and the fixed declaration bytes are put in front of it;
nothing variable is ever written outside lxml. lxml writes empty elements as
``<hresult/>`` where .NET writes ``<hresult />``: the same XML, and no API
of lxml writes the space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from .documents import localname, parser

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
QBWC_NS = "http://developer.intuit.com/"

#: The declaration .NET writes, byte for byte, directly followed by the envelope.
SOAP_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'

#: The answer type of each operation, as the WSDL declares it.
ARRAY_RESULTS = frozenset({"authenticate"})
INT_RESULTS = frozenset({"receiveResponseXML"})

Answer = str | int | tuple[str, ...]


def soap_action(operation: str) -> str:
    """The SOAPAction header value, quotes included, as .NET sends it."""
    return f'"{QBWC_NS}{operation}"'


def request_envelope(operation: str, parameters: Sequence[tuple[str, str]]) -> bytes:
    """The request body QBWC sends for ``operation`` with ``(name, value)`` parameters.

    An empty ``parameters`` gives a wrapper with no children, as for
    serverVersion; an empty value gives an empty element.
    """
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "xsi": XSI_NS, "xsd": XSD_NS})
    body = etree.SubElement(envelope, f"{{{SOAP_NS}}}Body")
    wrapper = etree.SubElement(body, f"{{{QBWC_NS}}}{operation}", nsmap={None: QBWC_NS})
    for name, value in parameters:
        etree.SubElement(wrapper, f"{{{QBWC_NS}}}{name}").text = value or None
    return SOAP_DECLARATION + etree.tostring(envelope, encoding="utf-8")


@dataclass(frozen=True)
class SoapFault:
    """A ``soap:Fault`` answer: the server raised instead of answering."""

    code: str
    message: str


class SoapReplyError(Exception):
    """The answer is not something .NET could deserialize for this operation."""


def read_answer(operation: str, body: bytes) -> Answer | SoapFault:
    """Deserialize the answer to ``operation`` the way QBWC's proxy class does.

    Prefixes are ignored; the elements must be ``<{operation}Response>`` and
    ``<{operation}Result>`` in QBWC's namespace. ``authenticate`` gives the
    ``<string>`` children in order (empty ones as ""), ``receiveResponseXML``
    an ``xs:int``, everything else a string (an empty element is "").
    """
    try:
        root = etree.fromstring(body, parser())
    except etree.XMLSyntaxError as exc:
        raise SoapReplyError(f"Response is not well-formed XML ({exc})") from None
    if localname(root) != "Envelope" or etree.QName(root).namespace != SOAP_NS:
        raise SoapReplyError(f"the answer is <{localname(root)}>, not a SOAP 1.1 envelope")
    payload = next(iter(root.iterfind(f"{{{SOAP_NS}}}Body/*")), None)
    if payload is None:
        raise SoapReplyError("the SOAP body is empty")
    if etree.QName(payload).namespace == SOAP_NS and localname(payload) == "Fault":
        return SoapFault(code=payload.findtext("faultcode") or "", message=payload.findtext("faultstring") or "")
    expected = etree.QName(QBWC_NS, f"{operation}Response").text
    if payload.tag != expected:
        raise SoapReplyError(f"expected <{operation}Response> in {QBWC_NS}, got {payload.tag}")
    result = payload.find(f"{{{QBWC_NS}}}{operation}Result")
    if result is None:
        raise SoapReplyError(f"<{operation}Response> has no <{operation}Result>")
    if operation in ARRAY_RESULTS:
        return tuple(s.text or "" for s in result.iterfind(f"{{{QBWC_NS}}}string"))
    text = result.text or ""
    if operation in INT_RESULTS:
        try:
            number = int(text.strip())
        except ValueError:
            raise SoapReplyError(f"<{operation}Result> is {text!r}, not an xs:int") from None
        if not -(2**31) <= number < 2**31:
            raise SoapReplyError(f"<{operation}Result> {number} does not fit an xs:int")
        return number
    return text
