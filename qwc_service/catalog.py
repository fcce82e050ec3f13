"""The failure catalog: every QuickBooks / Web Connector code we know, and defaults for the rest.

Three families of codes reach us, in different shapes:

* **qbXML status codes** (``statusCode="3260"`` on a response): small non-negative integers.
* **Request-processor HRESULTs** (``hresult`` of receiveResponseXML / connectionError): 32-bit COM
  codes such as ``0x80040408``. QBWC usually sends them as hex strings, but the same value also
  turns up as ``80040408``, lower case, or as a *signed* decimal (``-2147220472``) because .NET
  formats an ``int``. :func:`parse_code` folds all of these into one :class:`Code`.
* **Web Connector codes** (``QBWC1012``): written by QBWC to its own log and status column; an
  operator copies them from there into ``qwc-service explain``.

The data lives in ``qwc_service/data/catalog.json`` (shipped in the package) so that it can be
reviewed and corrected without touching code. Each entry keeps the reference text verbatim
(``official_message``) with a ``text_status`` saying how official it is, because several rows
of the reference are paraphrases or third-party quotes and must not be presented as Intuit's words.
Codes not listed fall back to the documented *ranges* (Intuit's statusCode ranges, the 0x8004xxxx
request-processor facility, QBWC1xxx), so a lookup never fails for a well-formed code.

The second table here is the request -> permission-area map (``data/op_permission_map.csv``, a
copy of the reference): which QuickBooks Pro/Premier area and Enterprise role area a qbXML
request probably needs, used to tell an Admin what to grant after a 3260. Most of it is inferred
from request names, and :class:`PermissionAdvice` carries that so messages can say "probably".
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from importlib.resources import files
from typing import Any

__all__ = [
    "CatalogEntry",
    "Category",
    "Code",
    "CodeKind",
    "CodeRange",
    "InvalidCode",
    "PermissionAdvice",
    "ProductFamily",
    "Severity",
    "TRANSACTION_TYPES",
    "TextStatus",
    "catalog_entries",
    "closing_date_rule",
    "code_ranges",
    "expand_request_names",
    "lookup",
    "normalise_request_type",
    "parse_code",
    "permission_areas",
    "permission_map_rows",
    "product_family",
]

CATALOG_FILE = "catalog.json"
PERMISSION_MAP_FILE = "op_permission_map.csv"


class Category(StrEnum):
    """Where the problem lies, which decides who must act and what the session does.

    The reference CSVs use other words (auth, other, ...); the catalog maps them into these.
    """

    #: A QuickBooks user or the application lacks a right; an Admin must change a setting.
    PERMISSION = "permission"
    #: The service, the Web Connector and QuickBooks could not reach each other.
    CONNECTION = "connection"
    #: The wrong company file, the wrong mode, or a file that cannot be opened or is locked.
    COMPANY_FILE = "company-file"
    #: QuickBooks refused this record's content; only this job fails.
    DATA = "data"
    #: A passing conflict (record in use, stale edit sequence); a later retry usually works.
    TRANSIENT = "transient"
    #: A qbXML, QuickBooks or Web Connector version mismatch.
    VERSION = "version"
    #: The QuickBooks edition or the company's preferences lack a feature.
    FEATURE = "feature"
    #: A fault inside QuickBooks, the Web Connector or qwc-service, or a housekeeping message.
    INTERNAL = "internal"


class Severity(StrEnum):
    """Intuit's statusSeverity, extended to HRESULT and QBWC codes. Only ERROR fails a job."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class CodeKind(StrEnum):
    QBXML = "qbxml"
    HRESULT = "hresult"
    QBWC = "qbwc"


class TextStatus(StrEnum):
    """How far ``official_message`` can be trusted as Intuit's own wording."""

    #: From an Intuit page, guide or sample (or a faithful copy of Intuit's table).
    OFFICIAL = "official"
    #: Quoted by third-party code or vendor pages; not checked against an Intuit page.
    QUOTED = "quoted"
    #: Seen in real QuickBooks responses; placeholders such as <name> stand for the variable parts.
    REAL_RESPONSE = "real-response"
    #: Our paraphrase; the official text was not found.
    PARAPHRASE = "paraphrase"
    #: The official text was not found; the row describes the meaning.
    NOT_FOUND = "not-found"
    #: The source cut the text off.
    TRUNCATED = "truncated"
    #: Text an Intuit sample shows to its users, not the request processor's message.
    SAMPLE_TEXT = "sample-text"
    #: No catalog text: the code is only known by its range.
    NONE = "none"


class InvalidCode(ValueError):
    """The value is not a qbXML status code, an HRESULT or a QBWC code in any accepted form."""


_HRESULT_MAX = 0xFFFFFFFF
_SIGNED_MIN = -(2**31)


@dataclass(frozen=True)
class Code:
    """A failure code, normalised: one value however QBWC or a person spelled it.

    ``str(code)`` is the canonical spelling used in the catalog and in every message:
    ``3260``, ``0x80040408`` (upper-case digits), ``QBWC1012``.
    """

    kind: CodeKind
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise InvalidCode(f"a {self.kind} code cannot be negative: {self.value}")
        if self.kind is CodeKind.HRESULT and self.value > _HRESULT_MAX:
            raise InvalidCode(f"an HRESULT has 32 bits: {self.value:#x}")

    def __str__(self) -> str:
        if self.kind is CodeKind.HRESULT:
            return f"0x{self.value:08X}"
        if self.kind is CodeKind.QBWC:
            return f"QBWC{self.value}"
        return str(self.value)

    @property
    def signed(self) -> int:
        """The value as .NET prints an HRESULT held in an ``int`` (e.g. -2147220472)."""
        if self.kind is CodeKind.HRESULT and self.value >= 2**31:
            return self.value - 2**32
        return self.value

    @property
    def family(self) -> str:
        """How to name the code in a sentence: whose code it is."""
        return {
            CodeKind.QBXML: "QuickBooks status",
            CodeKind.HRESULT: "QuickBooks request-processor error",
            CodeKind.QBWC: "Web Connector error",
        }[self.kind]


_QBWC_RE = re.compile(r"^QBWC[\s_-]*(\d{1,6})$", re.IGNORECASE)
_HEX_PREFIX_RE = re.compile(r"^(?:0x|&h)([0-9a-f]{1,8})$", re.IGNORECASE)
# Eight hex digits with the failure bit set and no prefix: how some logs print an HRESULT.
# No qbXML status code has eight digits, so "80040408" is never a decimal status code.
_BARE_HRESULT_RE = re.compile(r"^[89a-f][0-9a-f]{7}$", re.IGNORECASE)
_DECIMAL_RE = re.compile(r"^[+-]?\d{1,12}$")


def _from_int(value: int) -> Code:
    if value < 0:
        if value < _SIGNED_MIN:
            raise InvalidCode(f"{value} is below the range of a signed 32-bit HRESULT")
        return Code(CodeKind.HRESULT, value & _HRESULT_MAX)
    if value >= 2**31:
        if value > _HRESULT_MAX:
            raise InvalidCode(f"{value} is larger than any 32-bit code")
        return Code(CodeKind.HRESULT, value)
    return Code(CodeKind.QBXML, value)


def parse_code(value: Code | int | str) -> Code:
    """Normalise a code as QBWC, QuickBooks or a person writes it.

    Accepted: qbXML ints and decimal strings (``3260``, ``"3260"``); HRESULTs as hex with or
    without ``0x`` (any case: ``"0x8004041a"``, ``"8004041A"``, VB's ``"&H80040408"``), as signed
    decimal (``-2147220472``, which .NET produces) or unsigned decimal; Web Connector codes
    (``"QBWC1012"``, ``"qbwc 1012"``). Raises :class:`InvalidCode` otherwise, so that a caller
    can tell "unknown code" (still explained by its range) from "not a code at all".
    """
    if isinstance(value, Code):
        return value
    if isinstance(value, bool):
        raise InvalidCode("a boolean is not a code")
    if isinstance(value, int):
        return _from_int(value)
    if not isinstance(value, str):
        raise InvalidCode(f"not a code: {value!r}")
    text = value.strip()
    if not text:
        raise InvalidCode("empty code")
    if m := _QBWC_RE.match(text):
        return Code(CodeKind.QBWC, int(m.group(1)))
    if m := _HEX_PREFIX_RE.match(text):
        return Code(CodeKind.HRESULT, int(m.group(1), 16))
    if _BARE_HRESULT_RE.match(text):
        return Code(CodeKind.HRESULT, int(text, 16))
    if _DECIMAL_RE.match(text):
        return _from_int(int(text))
    raise InvalidCode(f"not a qbXML status code, HRESULT or QBWC code: {text!r}")


@dataclass(frozen=True)
class CodeRange:
    """Defaults for codes of one kind between ``low`` and ``high`` (inclusive).

    Ranges may nest; the narrowest one containing a code wins (0x8004xxxx inside 0x8xxxxxxx).
    """

    kind: CodeKind
    low: int
    high: int
    label: str
    category: Category
    severity: Severity
    retryable: bool
    stops_session: bool
    #: Plain-language clause for the status column, like CatalogEntry.summary.
    summary: str
    explanation: str
    action: tuple[str, ...]

    def __contains__(self, code: object) -> bool:
        return isinstance(code, Code) and code.kind is self.kind and self.low <= code.value <= self.high

    @property
    def width(self) -> int:
        return self.high - self.low

    def describe(self) -> str:
        """The range in the notation of its kind, e.g. ``0x80040000-0x8004FFFF``."""
        low, high = Code(self.kind, self.low), Code(self.kind, self.high)
        return f"{low}-{high}"


@dataclass(frozen=True)
class CatalogEntry:
    """What we know about one code: how to classify it and how to explain it to an operator.

    ``summary``, ``explanation`` and ``action`` may hold ``{placeholders}`` (``{connection}``,
    ``{company_file}``, ``{login_user}``, ``{app}``, ``{qbwc_user}``, ``{users_menu}``) that
    :mod:`qwc_service.diagnosis` fills from the session's context.
    """

    code: Code
    title: str
    category: Category
    severity: Severity
    #: Whether trying the same work again later can succeed without anyone changing anything.
    retryable: bool
    #: Whether the sync session should stop (a person must act before anything else can work).
    stops_session: bool
    #: Plain-language clause for the status column, without the code (diagnosis adds it).
    summary: str
    explanation: str
    action: tuple[str, ...]
    #: The reference text, verbatim (may carry markers such as "[REAL RESPONSE]").
    official_message: str = ""
    text_status: TextStatus = TextStatus.NONE
    #: The reference CSV's own category word (auth, other, ...), kept for traceability.
    reference_category: str = ""
    source: str = ""
    #: False when the code is not in the catalog and this entry comes from its range.
    listed: bool = True
    range_label: str = ""

    @property
    def official_text(self) -> str:
        """``official_message`` without the leading ``[MARKER]`` the reference puts on non-official rows."""
        return re.sub(r"^\[[^\]]*\]\s*", "", self.official_message).strip()


def _entry_from_json(item: dict[str, Any], range_label: str) -> CatalogEntry:
    code = parse_code(item["code"])
    if code.kind != CodeKind(item["kind"]) or str(code) != item["code"]:
        raise ValueError(f"catalog code {item['code']!r} is not canonical for kind {item['kind']}")
    return CatalogEntry(
        code=code,
        title=item["title"],
        category=Category(item["category"]),
        severity=Severity(item["severity"]),
        retryable=bool(item["retryable"]),
        stops_session=bool(item["stops_session"]),
        summary=item["summary"],
        explanation=item["explanation"],
        action=tuple(item["action"]),
        official_message=item["official_message"],
        text_status=TextStatus(item["text_status"]),
        reference_category=item.get("reference_category", ""),
        source=item.get("source", ""),
        listed=True,
        range_label=range_label,
    )


def _range_from_json(item: dict[str, Any]) -> CodeRange:
    return CodeRange(
        kind=CodeKind(item["kind"]),
        low=int(item["low"]),
        high=int(item["high"]),
        label=item["label"],
        category=Category(item["category"]),
        severity=Severity(item["severity"]),
        retryable=bool(item["retryable"]),
        stops_session=bool(item["stops_session"]),
        summary=item["summary"],
        explanation=item["explanation"],
        action=tuple(item["action"]),
    )


@dataclass(frozen=True)
class _Catalog:
    entries: dict[Code, CatalogEntry]
    ranges: tuple[CodeRange, ...]

    def range_for(self, code: Code) -> CodeRange | None:
        matches = [r for r in self.ranges if code in r]
        return min(matches, key=lambda r: r.width) if matches else None


@lru_cache(maxsize=1)
def _load() -> _Catalog:
    raw = json.loads((files("qwc_service") / "data" / CATALOG_FILE).read_text(encoding="utf-8"))
    ranges = tuple(_range_from_json(item) for item in raw["ranges"])
    probe = _Catalog({}, ranges)
    entries: dict[Code, CatalogEntry] = {}
    for item in raw["entries"]:
        code = parse_code(item["code"])
        found = probe.range_for(code)
        entry = _entry_from_json(item, found.label if found else "")
        if entry.code in entries:
            raise ValueError(f"catalog lists {entry.code} twice")
        entries[entry.code] = entry
    return _Catalog(entries, ranges)


def catalog_entries() -> tuple[CatalogEntry, ...]:
    """Every listed entry, in catalog order (qbXML, then HRESULT, then QBWC, each ascending)."""
    order = list(CodeKind)
    return tuple(sorted(_load().entries.values(), key=lambda e: (order.index(e.code.kind), e.code.value)))


def code_ranges() -> tuple[CodeRange, ...]:
    """The range defaults, in catalog order."""
    return _load().ranges


def lookup(code: Code | int | str) -> CatalogEntry:
    """The catalog entry for ``code``, or one built from its range when the code is not listed.

    Never fails for a well-formed code (a code outside every range gets an "unknown" internal
    entry); raises :class:`InvalidCode` only when ``code`` cannot be read as a code at all.
    """
    parsed = parse_code(code)
    catalog = _load()
    entry = catalog.entries.get(parsed)
    if entry is not None:
        return entry
    found = catalog.range_for(parsed)
    if found is None:  # the shipped ranges cover every value; kept so a trimmed catalog still answers
        return CatalogEntry(
            code=parsed, title="Unknown code", category=Category.INTERNAL, severity=Severity.ERROR,
            retryable=False, stops_session=True,
            summary="a code this catalog does not know.",
            explanation="This code is not in the catalog and falls in no documented range.",
            action=("Read the message that came with the code.",),
            listed=False,
        )
    return CatalogEntry(
        code=parsed,
        title=f"Unlisted code ({found.label})",
        category=found.category,
        severity=found.severity,
        retryable=found.retryable,
        stops_session=found.stops_session,
        summary=found.summary,
        explanation=found.explanation,
        action=found.action,
        listed=False,
        range_label=found.label,
    )


# -- QuickBooks editions ---------------------------------------------------------------------------


class ProductFamily(StrEnum):
    """Which user-setup screens a QuickBooks product has: they differ between editions."""

    ENTERPRISE = "enterprise"
    PRO_PREMIER = "pro-premier"
    UNKNOWN = "unknown"


def product_family(product_name: str | None) -> ProductFamily:
    """Classify HostRet/ProductName, e.g. "QuickBooks Enterprise Solutions 23.0" or "QuickBooks Pro 2014".

    Enterprise has roles (Set Up Users and Roles); Pro, Premier and Accountant editions have
    per-user areas (Set Up Users and Passwords). Anything else (Simple Start, Point of Sale, an
    empty name) is unknown, and messages then give both menus rather than guess.
    """
    name = (product_name or "").lower()
    if "enterprise" in name:
        return ProductFamily.ENTERPRISE
    if re.search(r"\b(pro|premier|accountant)\b", name):
        return ProductFamily.PRO_PREMIER
    return ProductFamily.UNKNOWN


# -- the request -> permission area map -------------------------------------------------------


@dataclass(frozen=True)
class MapRow:
    """One row of ``op_permission_map.csv``: requests (as the map groups them) and their areas."""

    requests: str
    names: frozenset[str]
    pro_premier: str
    enterprise: str
    evidence: str
    note: str

    @property
    def inferred(self) -> bool:
        return "inferred" in self.note.lower()


@dataclass(frozen=True)
class _PermissionMap:
    rows: tuple[MapRow, ...]
    by_name: dict[str, MapRow]
    transaction_change: MapRow | None
    closing_date: MapRow | None


def _camel_words(name: str) -> list[str]:
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+", name)


def _finish_name(name: str) -> str:
    # "PayrollSummaryReport" is written for the request PayrollSummaryReportQuery.
    return name + "Query" if name.endswith("Report") else name


def expand_request_names(cell: str) -> frozenset[str]:
    """The qbXML request names a map cell stands for.

    The map groups requests in prose: "InvoiceAdd / SalesReceiptAdd", "CustomerAdd/Mod, JobTypeAdd",
    "PayrollSummary/DetailReport", "GeneralSummaryReportQuery (Trial Balance, ...)". Parentheses
    are dropped, items split at commas and spaced slashes, and "XAdd/Mod" expands to XAdd and XMod.
    Prose items ("payroll items", "any *Mod on a transaction") give no names; the two rule rows are
    recognised separately.
    """
    text = re.sub(r"\([^)]*\)", " ", cell)
    names: set[str] = set()
    for item in re.split(r",|\s/\s", text):
        item = item.strip()
        if not item or " " in item:
            continue
        first, *alternatives = item.split("/")
        if not re.fullmatch(r"[A-Z][A-Za-z]+", first):
            continue
        first_words = _camel_words(first)
        if not alternatives:
            names.add(_finish_name(first))
        for alt in alternatives:
            alt_words = _camel_words(alt)
            if not alt_words:
                continue
            if len(alt_words) == 1:  # "CustomerAdd/Mod": Mod replaces the verb
                names.add(_finish_name(first))
                names.add(_finish_name("".join(first_words[:-1] + alt_words)))
            else:  # "PayrollSummary/DetailReport": "Report" is shared by both
                suffix = "".join(alt_words[1:])
                names.add(_finish_name(first + suffix))
                names.add(_finish_name("".join(first_words[:-1]) + alt))
    return frozenset(names)


@lru_cache(maxsize=1)
def _permission_map() -> _PermissionMap:
    text = (files("qwc_service") / "data" / PERMISSION_MAP_FILE).read_text(encoding="utf-8")
    rows: list[MapRow] = []
    by_name: dict[str, MapRow] = {}
    change = closing = None
    for raw in csv.DictReader(io.StringIO(text)):
        row = MapRow(
            requests=raw["qbxml_requests"].strip(),
            names=expand_request_names(raw["qbxml_requests"]),
            pro_premier=raw["pro_premier_area"].strip(),
            enterprise=raw["enterprise_role_area"].strip(),
            evidence=raw["evidence"].strip(),
            note=raw["confidence_note"].strip(),
        )
        rows.append(row)
        if "*Mod" in row.requests:
            change = row
        if "closing date" in row.requests.lower():
            closing = row
        for name in row.names:
            by_name.setdefault(name, row)
    return _PermissionMap(tuple(rows), by_name, change, closing)


# Transaction types (qbXML TxnDelType): a Mod/Del/Void on these also needs
# "Changing or Deleting Transactions"; a Mod on a list entry does not.
TRANSACTION_TYPES = frozenset({
    "ARRefundCreditCard", "Bill", "BillPaymentCheck", "BillPaymentCreditCard", "BuildAssembly",
    "Charge", "Check", "CreditCardCharge", "CreditCardCredit", "CreditMemo", "Deposit", "Estimate",
    "InventoryAdjustment", "Invoice", "ItemReceipt", "JournalEntry", "PayrollLiabilityAdjustment",
    "PayrollPriorPayment", "PayrollYearToDateAdjustment", "PurchaseOrder", "ReceivePayment",
    "SalesOrder", "SalesReceipt", "SalesTaxPaymentCheck", "TimeTracking", "Transfer",
    "TransferInventory", "VehicleMileage", "VendorCredit",
})


@dataclass(frozen=True)
class PermissionAdvice:
    """The QuickBooks permission area(s) a request probably needs, per edition.

    ``pro_premier`` and ``enterprise`` are lines of area names (empty when nothing is known);
    ``inferred`` is True unless the map calls the mapping documented, and the messages then say
    "probably". ``basis`` says how the request was matched: ``listed`` (named in the map),
    ``related`` (another verb of a listed record), ``change`` (a Mod/Del/Void of a transaction),
    ``view`` (a query: the area's view rights), ``report`` (an unlisted report) or ``unknown``.
    """

    request_type: str
    pro_premier: tuple[str, ...]
    enterprise: tuple[str, ...]
    inferred: bool
    basis: str
    note: str = ""
    #: The map rows used, as written in the map, for traceability.
    map_rows: tuple[str, ...] = field(default_factory=tuple)

    @property
    def known(self) -> bool:
        return self.basis != "unknown"

    def lines_for(self, family: ProductFamily) -> list[tuple[str, str]]:
        """(edition label, area) pairs for the user's edition; both editions when unknown."""
        pairs: list[tuple[str, str]] = []
        if family is not ProductFamily.PRO_PREMIER:
            pairs += [("QuickBooks Enterprise", area) for area in self.enterprise]
        if family is not ProductFamily.ENTERPRISE:
            pairs += [("QuickBooks Pro/Premier", area) for area in self.pro_premier]
        return pairs

    def short_area(self, family: ProductFamily) -> str:
        """The first area for the edition, without notes in brackets: for one-line summaries."""
        areas = self.enterprise if family is ProductFamily.ENTERPRISE else self.pro_premier
        if family is ProductFamily.UNKNOWN or not areas:
            return ""
        area = re.sub(r"\s*[(;].*$", "", areas[0]).strip()
        return "" if area.lower().startswith(("no ", "per-")) else area


def normalise_request_type(request_type: str | None) -> str:
    """``"CustomerAddRq"`` and ``" CustomerAdd "`` both name the request ``CustomerAdd``."""
    name = " ".join((request_type or "").split())[:80]  # it ends up in one-line summaries
    return re.sub(r"(?<=[a-z])R[qs]$", "", name)


def permission_areas(request_type: str | None) -> PermissionAdvice:
    """Which Pro/Premier area and Enterprise role area a qbXML request probably needs.

    Uses ``op_permission_map.csv``: exact names first, then the map's rules (a Mod/Del/Void of a
    transaction also needs "Changing or Deleting Transactions"; a Query needs the area's view
    rights; other reports need report rights), and an ``unknown`` advice when nothing matches.
    """
    pmap = _permission_map()
    name = normalise_request_type(request_type)
    row = pmap.by_name.get(name)
    if row is not None:
        return PermissionAdvice(name, (row.pro_premier,), (row.enterprise,), row.inferred, "listed",
                                row.note, (row.requests,))
    m = re.fullmatch(r"(?P<base>[A-Za-z]+?)(?P<verb>Add|Mod|Query|Del|Void)", name)
    base, verb = (m.group("base"), m.group("verb")) if m else (name, "")
    related = next((pmap.by_name[base + v] for v in ("Add", "Mod", "Query") if base + v in pmap.by_name), None)
    change = pmap.transaction_change
    if verb in {"Mod", "Del", "Void"} and base in TRANSACTION_TYPES and change is not None:
        pro = ((related.pro_premier,) if related else ()) + (change.pro_premier,)
        ent = ((f"{related.enterprise} (with Modify/Delete access)",) if related else ()) + (change.enterprise,)
        rows = ((related.requests,) if related else ()) + (change.requests,)
        return PermissionAdvice(name, pro, ent, True, "change", change.note, rows)
    if verb == "Query" and related is not None:
        return PermissionAdvice(
            name,
            (f"view and report rights in {re.sub(r'[(;].*$', '', related.pro_premier).strip()}",),
            (f"{related.enterprise} (with View access)",),
            True, "view", "A query needs the right to view the records of that area.", (related.requests,),
        )
    if related is not None:
        return PermissionAdvice(name, (related.pro_premier,), (related.enterprise,), True, "related",
                                related.note, (related.requests,))
    if verb == "Query" and base.endswith("Report"):
        return PermissionAdvice(
            name,
            ("report rights of the area the report covers "
             "(Sensitive Financial Reporting for company-wide financial reports)",),
            ("Reports > the report's group (for example Company & Financial, Customers & Receivables)",),
            True, "report", "Reports need the report rights of their area.", (),
        )
    return PermissionAdvice(name, (), (), True, "unknown", "The permission map has no entry for this request.")


def permission_map_rows() -> tuple[MapRow, ...]:
    """The permission map's rows, in file order (for explanations and the troubleshooting page)."""
    return _permission_map().rows


def closing_date_rule() -> MapRow | None:
    """The map's row for changes dated on or before the closing date (qbXML 3171)."""
    return _permission_map().closing_date
