"""A fake QuickBooks: the request processor the Web Connector talks to.

QBWC opens QuickBooks (OpenConnection/BeginSession), hands it each qbXML
document the server returned from sendRequestXML (ProcessRequest), and ends
the session. This module plays that part:

- :meth:`FakeQuickBooks.begin_session` opens a :class:`QuickBooksSession`, or
  raises :class:`OpenError` with an HRESULT when a fault says QuickBooks
  cannot be opened;
- :meth:`QuickBooksSession.process_request` answers a request document with a
  :class:`ProcessResult`: a response document, or an HRESULT with an empty
  response, exactly the two shapes receiveResponseXML can carry;
- :meth:`FakeQuickBooks.first_call_response` is the strHCPResponse QBWC sends
  on the first sendRequestXML of a session.

Decisions where QuickBooks' behaviour is not pinned down by the reference:

- The whole document is checked before anything runs, because QuickBooks
  validates against the qbXML schema first: malformed XML, a missing
  ``<?qbxml version?>``, a missing or wrong ``onError``, a child of
  ``QBXMLMsgsRq`` that is not a ``…Rq``, a known request without its body or
  required fields, an ill-typed value (amount, date, boolean, enum) or text
  outside ISO-8859-1 all fail ProcessRequest with 0x80040400. A version
  above what the host supports fails with 0x80040423.
- A well-formed ``…Rq`` the fake does not implement (``BillAddRq``…) answers
  statusCode 3250 ("This feature is not enabled or not available in this
  version of QuickBooks.") for that request only: the fake cannot tell a real
  but unimplemented request from a misspelt one, and a per-request status
  keeps the rest of the document meaningful.
- rollbackOnError behaves as stopOnError and then undoes every write the
  document made (the earlier ``…Rs`` still say 0, as they were executed).
- Iterators live in the session: a new session, an unknown ID, a finished
  or stopped iterator all answer 3391.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

from lxml import etree

from .company import ENTITY_TYPES, ITEM_TYPES, Clock, CompanyFile
from .documents import Fields, QbxmlSyntaxError, append_fields, parse, serialize
from .faults import Faults, HresultFault, OpenFault, SlowFault, StatusFault
from .statuses import PARSE_ERROR, QBStatus, hresult_message, status_message

DEFAULT_QBXML_VERSIONS: tuple[str, ...] = (
    "1.0", "1.1", "2.0", "2.1", "3.0", "4.0", "4.1", "5.0", "6.0", "7.0",
    "8.0", "9.0", "10.0", "11.0", "12.0", "13.0",
)  # fmt: skip

ON_ERROR_VALUES = ("stopOnError", "continueOnError", "rollbackOnError")

ADD_REQUESTS: dict[str, str] = {f"{name}Add": name for name in ENTITY_TYPES}
MOD_REQUESTS: dict[str, str] = {f"{name}Mod": name for name in ENTITY_TYPES if name != "ReceivePayment"}
QUERY_REQUESTS: dict[str, tuple[str, ...]] = {
    "CustomerQuery": ("Customer",),
    "VendorQuery": ("Vendor",),
    "ItemQuery": ITEM_TYPES,
    "ItemServiceQuery": ("ItemService",),
    "ItemNonInventoryQuery": ("ItemNonInventory",),
    "InvoiceQuery": ("Invoice",),
    "ReceivePaymentQuery": ("ReceivePayment",),
}
HOST_REQUESTS = ("HostQuery", "CompanyQuery", "PreferencesQuery")

#: Value checks the qbXML schema makes before QuickBooks runs anything.
_DECIMALS = frozenset({"Quantity", "Rate", "Amount", "TotalAmount", "PaymentAmount", "Price", "SalesPrice"})
_DATES = frozenset({"TxnDate", "DueDate", "ShipDate", "FromTxnDate", "ToTxnDate"})
_DATETIMES = frozenset({"FromModifiedDate", "ToModifiedDate"})
_BOOLEANS = frozenset(
    {"IsActive", "IncludeLineItems", "IncludeLinkedTxns", "IsToBePrinted", "IsToBeEmailed", "IsPending"}
)
_ENUMS: dict[str, tuple[str, ...]] = {
    "ActiveStatus": ("ActiveOnly", "InactiveOnly", "All"),
    "MatchCriterion": ("StartsWith", "Contains", "EndsWith"),
    "PaidStatus": ("All", "PaidOnly", "NotPaidOnly"),
}

#: PreferencesRet blocks as in the QuickBooks Pro 2014 sample; CurrentAppAccessRights
#: is inserted where the sample has it, after TimeTrackingPreferences.
_PREFERENCES_BEFORE: Fields = {
    "AccountingPreferences": {
        "IsUsingAccountNumbers": "false",
        "IsRequiringAccounts": "true",
        "IsUsingClassTracking": "false",
        "IsUsingAuditTrail": "true",
        "IsAssigningJournalEntryNumbers": "true",
    },
    "FinanceChargePreferences": {
        "AnnualInterestRate": "0.00",
        "MinFinanceCharge": "0.00",
        "GracePeriod": "0",
        "IsAssessingForOverdueCharges": "false",
        "CalculateChargesFrom": "DueDate",
        "IsMarkedToBePrinted": "false",
    },
    "JobsAndEstimatesPreferences": {
        "IsUsingEstimates": "true",
        "IsUsingProgressInvoicing": "false",
        "IsPrintingItemsWithZeroAmounts": "false",
    },
    "MultiCurrencyPreferences": {"IsMultiCurrencyOn": "false"},
    "MultiLocationInventoryPreferences": {
        "IsMultiLocationInventoryAvailable": "false",
        "IsMultiLocationInventoryEnabled": "false",
    },
    "PurchasesAndVendorsPreferences": {
        "IsUsingInventory": "false",
        "DaysBillsAreDue": "10",
        "IsAutomaticallyUsingDiscounts": "false",
    },
    "ReportsPreferences": {"AgingReportBasis": "AgeFromDueDate", "SummaryReportBasis": "Accrual"},
    "SalesAndCustomersPreferences": {
        "IsTrackingReimbursedExpensesAsIncome": "false",
        "IsAutoApplyingPayments": "true",
        "PriceLevels": {"IsUsingPriceLevels": "true", "IsRoundingSalesPriceUp": "true"},
    },
    "TimeTrackingPreferences": {"FirstDayOfWeek": "Monday"},
}
_PREFERENCES_AFTER: Fields = {
    "ItemsAndInventoryPreferences": {
        "EnhancedInventoryReceivingEnabled": "false",
        "IsTrackingSerialOrLotNumber": "None",
        "FIFOEnabled": "false",
        "IsRSBEnabled": "false",
        "IsBarcodeEnabled": "false",
    },
}


def _bool(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True, kw_only=True)
class QuickBooksProfile:
    """What the QuickBooks installation, the company file and this app's rights look like.

    These are the facts of the first-call strHCPResponse; the defaults are
    those of the QuickBooks Pro 2014 sample (``samples/qbxml_strHCPResponse_…``).
    """

    product_name: str = "QuickBooks Pro 2014"
    major_version: int = 24
    minor_version: int = 0
    country: str = "US"
    supported_qbxml_versions: tuple[str, ...] = DEFAULT_QBXML_VERSIONS
    #: HostRet/IsAutomaticLogin: QuickBooks was opened unattended by the connector.
    is_automatic_login: bool = False
    file_mode: Literal["SingleUser", "MultiUser"] = "SingleUser"
    company_name: str = "Simulated Company"
    #: The path QBWC reports as strCompanyFileName when the server asks for "the open file".
    company_file: str = r"C:\Users\Public\Documents\Intuit\QuickBooks\Company Files\Simulated Company.qbw"
    #: With both set, CompanyRet carries the FileID data extension under this OwnerID,
    #: as it does once QBWC has registered the application's .qwc with the file.
    owner_id: str | None = None
    file_id: str | None = None
    #: PreferencesRet/CurrentAppAccessRights, from Integrated Applications preferences.
    is_automatic_login_allowed: bool = False
    automatic_login_user_name: str | None = None
    is_personal_data_access_allowed: bool = False

    @property
    def qbxml_version(self) -> tuple[int, int]:
        """The highest supported version, as QBWC sends it in qbXMLMajorVers/MinorVers."""
        major, minor = max(tuple(int(part) for part in v.split(".")) for v in self.supported_qbxml_versions)
        return major, minor


@dataclass(frozen=True)
class ProcessResult:
    """What ProcessRequest gave back: a response document, or an HRESULT and no response."""

    response: str = ""
    hresult: str = ""
    message: str = ""
    #: Why the document was refused, for humans; QuickBooks itself says no more than ``message``.
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.hresult

    @classmethod
    def failure(cls, hresult: str, message: str | None = None, detail: str = "") -> ProcessResult:
        return cls(hresult=hresult, message=message or hresult_message(hresult), detail=detail)


class OpenError(Exception):
    """QuickBooks could not be opened (what QBWC reports through connectionError)."""

    def __init__(self, hresult: str, message: str) -> None:
        super().__init__(f"{hresult}: {message}")
        self.hresult = hresult
        self.message = message


class _Refused(Exception):
    """The request processor rejects the whole document."""

    def __init__(self, detail: str, hresult: str = PARSE_ERROR) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hresult = hresult


@dataclass
class _Iterator:
    query: str
    remaining: list[str]
    page_size: int | None
    include_lines: bool
    only: frozenset[str]


class FakeQuickBooks:
    """QuickBooks with one in-memory company file::

    qb = FakeQuickBooks()
    qb.company.add("Customer", {"Name": "Acme"})
    with qb.begin_session() as session:
        result = session.process_request(document)
    """

    def __init__(
        self,
        profile: QuickBooksProfile | None = None,
        *,
        company: CompanyFile | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.profile = profile or QuickBooksProfile()
        self.company = company or CompanyFile(clock)
        #: Used by :class:`~qwc_service.simulator.faults.SlowFault`; tests may replace it.
        self.sleep = sleep

    def begin_session(self, company_file: str = "", faults: Faults | None = None) -> QuickBooksSession:
        """Open QuickBooks on ``company_file`` ("" = the file already open).

        Raises :class:`OpenError` when an :class:`~qwc_service.simulator.faults.OpenFault` fires.
        Any path is accepted: the fake has one company file and reports the
        requested path as its name, as QuickBooks does when it opens a file.
        """
        faults = faults if faults is not None else Faults()
        refused = faults.take(OpenFault)
        if refused is not None:
            raise OpenError(refused.hresult, refused.message or hresult_message(refused.hresult))
        return QuickBooksSession(self, company_file or self.profile.company_file, faults)

    def first_call_response(self) -> str:
        """The strHCPResponse: HostQueryRs, CompanyQueryRs and PreferencesQueryRs in one document."""
        root = etree.Element("QBXML")
        messages = etree.SubElement(root, "QBXMLMsgsRs")
        answers = (
            ("HostQueryRs", self.host_ret()),
            ("CompanyQueryRs", self.company_ret()),
            ("PreferencesQueryRs", self.preferences_ret()),
        )
        for request_id, (name, ret) in enumerate(answers):
            rs = _status_element(name, str(request_id), None)
            rs.append(ret)
            messages.append(rs)
        return serialize(root)

    def host_ret(self) -> etree._Element:
        p = self.profile
        return append_fields(
            etree.Element("HostRet"),
            {
                "ProductName": p.product_name,
                "MajorVersion": str(p.major_version),
                "MinorVersion": str(p.minor_version),
                "Country": p.country,
                "SupportedQBXMLVersion": list(p.supported_qbxml_versions),
                "IsAutomaticLogin": _bool(p.is_automatic_login),
                "QBFileMode": p.file_mode,
            },
        )

    def company_ret(self) -> etree._Element:
        p = self.profile
        ret = append_fields(
            etree.Element("CompanyRet"),
            {
                "IsSampleCompany": "false",
                "CompanyName": p.company_name,
                "LegalCompanyName": p.company_name,
                "Address": {"City": "Mountain View", "State": "CA", "PostalCode": "94043", "Country": p.country},
                "FirstMonthFiscalYear": "January",
                "FirstMonthIncomeTaxYear": "January",
                "TaxForm": "Form1120",
                "AccountantCopy": {"AccountantCopyExists": "false"},
            },
        )
        if p.owner_id and p.file_id:
            append_fields(
                ret,
                {
                    "DataExtRet": {
                        "OwnerID": p.owner_id,
                        "DataExtName": "FileID",
                        "DataExtType": "STR255TYPE",
                        "DataExtValue": p.file_id,
                    }
                },
            )
        return ret

    def preferences_ret(self) -> etree._Element:
        p = self.profile
        rights: dict[str, str] = {"IsAutomaticLoginAllowed": _bool(p.is_automatic_login_allowed)}
        if p.automatic_login_user_name is not None:
            rights["AutomaticLoginUserName"] = p.automatic_login_user_name
        rights["IsPersonalDataAccessAllowed"] = _bool(p.is_personal_data_access_allowed)
        ret = append_fields(etree.Element("PreferencesRet"), _PREFERENCES_BEFORE)
        append_fields(ret, {"CurrentAppAccessRights": rights})
        return append_fields(ret, _PREFERENCES_AFTER)


class QuickBooksSession:
    """One open QuickBooks session: request numbering and iterators live here."""

    def __init__(self, quickbooks: FakeQuickBooks, company_file: str, faults: Faults) -> None:
        self.quickbooks = quickbooks
        #: The company file QBWC reports to the server in sendRequestXML.
        self.company_file = company_file
        self.faults = faults
        #: How many documents ProcessRequest has received.
        self.calls = 0
        self._iterators: dict[str, _Iterator] = {}
        self._ended = False

    def __enter__(self) -> QuickBooksSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def end(self) -> None:
        """EndSession: every iterator of this session becomes invalid."""
        self._iterators.clear()
        self._ended = True

    @property
    def company(self) -> CompanyFile:
        return self.quickbooks.company

    def process_request(self, qbxml: str) -> ProcessResult:
        """Answer one request document, as ProcessRequest does."""
        if self._ended:
            raise RuntimeError("this QuickBooks session has ended")
        self.calls += 1
        call = self.calls
        refusal: _Refused | None = None
        on_error = ""
        requests: list[etree._Element] = []
        try:
            on_error, requests = self._read(qbxml)
        except _Refused as exc:
            refusal = exc
        kinds = tuple(str(rq.tag)[:-2] for rq in requests)
        slow = self.faults.take(SlowFault, kinds, call)
        if slow is not None:
            self.quickbooks.sleep(slow.seconds)
        if refusal is not None:
            return ProcessResult.failure(refusal.hresult, detail=refusal.detail)
        injected = self.faults.take(HresultFault, kinds, call)
        if injected is not None:
            return ProcessResult.failure(injected.hresult, injected.message, detail="injected HresultFault")
        return ProcessResult(response=serialize(self._run(on_error, requests, call)))

    # -- the document ------------------------------------------------------

    def _read(self, text: str) -> tuple[str, list[etree._Element]]:
        """Check a request document the way the request processor does, before running any of it."""
        try:
            text.encode("iso-8859-1")
        except UnicodeEncodeError as exc:
            raise _Refused(f"character {text[exc.start]!r} is outside ISO-8859-1") from None
        try:
            root = parse(text)
        except QbxmlSyntaxError as exc:
            raise _Refused(f"not well-formed XML: {exc}") from None
        if root.tag != "QBXML":
            raise _Refused(f"root element is <{root.tag}>, not <QBXML>")
        version = _qbxml_version(root)
        if version is None:
            raise _Refused('no <?qbxml version="…"?> before <QBXML>')
        supported = self.quickbooks.profile.supported_qbxml_versions
        if _normal_version(version) not in supported:
            raise _Refused(f"qbXML {version} is not among {', '.join(supported)}", "0x80040423")
        messages = root.findall("QBXMLMsgsRq")
        if len(messages) != 1 or len(root) != 1:
            raise _Refused("<QBXML> must hold exactly one <QBXMLMsgsRq>")
        on_error = messages[0].get("onError")
        if on_error not in ON_ERROR_VALUES:
            raise _Refused(f"onError is {on_error!r}, not one of {', '.join(ON_ERROR_VALUES)}")
        requests = list(messages[0])
        if not requests:
            raise _Refused("<QBXMLMsgsRq> holds no request")
        for rq in requests:
            _check_request(rq)
        return on_error, requests

    def _run(self, on_error: str, requests: list[etree._Element], call: int) -> etree._Element:
        """Execute the requests in order, honouring onError."""
        snapshot = self.company.snapshot() if on_error == "rollbackOnError" else None
        root = etree.Element("QBXML")
        messages = etree.SubElement(root, "QBXMLMsgsRs")
        failed = False
        for rq in requests:
            kind = str(rq.tag)[:-2]
            if failed and on_error != "continueOnError":
                rs = _status_element(f"{kind}Rs", rq.get("requestID"), QBStatus.of(3231))
            else:
                fault = self.faults.take(StatusFault, (kind,), call)
                rs = self._injected(rq, fault) if fault is not None else self._execute(rq)
                failed = failed or rs.get("statusSeverity") == "Error"
            messages.append(rs)
        if snapshot is not None and failed:
            self.company.restore(snapshot)
        return root

    @staticmethod
    def _injected(rq: etree._Element, fault: StatusFault) -> etree._Element:
        kind = str(rq.tag)[:-2]
        name = next((e.text or "" for e in rq.iter("Name", "FullName", "ListID", "TxnID")), "")
        message = fault.message or status_message(fault.code, kind=_object_name(kind), name=name)
        return _status_element(f"{kind}Rs", rq.get("requestID"), QBStatus(fault.code, message, fault.severity))

    def _execute(self, rq: etree._Element) -> etree._Element:
        kind = str(rq.tag)[:-2]
        records: list[etree._Element] = []
        status: QBStatus | None = None
        iterator: dict[str, str] = {}
        try:
            records, status, iterator = self._perform(kind, rq)
        except QBStatus as exc:
            status = exc
        rs = _status_element(f"{kind}Rs", rq.get("requestID"), status)
        for name, value in iterator.items():
            rs.set(name, value)
        rs.extend(records)
        return rs

    def _perform(self, kind: str, rq: etree._Element) -> tuple[list[etree._Element], QBStatus | None, dict[str, str]]:
        qb = self.quickbooks
        if kind in HOST_REQUESTS:
            ret = {"HostQuery": qb.host_ret, "CompanyQuery": qb.company_ret, "PreferencesQuery": qb.preferences_ret}[
                kind
            ]()
            return [ret], None, {}
        if kind in ADD_REQUESTS:
            entity = ENTITY_TYPES[ADD_REQUESTS[kind]]
            return [self.company.execute_add(entity, _body(rq, kind))], None, {}
        if kind in MOD_REQUESTS:
            entity = ENTITY_TYPES[MOD_REQUESTS[kind]]
            return [self.company.execute_mod(entity, _body(rq, kind))], None, {}
        if kind in QUERY_REQUESTS:
            return self._query(kind, rq)
        raise QBStatus.of(3250)

    def _query(self, kind: str, rq: etree._Element) -> tuple[list[etree._Element], QBStatus | None, dict[str, str]]:
        mode = rq.get("iterator")
        max_returned = int(rq.findtext("MaxReturned") or 0) or None
        status: QBStatus | None = None
        if mode in ("Continue", "Stop"):
            iterator_id = rq.get("iteratorID") or ""
            state = self._iterators.pop(iterator_id, None)
            if state is None or state.query != kind:
                raise QBStatus.of(3391, value=iterator_id)
            if mode == "Stop":
                return [], None, {"iteratorRemainingCount": "0", "iteratorID": iterator_id}
            ids, page_size = state.remaining, max_returned or state.page_size
            include_lines, only = state.include_lines, state.only
        else:
            selection = self.company.select(QUERY_REQUESTS[kind], rq)
            ids, page_size, status = selection.ids, max_returned, selection.warning
            include_lines = rq.findtext("IncludeLineItems") in ("true", "1")
            only = frozenset(e.text or "" for e in rq.iterfind("IncludeRetElement"))
            iterator_id = f"{{{uuid.uuid4()}}}" if mode == "Start" else ""
        page, rest = (ids[:page_size], ids[page_size:]) if page_size else (ids, [])
        records = [self.company.render(i, include_lines=include_lines, only=only) for i in page]
        if status is None and not records:
            status = QBStatus.of(1)
        if not mode:
            return records, status, {}
        if rest:
            self._iterators[iterator_id] = _Iterator(kind, rest, page_size, include_lines, only)
        return records, status, {"iteratorRemainingCount": str(len(rest)), "iteratorID": iterator_id}


def _status_element(name: str, request_id: str | None, status: QBStatus | None) -> etree._Element:
    """An ``…Rs`` with its attributes in QuickBooks' order (requestID first)."""
    rs = etree.Element(name)
    if request_id is not None:
        rs.set("requestID", request_id)
    code = status.code if status is not None else 0
    rs.set("statusCode", str(code))
    rs.set("statusSeverity", status.severity if status is not None else "Info")
    rs.set("statusMessage", status.message if status is not None else status_message(0))
    return rs


def _body(rq: etree._Element, kind: str) -> etree._Element:
    body = rq.find(kind)
    assert body is not None, "checked by _check_request"
    return body


def _object_name(kind: str) -> str:
    for suffix in ("Add", "Mod", "Query", "Del", "Void"):
        if kind.endswith(suffix):
            return kind[: -len(suffix)]
    return kind


def _qbxml_version(root: etree._Element) -> str | None:
    for node in root.itersiblings(preceding=True):
        if isinstance(node, etree._ProcessingInstruction) and node.target == "qbxml":
            return node.get("version")
    return None


def _normal_version(version: str) -> str:
    return version if "." in version else f"{version}.0"


def _check_request(rq: etree._Element) -> None:
    """Schema-level checks of one ``…Rq``; a failure refuses the whole document."""
    tag = str(rq.tag)
    if not tag.endswith("Rq"):
        raise _Refused(f"<{tag}> inside <QBXMLMsgsRq> is not a request")
    kind = tag[:-2]
    mode = rq.get("iterator")
    if mode is not None:
        if not kind.endswith("Query") or mode not in ("Start", "Continue", "Stop"):
            raise _Refused(f'iterator="{mode}" on <{tag}>')
        if mode != "Start" and not rq.get("iteratorID"):
            raise _Refused(f'iterator="{mode}" without iteratorID on <{tag}>')
    if kind in ADD_REQUESTS or kind in MOD_REQUESTS:
        body = rq.find(kind)
        if body is None:
            raise _Refused(f"<{tag}> has no <{kind}>")
        entity = ENTITY_TYPES[ADD_REQUESTS.get(kind) or MOD_REQUESTS[kind]]
        required: tuple[str, ...] = ("Name",) if entity.is_list else ("CustomerRef",)
        if kind in MOD_REQUESTS:
            required = (entity.id_tag, "EditSequence")
        for name in required:
            if body.find(name) is None or (name != "CustomerRef" and not body.findtext(name)):
                raise _Refused(f"<{kind}> lacks <{name}>")
    for node in rq.iter():
        _check_value(str(node.tag), node.text or "")


def _check_value(tag: str, text: str) -> None:
    try:
        if tag in _DECIMALS:
            Decimal(text)
        elif tag == "MaxReturned":
            if int(text) < 0:
                raise ValueError
        elif tag in _DATES:
            if len(text) != 10:
                raise ValueError
            date.fromisoformat(text)
        elif tag in _DATETIMES:
            datetime.fromisoformat(text)
        elif (tag in _BOOLEANS and text not in ("true", "false", "1", "0")) or (
            tag in _ENUMS and text not in _ENUMS[tag]
        ):
            raise ValueError
    except (ValueError, InvalidOperation):
        raise _Refused(f"<{tag}> has an invalid value {text!r}") from None
