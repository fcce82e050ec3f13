"""The Web Connector's calls, read and answered without Spyne when they have QBWC's shape.

QBWC is one compiled .NET client: every call it makes is the same small
envelope (QBWC-PROTOCOL.md §1). Spyne maps such an envelope onto Python
objects and back through several layers of generic machinery, which cost more
CPU than the conversation itself: measured 0.5 ms per call, 2–4× the whole
core's work on an idle poll. For envelopes with exactly QBWC's shape this
module reads the parameters with lxml and writes the answer that Spyne would
write, byte for byte; ``tests/test_envelopes.py`` holds the two side by side
on every operation, on hostile values and on odd but valid SOAP.

Anything else (another shape, a DTD, a value Spyne would refuse, malformed
XML) is not decided here: ``read_call`` returns None and the WSGI layer hands
the untouched body to Spyne, which answers it or faults exactly as before.
The mapping from operation to conversation method, ``perform``, is shared by
both paths, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from lxml import etree

if TYPE_CHECKING:
    from .conversation import Conversation

NAMESPACE = "http://developer.intuit.com/"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_ENVELOPE = f"{{{SOAP_ENV}}}Envelope"
_HEADER = f"{{{SOAP_ENV}}}Header"
_BODY = f"{{{SOAP_ENV}}}Body"
#: Spyne's prefixes; QBWC ignores them, but byte-identical answers keep the two paths interchangeable.
_OUT_NSMAP = {"soap11env": SOAP_ENV, "tns": NAMESPACE}
_FAULT_NSMAP = {"soap11env": SOAP_ENV}

STRING, INT = "string", "int"
INTERNAL_ERROR = "Internal error; the server log has the details."

#: Each operation's parameters in WSDL order, with their xs types.
OPERATIONS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "serverVersion": (),
    "clientVersion": (("strVersion", STRING),),
    "authenticate": (("strUserName", STRING), ("strPassword", STRING)),
    "sendRequestXML": (("ticket", STRING), ("strHCPResponse", STRING), ("strCompanyFileName", STRING),
                       ("qbXMLCountry", STRING), ("qbXMLMajorVers", INT), ("qbXMLMinorVers", INT)),
    "receiveResponseXML": (("ticket", STRING), ("response", STRING), ("hresult", STRING), ("message", STRING)),
    "connectionError": (("ticket", STRING), ("hresult", STRING), ("message", STRING)),
    "getLastError": (("ticket", STRING),),
    "closeConnection": (("ticket", STRING),),
    "getInteractiveURL": (("wcTicket", STRING), ("sessionID", STRING)),
    "interactiveDone": (("wcTicket", STRING),),
    "interactiveRejected": (("wcTicket", STRING), ("reason", STRING)),
}

#: The conversation's answer to each operation, from the call's parameters (strings
#: already defaulted to "", as QBWC means an empty and a missing element the same).
_PERFORM: Mapping[str, Callable[["Conversation", dict[str, Any], str], Any]] = {
    "serverVersion": lambda c, p, a: c.server_version(),
    "clientVersion": lambda c, p, a: c.client_version(p["strVersion"]),
    "authenticate": lambda c, p, a: c.authenticate(p["strUserName"], p["strPassword"], a).as_array(),
    "sendRequestXML": lambda c, p, a: c.send_request_xml(
        p["ticket"], p["strHCPResponse"], p["strCompanyFileName"], p["qbXMLCountry"], p["qbXMLMajorVers"],
        p["qbXMLMinorVers"]),
    "receiveResponseXML": lambda c, p, a: c.receive_response_xml(p["ticket"], p["response"], p["hresult"],
                                                                 p["message"]),
    "connectionError": lambda c, p, a: c.connection_error(p["ticket"], p["hresult"], p["message"]),
    "getLastError": lambda c, p, a: c.get_last_error(p["ticket"]),
    "closeConnection": lambda c, p, a: c.close_connection(p["ticket"]),
    "getInteractiveURL": lambda c, p, a: c.get_interactive_url(p["wcTicket"], p["sessionID"]),
    "interactiveDone": lambda c, p, a: c.interactive_done(p["wcTicket"]),
    "interactiveRejected": lambda c, p, a: c.interactive_rejected(p["wcTicket"], p["reason"]),
}

#: Spyne's xs:int: a 32-bit signed integer. Wider or odder spellings go to Spyne.
_INT_DIGITS = 10


@dataclass(frozen=True)
class Call:
    """One operation with its parameters, as plain Python values."""

    operation: str
    params: dict[str, Any]


def perform(conversation: "Conversation", call: Call, client_address: str) -> Any:
    """The conversation's answer to ``call``: str, int, or the authenticate array."""
    params = {name: ("" if value is None else value) for name, value in call.params.items()}
    return _PERFORM[call.operation](conversation, params, client_address)


def new_parser() -> etree.XMLParser:
    """The request parser: no DTDs or entities, no network, 100 MB text nodes allowed.

    One per call: a feed parser holds the state of the document it is reading.
    """
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True,
                           remove_comments=True, remove_pis=True, strip_cdata=True)


def read_call(root: etree._Element) -> Call | None:
    """The call in a parsed envelope, or None when anything about it is not QBWC's plain shape."""
    docinfo = root.getroottree().docinfo
    if root.tag != _ENVELOPE or docinfo.internalDTD is not None or docinfo.doctype:
        return None
    if _has_text(root.text) or root.attrib:
        return None
    body = None
    for child in root:
        if _has_text(child.tail):
            return None
        if child.tag == _HEADER and body is None and len(child) == 0 and not _has_text(child.text):
            continue
        if child.tag != _BODY or body is not None:
            return None
        body = child
    if body is None or len(body) != 1 or _has_text(body.text) or body.attrib:
        return None
    wrapper = body[0]
    if _has_text(wrapper.tail) or wrapper.attrib or _has_text(wrapper.text):
        return None
    namespace, _, operation = wrapper.tag.rpartition("}")
    signature = OPERATIONS.get(operation)
    if signature is None or namespace != "{" + NAMESPACE:
        return None
    kinds = dict(signature)
    params: dict[str, Any] = {name: None for name, _ in signature}
    seen = set()
    for element in wrapper:
        name = element.tag.rpartition("}")[2] if element.tag.startswith("{" + NAMESPACE + "}") else None
        if name not in kinds or name in seen or element.attrib or len(element) or _has_text(element.tail):
            return None
        seen.add(name)
        text = element.text
        if kinds[name] == INT:
            if not text or not text.isascii() or not text.isdigit() or len(text) >= _INT_DIGITS:
                return None
            params[name] = int(text)
        else:
            params[name] = text
    if any(kind == INT and params[name] is None for name, kind in signature):
        return None
    return Call(operation, params)


def answer(operation: str, result: Any) -> bytes:
    """The response envelope for ``result``, exactly as Spyne writes it.

    Raises ValueError when the result cannot be written as XML (a control
    character, say); the caller answers that with a fault, as Spyne would.
    """
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=_OUT_NSMAP)
    body = etree.SubElement(envelope, _BODY)
    response = etree.SubElement(body, f"{{{NAMESPACE}}}{operation}Response")
    node = etree.SubElement(response, f"{{{NAMESPACE}}}{operation}Result")
    if isinstance(result, list):
        for item in result:
            etree.SubElement(node, f"{{{NAMESPACE}}}string").text = item
    elif isinstance(result, bool) or not isinstance(result, (str, int)):
        raise ValueError(f"{operation} answered {type(result).__name__}, not str or int")
    else:
        node.text = str(result)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def fault(code: str, message: str) -> bytes:
    """A SOAP fault shaped as Spyne writes one (faultactor included)."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=_FAULT_NSMAP)
    body = etree.SubElement(envelope, _BODY)
    node = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(node, "faultcode").text = f"soap11env:{code}"
    etree.SubElement(node, "faultstring").text = message
    etree.SubElement(node, "faultactor").text = ""
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _has_text(text: str | None) -> bool:
    return bool(text) and not text.isspace()  # type: ignore[union-attr]

