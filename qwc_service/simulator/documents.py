"""qbXML documents for the simulator: parse, build and read them with lxml only.

The fake QuickBooks reads requests written by the server under test and writes
responses that the server must read back, so both directions go through one
hardened parser and one serializer here. Tests use the same builders to write
requests, which keeps every XML byte in the simulator and its tests produced
by lxml rather than by string formatting (escaping bugs in a *test tool* would
hide escaping bugs in the server).

The simulator deliberately shares no code with ``qwc_service.qbxml``: a fake
that reused the server's parser would agree with the server's mistakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

from lxml import etree

#: What QuickBooks writes at the top of every response (see ``samples/``):
#: version only, no encoding. lxml writes declarations only together with an
#: encoding, and a ``str`` that declares an encoding cannot be parsed back by
#: ``lxml.etree.fromstring``, so a server that parses the response string
#: (as it must) would fail on our output where it succeeds on QuickBooks'.
#: The declaration is therefore a fixed constant placed before the
#: lxml-serialized root; no data ever goes into it.
QUICKBOOKS_DECLARATION = '<?xml version="1.0" ?>'

#: A field value for :func:`append_fields`: text, a nested aggregate, or a list
#: of either for a repeated element.
FieldValue = Union[str, "Fields", Sequence[Union[str, "Fields"]]]
Fields = Mapping[str, FieldValue]


class QbxmlSyntaxError(ValueError):
    """The text is not well-formed XML, or carries a DTD (which QuickBooks refuses)."""


def parser() -> etree.XMLParser:
    """A fresh hardened parser (lxml parsers must not be shared between threads).

    ``encoding="utf-8"`` overrides whatever the document declares: the text
    reaches us as a Python ``str`` (QBWC hands QuickBooks a COM string, too),
    so the declared encoding is meaningless and must not make parsing fail.
    Blank text between elements is dropped so that pretty-printed requests
    produce one-line responses like QuickBooks'.
    """
    return etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,
        remove_comments=True,
        remove_blank_text=True,
    )


def parse(text: str) -> etree._Element:
    """Parse XML text into its root element, refusing DTDs and entity tricks."""
    try:
        root = etree.fromstring(text.encode("utf-8"), parser())
    except etree.XMLSyntaxError as exc:
        raise QbxmlSyntaxError(str(exc)) from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise QbxmlSyntaxError("a DTD is not allowed in qbXML")
    return root


def serialize(root: etree._Element) -> str:
    """Serialize a response document the way QuickBooks writes it (one line)."""
    return QUICKBOOKS_DECLARATION + etree.tostring(root, encoding="unicode")


def localname(element: etree._Element) -> str:
    """The tag without any namespace (qbXML has none, SOAP replies may)."""
    return etree.QName(element).localname


def append_fields(parent: etree._Element, fields: Fields) -> etree._Element:
    """Append child elements described by a mapping, in mapping order.

    ``{"Name": "Acme", "BillAddress": {"City": "Springfield"},
    "InvoiceLineAdd": [{...}, {...}]}`` becomes ``<Name>``, a nested
    ``<BillAddress>`` and two ``<InvoiceLineAdd>`` elements. Order matters in
    qbXML (the schema is a sequence), and dicts keep insertion order.
    """
    for tag, value in fields.items():
        values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        for item in values:
            child = etree.SubElement(parent, tag)
            if isinstance(item, str):
                child.text = item
            else:
                append_fields(child, item)
    return parent


def text_element(tag: str, text: str) -> etree._Element:
    """A single element holding text, for inserting at a given position."""
    node = etree.Element(tag)
    node.text = text
    return node


def element(tag: str, fields: Fields | None = None, /, **attributes: str) -> etree._Element:
    """Build one element with attributes and child fields (see :func:`append_fields`)."""
    node = etree.Element(tag, dict(attributes))
    return append_fields(node, fields or {})


def request_document(*requests: etree._Element, on_error: str = "stopOnError", version: str = "13.0") -> str:
    """A complete qbXML request document as the server would send it.

    ``requests`` are ``…Rq`` elements, e.g. from :func:`element`::

        request_document(element("CustomerAddRq", {"CustomerAdd": {"Name": "Acme"}}, requestID="1"))
    """
    if not version.replace(".", "", 1).isdigit():
        raise ValueError(f"not a qbXML version: {version!r}")
    root = etree.Element("QBXML")
    # A processing instruction's content is free text to lxml; the version was
    # checked above to be digits and one dot, so nothing can break out of it.
    root.addprevious(etree.ProcessingInstruction("qbxml", f'version="{version}"'))
    messages = etree.SubElement(root, "QBXMLMsgsRq", onError=on_error)
    for rq in requests:
        messages.append(rq)
    tree = root.getroottree()
    return etree.tostring(tree, encoding="utf-8", xml_declaration=True).decode("utf-8")


@dataclass(frozen=True)
class Response:
    """One ``…Rs`` element of a qbXML response, read back for assertions and reports."""

    #: The element name, e.g. ``CustomerAddRs``.
    type: str
    request_id: str | None
    status_code: int
    status_severity: str
    status_message: str
    iterator_id: str | None
    iterator_remaining_count: int | None
    #: The ``…Ret`` children, in document order.
    records: tuple[etree._Element, ...]

    @property
    def ok(self) -> bool:
        return self.status_severity != "Error"


def read_responses(text: str) -> list[Response]:
    """Every ``…Rs`` of a qbXML response document, in order."""
    root = parse(text)
    responses: list[Response] = []
    for rs in root.iterfind("QBXMLMsgsRs/*"):
        remaining = rs.get("iteratorRemainingCount")
        responses.append(
            Response(
                type=localname(rs),
                request_id=rs.get("requestID"),
                status_code=int(rs.get("statusCode", "0")),
                status_severity=rs.get("statusSeverity", ""),
                status_message=rs.get("statusMessage", ""),
                iterator_id=rs.get("iteratorID"),
                iterator_remaining_count=int(remaining) if remaining is not None else None,
                records=tuple(rs),
            )
        )
    return responses


@dataclass(frozen=True)
class RequestSummary:
    """The shape of a request document, for reports: which requests, which onError."""

    on_error: str
    #: ``(type, requestID)`` per ``…Rq``, e.g. ``("CustomerAddRq", "1")``.
    requests: tuple[tuple[str, str | None], ...]


def summarize_request(text: str) -> RequestSummary:
    """Name the requests in a document without judging them (malformed input raises)."""
    root = parse(text)
    messages = root.find("QBXMLMsgsRq")
    if messages is None:
        return RequestSummary(on_error="", requests=())
    return RequestSummary(
        on_error=messages.get("onError", ""),
        requests=tuple((localname(rq), rq.get("requestID")) for rq in messages),
    )
