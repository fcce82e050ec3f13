"""qbXML documents: validating requests, reading responses and first-call facts.

Everything here goes through lxml with one hardened parser configuration: no
network, no entity expansion, DTDs refused, and ``huge_tree`` on because a
QuickBooks answer can legitimately be 100 MB. Nothing here touches the
database: it turns text into facts and back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lxml import etree

from .exceptions import InvalidInput

#: The three values QuickBooks accepts for QBXMLMsgsRq/@onError.
ON_ERROR_VALUES = ("stopOnError", "continueOnError", "rollbackOnError")
DEFAULT_ON_ERROR = "stopOnError"


class QbxmlError(InvalidInput):
    """A qbXML document is unusable; the message says what and where."""


def _parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers are not safe to share across threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,
        remove_comments=True,
        encoding="utf-8",
    )


def _refuse_dtd(tree: etree._ElementTree, what: str) -> None:
    docinfo = tree.docinfo
    if docinfo.internalDTD is not None or docinfo.doctype or docinfo.system_url:
        raise QbxmlError(f"{what} contains a DTD or entity declaration, which is not allowed")


def parse_document(text: str, what: str = "document") -> etree._Element:
    """Parse untrusted XML text safely, refusing DTDs; raise QbxmlError with the position."""
    try:
        root = etree.fromstring(text.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        raise QbxmlError(f"{what} is not well-formed XML: {_position(exc)}") from None
    _refuse_dtd(root.getroottree(), what)
    return root


def _position(exc: etree.XMLSyntaxError) -> str:
    line, column = exc.position if exc.position else (0, 0)
    message = (exc.msg or "syntax error").split(", line ")[0]
    return f"{message} (line {line}, column {column})"


# --- requests --------------------------------------------------------------


@dataclass(frozen=True)
class PreparedRequest:
    """A validated job request, normalised to one QBXML document."""

    xml: str
    request_types: tuple[str, ...]
    on_error: str
    #: From ``<?qbxml version="…"?>`` when the caller gave one.
    qbxml_version: str | None

    @property
    def is_write(self) -> bool:
        return any(is_write_request(t) for t in self.request_types)


def is_write_request(request_type: str) -> bool:
    """Whether a request type may change the company file.

    Only queries are safe to resend; anything else (Add, Mod, Del, Void,
    DataExt…, even types we do not know) is treated as a write, because wrongly
    calling a write read-only could post it twice.
    """
    return not request_type.endswith("Query")


def prepare_request(text: str) -> PreparedRequest:
    """Validate a job: a full QBXML document, or one or more ``…Rq`` elements.

    Fragments are wrapped in ``QBXML/QBXMLMsgsRq onError="stopOnError"`` so
    that an invoice is never attempted after its customer failed.
    """
    if not text or not text.strip():
        raise QbxmlError("the request is empty")
    stripped = text.lstrip()
    if stripped.startswith(("<?", "<!")):
        root = parse_document(stripped, "the request")
    else:
        elements = _parse_fragments(stripped)
        if len(elements) == 1 and elements[0].tag == "QBXML":
            root = elements[0]
        else:
            root = _wrap_elements(elements)
    if root.tag != "QBXML":
        raise QbxmlError(f"the root element is <{root.tag}>; expected <QBXML> or …Rq elements")
    version = _qbxml_version(root)
    messages = [child for child in root if isinstance(child.tag, str)]
    if len(messages) != 1 or messages[0].tag != "QBXMLMsgsRq":
        found = ", ".join(f"<{m.tag}>" for m in messages) or "nothing"
        raise QbxmlError(f"<QBXML> must contain exactly one <QBXMLMsgsRq>; found {found}")
    msgs = messages[0]
    on_error = msgs.get("onError")
    if on_error is None:
        raise QbxmlError(
            f"<QBXMLMsgsRq> (line {msgs.sourceline}) has no onError attribute; "
            f"use one of {', '.join(ON_ERROR_VALUES)}"
        )
    if on_error not in ON_ERROR_VALUES:
        raise QbxmlError(
            f"<QBXMLMsgsRq> (line {msgs.sourceline}) has onError={on_error!r}; "
            f"use one of {', '.join(ON_ERROR_VALUES)}"
        )
    types: list[str] = []
    for child in msgs:
        if not isinstance(child.tag, str):
            continue
        if not child.tag.endswith("Rq") or len(child.tag) <= 2:
            raise QbxmlError(
                f"<{child.tag}> (line {child.sourceline}) is not a request: "
                "request element names end in 'Rq'"
            )
        types.append(child.tag[:-2])
    if not types:
        raise QbxmlError("<QBXMLMsgsRq> contains no requests")
    xml = etree.tostring(root, encoding="unicode")
    return PreparedRequest(xml=xml, request_types=tuple(types), on_error=on_error, qbxml_version=version)


def _parse_fragments(text: str) -> list[etree._Element]:
    """Parse one element or a sequence of sibling elements by feeding them inside a wrapper."""
    parser = _parser()
    opening = b"<QBXMLMsgsRq>"
    try:
        parser.feed(opening)
        parser.feed(text.encode("utf-8"))
        parser.feed(b"</QBXMLMsgsRq>")
        wrapper = parser.close()
    except etree.XMLSyntaxError as exc:
        # Report positions in the caller's text, and name the wrapper for what it is.
        line, column = exc.position if exc.position else (0, 0)
        if line == 1:
            column = max(1, column - len(opening))
        message = (exc.msg or "syntax error").split(", line ")[0]
        unclosed = message.removeprefix("Opening and ending tag mismatch: ").partition(" line ")
        if message.endswith(" and QBXMLMsgsRq") and unclosed[1]:
            opened_on = unclosed[2].removesuffix(" and QBXMLMsgsRq")
            raise QbxmlError(f"the request is not well-formed XML: <{unclosed[0]}> (line {opened_on}) "
                             "is never closed") from None
        raise QbxmlError(f"the request is not well-formed XML: {message} (line {line}, column {column})") from None
    _refuse_dtd(wrapper.getroottree(), "the request")
    stray = (wrapper.text or "").strip() or any((c.tail or "").strip() for c in wrapper)
    if stray:
        raise QbxmlError("the request has text outside its elements")
    return [c for c in wrapper if isinstance(c.tag, str)]


def _wrap_elements(elements: list[etree._Element]) -> etree._Element:
    root = etree.Element("QBXML")
    msgs = etree.SubElement(root, "QBXMLMsgsRq", onError=DEFAULT_ON_ERROR)
    for element in elements:
        element.tail = None
        msgs.append(element)
    return root


def _qbxml_version(root: etree._Element) -> str | None:
    node = root.getprevious()
    while node is not None:
        if isinstance(node, etree._ProcessingInstruction) and node.target == "qbxml":
            version = node.get("version")
            if version is not None:
                _version_tuple(version)  # validates
            return version
        node = node.getprevious()
    return None


def _version_tuple(version: str) -> tuple[int, int]:
    try:
        major, _, minor = version.partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        raise QbxmlError(f'<?qbxml version="{version}"?> is not a version like "13.0"') from None


def render_request(xml: str, qbxml_version: str, job_id: int, iterator_id: str | None = None) -> str:
    """The document as sent to QuickBooks.

    The XML declaration and ``<?qbxml version?>`` come first; every request
    gets ``requestID="<job>.<n>"`` (overwriting the caller's), so each
    ``…Rs`` in the answer can be checked against the job it belongs to; a
    paged query being continued asks for the next page of its iterator.
    """
    root = parse_document(xml, "the stored request")
    for index, request in enumerate(root.iterfind("QBXMLMsgsRq/*")):
        request.set("requestID", f"{job_id}.{index}")
        if iterator_id is not None:
            request.set("iterator", "Continue")
            request.set("iteratorID", iterator_id)
    root.addprevious(etree.ProcessingInstruction("qbxml", f'version="{qbxml_version}"'))
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="utf-8").decode("utf-8")


def start_iterator(xml: str, page_size: int) -> str:
    """Make a single query paged: ``iterator="Start"`` and ``MaxReturned`` = page size."""
    root = parse_document(xml, "the request")
    (query,) = root.iterfind("QBXMLMsgsRq/*")
    query.set("iterator", "Start")
    query.attrib.pop("iteratorID", None)
    limit = query.find("MaxReturned")
    if limit is None:
        # MaxReturned opens the query's filter group, so it goes first.
        limit = etree.Element("MaxReturned")
        query.insert(0, limit)
    limit.text = str(page_size)
    return etree.tostring(root, encoding="unicode")


def merge_pages(pages: list[str]) -> str:
    """One answer from the pages of an iterated query: every record, in page order."""
    first = parse_document(pages[0], "a page of the answer")
    target = first.find("QBXMLMsgsRs/*")
    if target is None:
        raise QbxmlError("a page of the answer has no …Rs element")
    for page in pages[1:]:
        source = parse_document(page, "a page of the answer").find("QBXMLMsgsRs/*")
        if source is not None:
            target.extend(list(source))
            for name in ("iteratorRemainingCount", "iteratorID"):
                if source.get(name) is not None:
                    target.set(name, source.get(name, ""))
    return etree.tostring(first.getroottree(), xml_declaration=True, encoding="utf-8").decode("utf-8")


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def unrepresentable_text(xml: str) -> list[str]:
    """Warnings for text QuickBooks cannot store (outside ISO-8859-1), naming where it is.

    ``xml`` is a request ``prepare_request`` accepted; it is not validated again.
    """
    if "&#" not in xml and _latin1(xml):
        # No such character, literal or referenced: skip a second parse of every job queued.
        return []
    root = parse_document(xml, "the request")
    warnings = []
    for element in root.iter():
        for where, text in (("text", element.text), *(("attribute " + k, v) for k, v in element.attrib.items())):
            if not text:
                continue
            bad = sorted({c for c in text if ord(c) > 0xFF})
            if bad:
                shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad[:5])
                warnings.append(f"<{element.tag}> {where} (line {element.sourceline}) has characters outside "
                                f"ISO-8859-1 that QuickBooks may reject: {shown}")
    return warnings


# --- responses -------------------------------------------------------------


@dataclass(frozen=True)
class ResponseStatus:
    """The status attributes of one ``…Rs`` element."""

    request_type: str
    request_id: str | None
    code: int
    severity: str
    message: str
    iterator_id: str | None = None
    iterator_remaining: int | None = None

    @property
    def failed(self) -> bool:
        return self.severity == "Error"


class _StatusCollector:
    """An lxml parser target that keeps only what ``read_statuses`` needs.

    A target receives start/end events from lxml's C parser without a tree
    being built, and this one ignores text entirely, so a 100 MB answer costs
    one pass and no memory beyond its statuses.
    """

    def __init__(self) -> None:
        self.statuses: list[ResponseStatus] = []
        self.root_tag: str | None = None
        self.saw_doctype = False

    def doctype(self, name: str, public_id: str | None, system_url: str | None) -> None:
        self.saw_doctype = True

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        # No end() and no depth: an element is a response status when it is
        # named ...Rs and carries statusCode, which in qbXML only they do.
        if self.root_tag is None:
            self.root_tag = tag
        elif "statusCode" in attrib and tag.endswith("Rs"):
            self.statuses.append(_status_of(tag, attrib))

    def close(self) -> list[ResponseStatus]:
        return self.statuses


#: Characters of a response handed to a parser at a time.
FEED_CHARS = 1 << 20


def read_statuses(text: str) -> list[ResponseStatus]:
    """Read every ``…Rs`` status from a response without building the tree.

    Responses can be 100 MB: the statuses are the attributes of the
    third-level elements, and nothing else is kept.
    """
    collector = _StatusCollector()
    parser = etree.XMLParser(target=collector, resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=True, remove_comments=True, encoding="utf-8")
    try:
        # Fed in slices, so that no second full copy of a 100 MB answer is made.
        for start in range(0, len(text), FEED_CHARS):
            parser.feed(text[start:start + FEED_CHARS].encode("utf-8", "surrogatepass"))
        statuses = parser.close()
    except etree.XMLSyntaxError as exc:
        raise QbxmlError(f"the response is not well-formed XML: {_position(exc)}") from None
    if collector.saw_doctype:
        raise QbxmlError("the response contains a DTD or entity declaration, which is not allowed")
    if collector.root_tag != "QBXML":
        raise QbxmlError(f"the response root is <{collector.root_tag}>, not <QBXML>")
    return list(statuses)


def _status_of(tag: str, attrib: dict[str, str]) -> ResponseStatus:
    raw_code = attrib.get("statusCode", "")
    try:
        code = int(raw_code)
    except ValueError:
        raise QbxmlError(f"<{tag}> has statusCode={raw_code!r}, not a number") from None
    remaining = attrib.get("iteratorRemainingCount")
    return ResponseStatus(
        request_type=tag[:-2],
        request_id=attrib.get("requestID"),
        code=code,
        severity=attrib.get("statusSeverity", "Error" if code else "Info"),
        message=attrib.get("statusMessage", ""),
        iterator_id=attrib.get("iteratorID"),
        iterator_remaining=int(remaining) if remaining and remaining.isdigit() else None,
    )


# --- first-call facts ------------------------------------------------------


@dataclass(frozen=True)
class HostFacts:
    """What QuickBooks told us about itself on a session's first sendRequestXML.

    These facts decide which qbXML version we may send and, later, whose
    permissions applied when something was refused.
    """

    product_name: str = ""
    major_version: str = ""
    minor_version: str = ""
    country: str = ""
    supported_qbxml_versions: tuple[str, ...] = field(default_factory=tuple)
    is_automatic_login: bool | None = None
    file_mode: str = ""
    company_name: str = ""
    #: Our FileID as stored in the company file under the connection's OwnerID.
    file_id: str = ""
    automatic_login_user_name: str = ""
    is_automatic_login_allowed: bool | None = None
    is_personal_data_access_allowed: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["supported_qbxml_versions"] = list(self.supported_qbxml_versions)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "HostFacts":
        if not data:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["supported_qbxml_versions"] = tuple(known.get("supported_qbxml_versions") or ())
        return cls(**known)

    @property
    def highest_qbxml_version(self) -> str | None:
        versions = [v for v in self.supported_qbxml_versions if _is_version(v)]
        return max(versions, key=_version_tuple) if versions else None


def _is_version(text: str) -> bool:
    try:
        _version_tuple(text)
    except QbxmlError:
        return False
    return True


def _bool(text: str | None) -> bool | None:
    if text is None:
        return None
    return text.strip().lower() == "true"


def read_host_facts(text: str, owner_id: str | None = None) -> HostFacts:
    """Read the HostQuery/CompanyQuery/PreferencesQuery answers of strHCPResponse."""
    root = parse_document(text, "strHCPResponse")
    host = root.find("QBXMLMsgsRs/HostQueryRs/HostRet")
    company = root.find("QBXMLMsgsRs/CompanyQueryRs/CompanyRet")
    rights = root.find("QBXMLMsgsRs/PreferencesQueryRs/PreferencesRet/CurrentAppAccessRights")

    def text_of(parent: etree._Element | None, path: str) -> str:
        return (parent.findtext(path) or "").strip() if parent is not None else ""

    file_id = ""
    if company is not None:
        for ext in company.iterfind("DataExtRet"):
            owner = (ext.findtext("OwnerID") or "").strip()
            if ext.findtext("DataExtName") == "FileID" and (
                owner_id is None or owner.lower() == owner_id.lower()
            ):
                file_id = (ext.findtext("DataExtValue") or "").strip()
    return HostFacts(
        product_name=text_of(host, "ProductName"),
        major_version=text_of(host, "MajorVersion"),
        minor_version=text_of(host, "MinorVersion"),
        country=text_of(host, "Country"),
        supported_qbxml_versions=tuple(
            (v.text or "").strip() for v in host.iterfind("SupportedQBXMLVersion")
        )
        if host is not None
        else (),
        is_automatic_login=_bool(host.findtext("IsAutomaticLogin")) if host is not None else None,
        file_mode=text_of(host, "QBFileMode"),
        company_name=text_of(company, "CompanyName"),
        file_id=file_id,
        automatic_login_user_name=text_of(rights, "AutomaticLoginUserName"),
        is_automatic_login_allowed=_bool(rights.findtext("IsAutomaticLoginAllowed")) if rights is not None else None,
        is_personal_data_access_allowed=_bool(rights.findtext("IsPersonalDataAccessAllowed"))
        if rights is not None
        else None,
    )


def choose_version(job_version: str | None, facts: HostFacts, major: int | None, minor: int | None) -> str:
    """The qbXML version to put on a request: the lowest of what the job asks and the host offers."""
    offered = facts.highest_qbxml_version
    if offered is None and major:
        offered = f"{major}.{minor or 0}"
    if offered is None:
        offered = "13.0"
    if job_version is None:
        return offered
    return min(job_version, offered, key=_version_tuple)


def version_exceeds(job_version: str | None, offered: str) -> bool:
    return job_version is not None and _version_tuple(job_version) > _version_tuple(offered)
