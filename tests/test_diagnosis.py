"""The failure catalog and the messages built from it.

The catalog is checked against the reference CSVs under tests/reference (see SOURCES.md there);
messages are checked for the facts an operator needs (who, what, where, which menu), never as
whole-string snapshots, so wording can improve without rewriting tests.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from importlib.resources import files
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwc_service import diagnosis
from qwc_service.catalog import TextStatus, expand_request_names
from qwc_service.diagnosis import (
    SUMMARY_LIMIT,
    Category,
    Code,
    CodeKind,
    FailureContext,
    InvalidCode,
    ProductFamily,
    Severity,
    catalog_entries,
    diagnose,
    explain,
    lookup,
    parse_code,
    permission_areas,
    product_family,
    troubleshooting_markdown,
)

REFERENCE = Path(__file__).parent / "reference"
ENTERPRISE_MENU = "Company > Users > Set Up Users and Roles"
PRO_MENU = "Company > Set Up Users and Passwords > Set Up Users"
PERSONAL_DATA_OPTION = (
    "Allow this application to access personal data such as Social Security Numbers "
    "and customer credit card information"
)
CERT_ANSWER = "Yes, always; allow access even if QuickBooks is not running"


def reference_rows() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for name in ("status_codes.csv", "qbwc_codes.csv"):
        with open(REFERENCE / name, newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


ROWS = reference_rows()
ROW_IDS = [row["code"] for row in ROWS]


def context(**changes: object) -> FailureContext:
    base = FailureContext(
        connection_name="Shop sync",
        company_name="Acme Ltd",
        sync_user_name="shopsync",
        product_name="QuickBooks Enterprise Solutions 23.0",
        automatic_login_user_name="SyncBot",
        is_automatic_login=True,
        is_automatic_login_allowed=True,
        is_personal_data_access_allowed=False,
        company_file_path=r"C:\QB\Acme Ltd.qbw",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


PRO = context(product_name="QuickBooks Pro 2014")
ENTERPRISE = context()
UNKNOWN_PRODUCT = context(product_name="")


def step_lines(details: str) -> list[str]:
    return [line.strip() for line in details.splitlines() if re.match(r"\s+\d+\. ", line)]


# -- the catalog covers the reference ------------------------------------------------------------


def test_reference_has_the_codes_we_expect() -> None:
    # Guards the other tests: an empty or truncated copy of the CSVs would make them vacuous.
    codes = {row["code"] for row in ROWS}
    assert {"3260", "3261", "3171", "0x80040408", "0x80040430", "QBWC1012", "QBWC1048"} <= codes
    assert len(ROWS) > 100


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_every_reference_code_is_catalogued(row: dict[str, str]) -> None:
    entry = lookup(row["code"])
    assert entry.listed
    assert str(entry.code) == row["code"]  # the CSV spelling is the canonical one
    assert entry.code.kind is CodeKind(row["kind"])
    assert entry.category in set(Category)
    assert entry.official_message == row["official_message"]
    assert entry.reference_category == row["category"]
    assert entry.title.strip() and entry.summary.strip() and entry.explanation.strip()
    if row["code"] not in {"3260", "3261", "3171"}:  # those build their steps from the context
        assert entry.action and all(step.strip() for step in entry.action)


def test_catalog_lists_nothing_beyond_the_reference() -> None:
    # Codes without a source would be presented as facts; add them to the reference first.
    assert {str(e.code) for e in catalog_entries()} == {row["code"] for row in ROWS}


def test_unofficial_reference_texts_are_not_marked_official() -> None:
    for row in ROWS:
        if row["official_message"].startswith("["):
            assert lookup(row["code"]).text_status is not TextStatus.OFFICIAL, row["code"]


def test_shipped_permission_map_is_the_reference_copy() -> None:
    shipped = (files("qwc_service") / "data" / "op_permission_map.csv").read_bytes()
    assert shipped == (REFERENCE / "op_permission_map.csv").read_bytes()


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_every_code_gives_complete_messages(row: dict[str, str]) -> None:
    code = row["code"]
    for ctx in (FailureContext(), ENTERPRISE, PRO, context(is_automatic_login=False), context(is_automatic_login=None)):
        d = diagnose(code, "", "InvoiceAdd", ctx)
        assert d.code == code
        assert len(d.summary) <= SUMMARY_LIMIT
        assert "\n" not in d.summary
        assert code in d.summary[:40], d.summary  # the code is in the first sentence
        assert code in d.details
        assert "{" not in d.summary + d.details and "}" not in d.summary + d.details  # placeholders filled
        if d.severity is Severity.ERROR:
            assert step_lines(d.details), f"{code} has no steps"


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_summaries_stay_short_with_long_names(row: dict[str, str]) -> None:
    long = "X" * 120
    ctx = context(connection_name=long, company_name=long, automatic_login_user_name=long,
                  company_file_path="C:\\" + long + ".qbw", sync_user_name=long)
    d = diagnose(row["code"], "Q" * 500, "BillPaymentCreditCardAdd", ctx)
    assert len(d.summary) <= SUMMARY_LIMIT
    assert row["code"] in d.summary


# -- category decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "category", "retryable", "stops"),
    [
        ("3260", Category.PERMISSION, False, True),
        ("3261", Category.PERMISSION, False, True),
        ("3171", Category.PERMISSION, False, False),  # date-dependent: other jobs can still work
        ("3170", Category.TRANSIENT, True, False),
        ("3175", Category.TRANSIENT, True, False),
        ("3176", Category.TRANSIENT, True, False),
        ("3180", Category.TRANSIENT, True, False),
        ("3200", Category.TRANSIENT, True, False),
        ("3100", Category.DATA, False, False),
        ("3140", Category.DATA, False, False),
        ("0x80040400", Category.DATA, False, False),
        ("0x80040408", Category.CONNECTION, True, True),
        ("0x80040414", Category.CONNECTION, True, True),
        ("0x8004040A", Category.COMPANY_FILE, True, True),
        ("0x80040410", Category.COMPANY_FILE, True, True),
        ("0x8004041B", Category.COMPANY_FILE, True, True),
        ("0x80040422", Category.COMPANY_FILE, True, True),
        ("0x80040418", Category.PERMISSION, False, True),
        ("0x8004041A", Category.PERMISSION, False, True),
        ("0x8004041D", Category.PERMISSION, False, True),
        ("0x80040420", Category.PERMISSION, False, True),
        ("0x80040430", Category.PERMISSION, False, True),
        ("0x80040423", Category.VERSION, False, True),
        ("1030", Category.FEATURE, False, False),
        ("3250", Category.FEATURE, False, False),
        ("QBWC1012", Category.CONNECTION, True, True),
        ("QBWC1040", Category.CONNECTION, False, True),
    ],
)
def test_category_decisions(code: str, category: Category, retryable: bool, stops: bool) -> None:
    entry = lookup(code)
    assert (entry.category, entry.retryable, entry.stops_session) == (category, retryable, stops)


def test_category_rules_hold_across_the_catalog() -> None:
    for entry in catalog_entries():
        if entry.severity is not Severity.ERROR:
            assert not entry.stops_session, entry.code
            continue
        if entry.category in {Category.PERMISSION, Category.COMPANY_FILE, Category.CONNECTION}:
            assert entry.stops_session or str(entry.code) == "3171", entry.code
        if entry.category is Category.DATA:
            assert not entry.stops_session, entry.code
        if entry.category is Category.TRANSIENT:
            assert entry.retryable and not entry.stops_session, entry.code


def test_reference_permission_rows_stay_permission() -> None:
    for row in ROWS:
        if row["category"] == "permission":
            assert lookup(row["code"]).category is Category.PERMISSION, row["code"]


def test_qbxml_severities_follow_intuit_ranges() -> None:
    for entry in catalog_entries():
        if entry.code.kind is CodeKind.QBXML and entry.code.value < 500:
            assert entry.severity is Severity.INFO
        elif entry.code.kind is CodeKind.QBXML and entry.code.value < 600:
            assert entry.severity is Severity.WARNING
        elif entry.code.kind is CodeKind.QBXML and entry.code.value >= 1000:
            assert entry.severity is Severity.ERROR


# -- range fallbacks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "category", "severity", "stops", "label"),
    [
        (42, Category.DATA, Severity.INFO, False, "0-499"),
        (750, Category.DATA, Severity.WARNING, False, "500-999"),
        (1500, Category.INTERNAL, Severity.ERROR, False, "1000-1999"),
        (2500, Category.CONNECTION, Severity.ERROR, True, "2000-2999"),
        (3005, Category.DATA, Severity.ERROR, False, "3000-3099"),
        (3555, Category.DATA, Severity.ERROR, False, "3100-8999"),
        (9050, Category.INTERNAL, Severity.ERROR, False, "9000-9099"),
        (9150, Category.INTERNAL, Severity.ERROR, False, "9100-9199"),
        (12000, Category.INTERNAL, Severity.ERROR, False, "9200"),
        ("0x80040499", Category.CONNECTION, Severity.ERROR, True, "0x8004xxxx"),
        ("0x80070005", Category.INTERNAL, Severity.ERROR, True, "Windows"),
        ("0x00000001", Category.INTERNAL, Severity.INFO, False, "success"),
        ("QBWC1047", Category.CONNECTION, Severity.ERROR, True, "QBWC1000-QBWC1999"),
        ("QBWC5000", Category.INTERNAL, Severity.ERROR, True, "outside"),
    ],
)
def test_unlisted_codes_fall_back_to_their_range(
    code: object, category: Category, severity: Severity, stops: bool, label: str
) -> None:
    entry = lookup(code)  # type: ignore[arg-type]
    assert not entry.listed
    assert (entry.category, entry.severity, entry.stops_session) == (category, severity, stops)
    assert label in entry.range_label
    d = diagnose(code, "Something QuickBooks said", "CustomerAdd", ENTERPRISE)  # type: ignore[arg-type]
    assert d.listed is False
    assert str(entry.code) in d.summary and "not in our catalog" in d.details
    assert entry.range_label in d.details


def test_listed_code_inside_a_range_keeps_its_own_entry() -> None:
    # 0x80040408 lies in the 0x8004xxxx range, whose default would not be retryable.
    entry = lookup("0x80040408")
    assert entry.listed and entry.retryable and "0x8004xxxx" in entry.range_label


# -- code parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3260, "3260", " 3260 ", "+3260"])
def test_parse_qbxml(value: object) -> None:
    assert parse_code(value) == Code(CodeKind.QBXML, 3260)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    ["0x80040408", "0X80040408", "0x80040408 ", "80040408", "-2147220472", -2147220472, 2147746824,
     "2147746824", "&H80040408"],
)
def test_parse_hresult_forms(value: object) -> None:
    code = parse_code(value)  # type: ignore[arg-type]
    assert code == Code(CodeKind.HRESULT, 0x80040408)
    assert str(code) == "0x80040408"
    assert code.signed == -2147220472


def test_parse_hresult_canonical_case() -> None:
    assert str(parse_code("0x8004041a")) == "0x8004041A"
    assert lookup("8004041a").title == lookup("0x8004041A").title


@pytest.mark.parametrize("value", ["QBWC1012", "qbwc1012", "QBWC 1012", "QBWC-1012"])
def test_parse_qbwc(value: str) -> None:
    code = parse_code(value)
    assert code == Code(CodeKind.QBWC, 1012) and str(code) == "QBWC1012"


@pytest.mark.parametrize(
    "value", ["", "   ", "abc", "0x123456789", "-2147483649", 2**32, True, 3.5, None, "QBWC", "12ab", "0x"]
)
def test_parse_rejects_non_codes(value: object) -> None:
    with pytest.raises(InvalidCode):
        parse_code(value)  # type: ignore[arg-type]


@given(st.integers(min_value=0x80000000, max_value=0xFFFFFFFF))
def test_hresult_spellings_agree(value: int) -> None:
    signed = value - 2**32
    forms = [f"0x{value:08x}", f"0x{value:08X}", f"{value:08X}", signed, str(signed), value]
    assert {parse_code(form) for form in forms} == {Code(CodeKind.HRESULT, value)}  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=99999))
def test_every_qbxml_number_has_an_entry(value: int) -> None:
    entry = lookup(value)
    assert entry.code == Code(CodeKind.QBXML, value)
    assert entry.category in set(Category)


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=30), st.integers(), st.none()), st.text(max_size=300), st.text(max_size=40))
def test_diagnose_never_raises(code: object, message: str, request: str) -> None:
    d = diagnose(code, message, request, ENTERPRISE)  # type: ignore[arg-type]
    assert len(d.summary) <= SUMMARY_LIMIT
    assert "\n" not in d.summary
    assert d.category in set(Category)
    assert explain(code)  # type: ignore[arg-type]


def test_unreadable_code_stops_safely() -> None:
    d = diagnose("not-a-code", "Something broke", None, ENTERPRISE)
    assert d.kind is None and d.category is Category.INTERNAL and d.stops_session
    assert "not-a-code" in d.summary and "Something broke" in d.summary
    assert diagnose("", "").summary == "QuickBooks failed without an error code."


# -- product and context -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("QuickBooks Enterprise Solutions 23.0", ProductFamily.ENTERPRISE),
        ("QuickBooks Enterprise Solutions: Accountant 23.0", ProductFamily.ENTERPRISE),
        ("QuickBooks Pro 2014", ProductFamily.PRO_PREMIER),
        ("QuickBooks Premier Edition 2020", ProductFamily.PRO_PREMIER),
        ("QuickBooks Accountant Desktop 2022", ProductFamily.PRO_PREMIER),
        ("QuickBooks Simple Start 2010", ProductFamily.UNKNOWN),
        ("", ProductFamily.UNKNOWN),
        (None, ProductFamily.UNKNOWN),
    ],
)
def test_product_family(name: str | None, family: ProductFamily) -> None:
    assert product_family(name) is family


def test_context_from_host_facts() -> None:
    # The shape of qwc_service.qbxml.HostFacts.to_dict() for the QuickBooks Pro 2014 sample.
    facts = {
        "product_name": "QuickBooks Pro 2014", "major_version": "24", "supported_qbxml_versions": ["13.0"],
        "is_automatic_login": False, "file_mode": "SingleUser", "company_name": "myCompany",
        "file_id": "{00000ee-1111}", "automatic_login_user_name": "", "is_automatic_login_allowed": False,
        "is_personal_data_access_allowed": False,
    }
    ctx = FailureContext.from_host_facts(facts, connection_name="Main", company_file_path=" C:\\a.qbw ")
    assert ctx.family is ProductFamily.PRO_PREMIER
    assert ctx.company_name == "myCompany" and ctx.connection_name == "Main"
    assert ctx.company_file_path == "C:\\a.qbw"
    assert ctx.automatic_login_user_name is None  # empty means unknown
    assert ctx.is_automatic_login is False and ctx.file_mode == "SingleUser"
    assert FailureContext(is_automatic_login="true").is_automatic_login is True  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FailureContext.from_host_facts(facts, no_such_field=1)
    assert FailureContext.from_host_facts(None).family is ProductFamily.UNKNOWN


# -- the permission map --------------------------------------------------------------------------


def test_grouped_request_names_expand() -> None:
    assert expand_request_names("CustomerAdd/Mod, CustomerTypeAdd, JobTypeAdd") == {
        "CustomerAdd", "CustomerMod", "CustomerTypeAdd", "JobTypeAdd"}
    assert expand_request_names("InvoiceAdd / SalesReceiptAdd") == {"InvoiceAdd", "SalesReceiptAdd"}
    assert expand_request_names(
        "EmployeeAdd/Mod (incl. SSN), payroll items, PayrollSummary/DetailReport"
    ) == {"EmployeeAdd", "EmployeeMod", "PayrollSummaryReportQuery", "PayrollDetailReportQuery"}
    assert expand_request_names("GeneralSummaryReportQuery (Trial Balance, P&L, Balance Sheet), TransferAdd") == {
        "GeneralSummaryReportQuery", "TransferAdd"}
    assert expand_request_names("any *Mod on a transaction, TxnDel, TxnVoid") == {"TxnDel", "TxnVoid"}
    assert expand_request_names("any Add/Mod/Del dated on/before the closing date") == set()


@pytest.mark.parametrize(
    ("request_type", "basis", "pro", "enterprise"),
    [
        ("ARRefundCreditCardAdd", "listed", "Sales & AR / Checking & Credit Cards",
         "Customers & Receivables > Credit Card Refunds"),
        ("ARRefundCreditCardAddRq", "listed", "Sales & AR", "Credit Card Refunds"),
        ("CustomerMod", "listed", "Sales and Accounts Receivable", "Customer Center"),
        ("SalesOrderAdd", "listed", "Sales and Accounts Receivable", "Sales Orders"),
        ("PayrollDetailReportQuery", "listed", "Payroll and Employees", "Employees & Payroll"),
        ("InvoiceMod", "change", "Changing or Deleting Transactions", "Modify/Delete"),
        ("CheckMod", "change", "Checking and Credit Cards", "Banking > Checks"),
        ("TxnDel", "listed", "Changing or Deleting Transactions", "Modify/Delete"),
        ("InvoiceQuery", "view", "Sales and Accounts Receivable", "View access"),
        ("CustomDetailReportQuery", "report", "report rights", "Reports >"),
    ],
)
def test_permission_areas(request_type: str, basis: str, pro: str, enterprise: str) -> None:
    advice = permission_areas(request_type)
    assert advice.basis == basis
    assert any(pro in line for line in advice.pro_premier), advice.pro_premier
    assert any(enterprise in line for line in advice.enterprise), advice.enterprise
    assert advice.inferred  # every such row of the map is inferred


def test_permission_areas_unknown_request() -> None:
    advice = permission_areas("ItemInventoryAdd")
    assert not advice.known and advice.pro_premier == () and advice.enterprise == ()


# -- permission-denied messages ------------------------------------------------------------------


def test_3260_enterprise_unattended_login() -> None:
    d = diagnose(3260, "Insufficient permission level to perform this action.", "ARRefundCreditCardAdd", ENTERPRISE)
    assert d.category is Category.PERMISSION and d.stops_session and not d.retryable
    # summary: code, user, request, company, the grant
    assert d.summary.startswith("QuickBooks error 3260:")
    for fact in ('"SyncBot"', "ARRefundCreditCardAdd", '"Acme Ltd"', "Admin"):
        assert fact in d.summary
    assert len(d.summary) <= SUMMARY_LIMIT
    # details: connection, company, whose rights, the request, the area, the menu, the advice
    for fact in ('"Shop sync"', '"Acme Ltd"', 'QuickBooks user "SyncBot"', '"Login as"', "unattended",
                 "ARRefundCreditCardAdd", "Customers & Receivables > Credit Card Refunds", "probably",
                 ENTERPRISE_MENU, "single-user mode", "credit card refunds for example", "Admin-level rights",
                 "that is expected"):
        assert fact in d.details, fact
    assert PRO_MENU not in d.details
    assert "Sales & AR / Checking & Credit Cards" not in d.details  # the Pro area is not offered
    assert d.permission is not None and d.permission.request_type == "ARRefundCreditCardAdd"
    steps = step_lines(d.details)
    assert "Admin" in steps[0] and "single-user mode" in steps[0]
    assert ENTERPRISE_MENU in steps[1] and '"SyncBot"' in steps[1]
    note = next(line for line in d.details.splitlines() if line.startswith("Note:"))
    assert "Admin" in note and "expected" in note and '"SyncBot"' in note


def test_3260_pro_with_keyboard_user() -> None:
    ctx = context(product_name="QuickBooks Pro 2014", is_automatic_login=False)
    d = diagnose("3260", "", "InvoiceAdd", ctx)
    assert PRO_MENU in d.details and ENTERPRISE_MENU not in d.details
    assert "Sales and Accounts Receivable" in d.details
    assert "Customers & Receivables > Invoices" not in d.details
    assert "logged in at the keyboard" in d.details and "do not know the name" in d.details
    assert "the user logged in to QuickBooks" in d.summary and "SyncBot" not in d.summary
    # The Login-as user is named only as what would apply when QuickBooks is closed.
    assert 'logs in as the "Login as" user "SyncBot" instead' in d.details
    edit_step = next(step for step in step_lines(d.details) if PRO_MENU in step)
    assert "who was logged in" in edit_step and "SyncBot" not in edit_step
    assert "Selected areas of QuickBooks" in edit_step
    assert "that is expected" in d.details and "single-user mode" in d.details
    assert "Unattended login is not allowed" not in d.details
    no_auto = diagnose("3260", "", "InvoiceAdd", dataclasses.replace(ctx, is_automatic_login_allowed=False))
    assert "Unattended login is not allowed" in no_auto.details


def test_3260_unattended_login_without_a_name() -> None:
    d = diagnose(3260, "", "CheckAdd", context(automatic_login_user_name=None, product_name="QuickBooks Premier 2020"))
    assert "did not report that user's name" in d.details
    assert "Checking and Credit Cards" in d.details and PRO_MENU in d.details


def test_3260_unknown_product_gives_both_menus_and_areas() -> None:
    d = diagnose(3260, "", "ARRefundCreditCardAdd", UNKNOWN_PRODUCT)
    assert ENTERPRISE_MENU in d.details and PRO_MENU in d.details
    assert "Customers & Receivables > Credit Card Refunds" in d.details
    assert "Sales & AR / Checking & Credit Cards" in d.details


def test_3260_unknown_login_mode_covers_both_users() -> None:
    d = diagnose(3260, "", "InvoiceAdd", context(is_automatic_login=None))
    assert "If QuickBooks was closed" in d.details and "already open" in d.details and '"SyncBot"' in d.details


def test_3260_transaction_change_needs_both_areas() -> None:
    d = diagnose(3260, "", "InvoiceMod", PRO)
    assert "Sales and Accounts Receivable" in d.details and "Changing or Deleting Transactions" in d.details


def test_3260_request_without_map_entry_falls_back() -> None:
    d = diagnose(3260, "", "ItemInventoryAdd", ENTERPRISE)
    assert "permission map has no entry for ItemInventoryAdd" in d.details
    assert "by hand" in d.details and ENTERPRISE_MENU in d.details


def test_3260_without_request_type() -> None:
    d = diagnose(3260, "", None, ENTERPRISE)
    assert "the failed request is not known" in d.details
    assert "3260" in d.summary and len(d.summary) <= SUMMARY_LIMIT


def test_unlisted_code_with_permission_message_is_explained_like_3260() -> None:
    d = diagnose(3999, "Insufficient permission level to perform this action.", "CustomerAdd", ENTERPRISE)
    assert d.category is Category.PERMISSION and d.stops_session and not d.listed
    assert "3999" in d.summary and "3260" not in d.summary
    assert ENTERPRISE_MENU in d.details and "explained like 3260" in d.details


def test_3261_personal_data() -> None:
    d = diagnose(3261, "", "ARRefundCreditCardAdd", ENTERPRISE)
    assert d.category is Category.PERMISSION and "3261" in d.summary
    for fact in ("Edit > Preferences > Integrated Applications > Company Preferences", "Properties",
                 PERSONAL_DATA_OPTION, "not allowed to access personal data", '"Shop sync"', "single-user mode"):
        assert fact in d.details, fact
    allowed = diagnose(3261, "", "EmployeeAdd", context(is_personal_data_access_allowed=True)).details
    assert "personal-data access is allowed" in allowed and "lacks the rights" in allowed


def test_3171_closing_date() -> None:
    msg = "An attempt was made to modify a Invoice with a date that is on or before the closing date of the company."
    d = diagnose(3171, msg, "InvoiceMod", ENTERPRISE)
    assert d.category is Category.PERMISSION and not d.retryable
    assert "closing date" in d.summary and "InvoiceMod" in d.summary
    for fact in ("Edit > Preferences > Accounting > Company Preferences > Closing Date", "password",
                 "Accounting > Edit Closed Transactions", ENTERPRISE_MENU, "accountant", 'QuickBooks user "SyncBot"'):
        assert fact in d.details, fact
    pro = diagnose(3171, msg, "InvoiceMod", PRO).details
    assert "Changing or Deleting Transactions" in pro and PRO_MENU in pro


@pytest.mark.parametrize("code", ["0x80040418", "0x8004041A", "0x80040420"])
def test_first_access_family(code: str) -> None:
    d = diagnose(code, "", None, ENTERPRISE)
    assert d.category is Category.PERMISSION and d.stops_session
    assert code in d.summary and "Admin" in d.details and "single-user mode" in d.details
    assert "Integrated Applications" in d.details or CERT_ANSWER in d.details
    assert "Login as" in d.details


def test_0x80040418_first_access_steps() -> None:
    d = diagnose("0x80040418", "", None, ENTERPRISE)
    steps = step_lines(d.details)
    assert any("Admin" in s and "single-user mode" in s and "Acme Ltd" in s for s in steps)
    assert any(CERT_ANSWER in s and '"Login as"' in s for s in steps)
    assert any("Web Connector" in s and "Update Selected" in s for s in steps)


def test_0x8004041D_automatic_login() -> None:
    d = diagnose("0x8004041d", "", None, ENTERPRISE)
    assert d.code == "0x8004041D"
    assert "Allow this application to login automatically" in d.details
    assert "Edit > Preferences > Integrated Applications" in d.details and '"Login as"' in d.details


def test_0x80040430_revoke_and_regrant() -> None:
    d = diagnose(-2147220432, "", None, ENTERPRISE)
    assert d.code == "0x80040430"
    steps = step_lines(d.details)
    assert any("untick" in s for s in steps) and any(s.startswith("3. Open it again, tick") for s in steps)
    assert '"SyncBot"' in d.details


def test_0x80040408_could_not_start_quickbooks() -> None:
    d = diagnose("-2147220472", "Could not start QuickBooks.", None, ENTERPRISE)
    assert d.code == "0x80040408" and d.category is Category.CONNECTION and d.stops_session
    for fact in ("No Company Open", "already open as another user", '"SyncBot"', "another computer",
                 r"C:\QB\Acme Ltd.qbw"):
        assert fact in d.details, fact


@pytest.mark.parametrize(
    ("code", "facts"),
    [
        ("0x8004040A", ["File > Close Company", r"C:\QB\Acme Ltd.qbw", "No Company Open"]),
        ("0x80040410", ["Switch to Multi-user Mode", r"C:\QB\Acme Ltd.qbw", "SingleUser"]),
        ("0x80040414", ["dialog", "taskbar"]),
        ("0x80040422", ["single-user", "other integrated applications"]),
        ("0x80040416", ["company file path", '"Shop sync"']),
        ("0x8004041B", ["lock", "Try again later"]),
    ],
)
def test_file_and_mode_messages(code: str, facts: list[str]) -> None:
    d = diagnose(code, "", None, context(file_mode="SingleUser"))
    for fact in facts:
        assert fact in d.details + d.summary, fact


# -- refinement by QuickBooks' message -----------------------------------------------------------


def test_3180_lock_is_transient_but_business_rule_is_data() -> None:
    lock = diagnose(3180, "There was an error when saving a Customer. QuickBooks error message: "
                          "This list has been modified by another user.", "CustomerAdd")
    assert lock.category is Category.TRANSIENT and lock.retryable
    rule = diagnose(3180, "There was an error when saving a Invoice. QuickBooks error message: "
                          "The credit limit for the name on this transaction has been exceeded.", "InvoiceAdd")
    assert rule.category is Category.DATA and not rule.retryable and not rule.stops_session
    assert diagnose(3180, "", "InvoiceAdd").category is Category.TRANSIENT


def test_data_error_summary_quotes_quickbooks() -> None:
    msg = 'The name "Bob Smith" of the list element is already in use.'
    d = diagnose(3100, msg, "CustomerAdd", ENTERPRISE)
    assert "Bob Smith" in d.summary and "(CustomerAdd)" in d.summary and len(d.summary) <= SUMMARY_LIMIT
    assert f'QuickBooks said: "{msg}"' in d.details


def test_as_dict_is_plain_json() -> None:
    import json

    data = json.loads(json.dumps(diagnose("0x80040408", "Could not start QuickBooks.", None, ENTERPRISE).as_dict()))
    assert data["code"] == "0x80040408" and data["category"] == "connection" and data["kind"] == "hresult"
    assert data["stops_session"] is True and data["summary"].startswith("QuickBooks error 0x80040408")


def test_warnings_do_not_fail_the_job() -> None:
    assert not diagnose(530, "", "CustomerAdd").fails_job
    assert "warning 530" in diagnose(530).summary
    assert diagnose(3100).fails_job


# -- explain and the troubleshooting page --------------------------------------------------------


def test_explain_known_codes() -> None:
    text = explain("3260")
    assert "Insufficient permission" in text and "Category: permission" in text
    assert "ARRefundCreditCardAdd" in text and "Customers & Receivables > Credit Card Refunds" in text
    hresult = explain("-2147220472")
    assert "0x80040408" in hresult and "Could not start QuickBooks" in hresult and "-2147220472" in hresult
    assert "QBWC1012" in explain("qbwc1012") and "authenticate" in explain("QBWC1012")


def test_explain_unknown_and_invalid() -> None:
    text = explain(3555)
    assert "Not in the catalog" in text and "3100-8999" in text
    assert "not a code" in explain("hello")
    assert "not a code" in explain(None)


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_explain_every_code(row: dict[str, str]) -> None:
    text = explain(row["code"])
    assert text.startswith(row["code"] + ":")
    assert f"Category: {lookup(row['code']).category}." in text


def test_troubleshooting_markdown() -> None:
    md = troubleshooting_markdown()
    headings = re.findall(r"^### (\S+):", md, flags=re.MULTILINE)
    assert sorted(headings) == sorted(row["code"] for row in ROWS)
    sections = re.findall(r"^## (.+)$", md, flags=re.MULTILINE)
    assert sections[0] == "Codes not listed here" and sections[1] == "Permission"
    assert set(sections[1:]) == {c.value.replace("-", " ").capitalize() for c in Category}
    # each code sits under its own category's heading
    current = ""
    for line in md.splitlines():
        if line.startswith("## "):
            current = line[3:]
        elif line.startswith("### "):
            code = line[4:].split(":")[0]
            assert current == lookup(code).category.value.replace("-", " ").capitalize(), code
    assert "| ARRefundCreditCardAdd |" in md
    assert "&lt;Invoice>" in md and "<Invoice>" not in md  # reference placeholders are escaped
    assert "Set Up Users and Roles" in md and "Set Up Users and Passwords" in md


def test_module_exports_exist() -> None:
    for name in diagnosis.__all__:
        assert hasattr(diagnosis, name), name


def test_the_committed_troubleshooting_guide_is_up_to_date() -> None:
    """docs/troubleshooting.md is generated: regenerate with `qwc-service explain --all > docs/troubleshooting.md`."""
    from pathlib import Path

    from qwc_service.cli import troubleshooting_guide

    committed = (Path(__file__).parent.parent / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    guide = troubleshooting_guide()
    assert committed == guide
    for code in ("3260", "3261", "3171", "0x80040408", "QBWC1012", "keyboard-user", "wrong-login-user",
                 "personal-data-off", "other-company-file", "multi-user"):
        assert code in guide
