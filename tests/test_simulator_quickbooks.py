"""The fake QuickBooks, without HTTP: hand it a qbXML document, read its answer.

Each test is also an example of driving :class:`FakeQuickBooks` directly:
open a session, send documents built with ``element``/``request_document``,
read the ``…Rs`` back with ``read_responses``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from qwc_service.simulator import (
    WRITE_REQUESTS,
    FakeQuickBooks,
    Faults,
    HresultFault,
    OpenError,
    OpenFault,
    QuickBooksProfile,
    QuickBooksSession,
    Response,
    SlowFault,
    StatusFault,
    UnknownScenario,
    build_scenario,
    element,
    read_responses,
    request_document,
)
from qwc_service.simulator.documents import Fields
from qwc_service.simulator.scenarios import SCENARIOS, seed_invoices

SAMPLES = Path(__file__).parent / "samples"
CENTRAL = timezone(timedelta(hours=-5))
# The TimeCreated of the CustomerAddRs sample. IDs and edit sequences end in
# the Unix time of the clock.
SAMPLE_MOMENT = datetime(2014, 7, 19, 7, 21, 56, tzinfo=CENTRAL)
STAMP = str(int(SAMPLE_MOMENT.timestamp()))
GUID = re.compile(r"^\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$")


def rq(name: str, fields: Fields | None = None, request_id: str = "1", **attributes: str) -> etree._Element:
    """A ``<{name}Rq requestID=…>`` element."""
    return element(f"{name}Rq", fields, requestID=request_id, **attributes)


def ask(session: QuickBooksSession, *requests: etree._Element, on_error: str = "stopOnError") -> list[Response]:
    """Process one document that QuickBooks must accept; return its ``…Rs`` in order."""
    result = session.process_request(request_document(*requests, on_error=on_error))
    assert result.ok, result
    assert result.response.startswith('<?xml version="1.0" ?><QBXML><QBXMLMsgsRs>')
    return read_responses(result.response)


def text(response: Response, path: str, index: int = 0) -> str | None:
    return response.records[index].findtext(path)


@pytest.fixture
def quickbooks() -> FakeQuickBooks:
    qb = FakeQuickBooks(clock=lambda: SAMPLE_MOMENT)
    qb.company.add("Customer", {"Name": "Acme"})
    qb.company.add("Customer", {"Name": "Globex", "IsActive": "false"})
    qb.company.add("ItemService", {"Name": "Consulting"})
    return qb


@pytest.fixture
def session(quickbooks: FakeQuickBooks) -> Iterator[QuickBooksSession]:
    with quickbooks.begin_session() as session:
        yield session


# --- Add ------------------------------------------------------------------


def test_add_answers_with_the_new_record_shaped_like_quickbooks(
    quickbooks: FakeQuickBooks, session: QuickBooksSession
) -> None:
    [rs] = ask(session, rq("CustomerAdd", {"CustomerAdd": {"Name": "Joe & Sons", "CompanyName": "Joe's"}}, "42"))

    assert (rs.type, rs.request_id, rs.status_code, rs.status_severity, rs.status_message) == (
        "CustomerAddRs", "42", 0, "Info", "Status OK",
    )  # fmt: skip
    assert rs.records[0].tag == "CustomerRet"
    list_id = text(rs, "ListID") or ""
    assert re.fullmatch(rf"8000000[0-9A-F]-{STAMP}", list_id)
    assert text(rs, "TimeCreated") == text(rs, "TimeModified") == "2014-07-19T07:21:56-05:00"
    assert text(rs, "EditSequence") == STAMP
    assert [text(rs, tag) for tag in ("Name", "FullName", "IsActive", "Sublevel", "CompanyName")] == [
        "Joe & Sons", "Joe & Sons", "true", "0", "Joe's",
    ]  # fmt: skip
    stored = quickbooks.company.get(list_id)
    assert stored is not None and stored.findtext("Name") == "Joe & Sons"


def test_add_with_a_name_already_in_the_name_list_answers_3100(session: QuickBooksSession) -> None:
    # Customers and vendors share QuickBooks' name list, and names ignore case.
    [customer] = ask(session, rq("CustomerAdd", {"CustomerAdd": {"Name": "ACME"}}))
    [vendor] = ask(session, rq("VendorAdd", {"VendorAdd": {"Name": "acme"}}))
    [item] = ask(session, rq("ItemNonInventoryAdd", {"ItemNonInventoryAdd": {"Name": "Acme"}}))

    assert (customer.status_code, customer.status_severity) == (3100, "Error")
    assert customer.status_message == 'The name "ACME" of the list element is already in use.'
    assert customer.records == ()
    assert vendor.status_code == 3100
    assert item.status_code == 0  # items have a list of their own


def test_invoice_for_a_missing_customer_answers_3140(quickbooks: FakeQuickBooks, session: QuickBooksSession) -> None:
    [rs] = ask(session, rq("InvoiceAdd", {"InvoiceAdd": {"CustomerRef": {"FullName": "Nobody Inc"}}}))

    assert (rs.status_code, rs.status_severity) == (3140, "Error")
    assert rs.status_message.startswith(
        'There is an invalid reference to QuickBooks Customer "Nobody Inc" in the Invoice.'
    )
    assert quickbooks.company.records("Invoice") == []


def test_invoice_resolves_references_and_computes_totals(session: QuickBooksSession) -> None:
    lines = [
        {"ItemRef": {"FullName": "consulting"}, "Quantity": "3", "Rate": "150.00"},
        {"Desc": "Travel", "Amount": "42.50"},
    ]
    [rs] = ask(
        session,
        rq(
            "InvoiceAdd",
            {"InvoiceAdd": {"CustomerRef": {"FullName": "Acme"}, "RefNumber": "1001", "InvoiceLineAdd": lines}},
        ),
    )

    invoice = rs.records[0]
    assert re.fullmatch(rf"[0-9A-F]+-{STAMP}", invoice.findtext("TxnID") or "")
    assert invoice.findtext("TxnNumber") == "1"
    assert invoice.findtext("CustomerRef/FullName") == "Acme"
    assert (invoice.findtext("CustomerRef/ListID") or "").startswith("8000000")
    assert invoice.findtext("TxnDate") == "2014-07-19"
    assert [line.findtext("Amount") for line in invoice.iterfind("InvoiceLineRet")] == ["450.00", "42.50"]
    assert [line.findtext("ItemRef/FullName") for line in invoice.iterfind("InvoiceLineRet")] == ["Consulting", None]
    assert (invoice.findtext("Subtotal"), invoice.findtext("BalanceRemaining"), invoice.findtext("IsPaid")) == (
        "492.50", "492.50", "false",
    )  # fmt: skip


def test_payment_applied_to_an_invoice_lowers_its_balance(session: QuickBooksSession) -> None:
    line = {"Desc": "Work", "Amount": "100.00"}
    [invoice] = ask(
        session, rq("InvoiceAdd", {"InvoiceAdd": {"CustomerRef": {"FullName": "Acme"}, "InvoiceLineAdd": line}})
    )
    txn_id = text(invoice, "TxnID") or ""

    too_much = {"CustomerRef": {"FullName": "Acme"}, "TotalAmount": "150.00",
                "AppliedToTxnAdd": {"TxnID": txn_id, "PaymentAmount": "150.00"}}  # fmt: skip
    [refused] = ask(session, rq("ReceivePaymentAdd", {"ReceivePaymentAdd": too_much}))
    paid = {"CustomerRef": {"FullName": "Acme"}, "TotalAmount": "100.00",
            "AppliedToTxnAdd": {"TxnID": txn_id, "PaymentAmount": "100.00"}}  # fmt: skip
    [payment] = ask(session, rq("ReceivePaymentAdd", {"ReceivePaymentAdd": paid}))
    [after] = ask(session, rq("InvoiceQuery", {"TxnID": txn_id}))

    assert refused.status_code == 3210
    assert "You cannot pay more than the amount due." in refused.status_message
    assert payment.status_code == 0
    assert text(payment, "AppliedToTxnRet/TxnID") == txn_id
    assert text(payment, "UnusedPayment") == "0.00"
    assert (text(after, "BalanceRemaining"), text(after, "AppliedAmount"), text(after, "IsPaid")) == (
        "0.00", "-100.00", "true",
    )  # fmt: skip


def test_sub_customer_full_names_follow_their_parent(session: QuickBooksSession) -> None:
    [job] = ask(session, rq("CustomerAdd", {"CustomerAdd": {"Name": "Website", "ParentRef": {"FullName": "Acme"}}}))
    [acme] = ask(session, rq("CustomerQuery", {"FullName": "Acme"}))
    rename = {
        "ListID": text(acme, "ListID") or "",
        "EditSequence": text(acme, "EditSequence") or "",
        "Name": "Acme Corp",
    }
    ask(session, rq("CustomerMod", {"CustomerMod": rename}))
    [renamed_job] = ask(session, rq("CustomerQuery", {"ListID": text(job, "ListID") or ""}))

    assert (text(job, "FullName"), text(job, "Sublevel")) == ("Acme:Website", "1")
    assert text(renamed_job, "FullName") == "Acme Corp:Website"
    assert text(renamed_job, "ParentRef/FullName") == "Acme Corp"


# --- Mod ------------------------------------------------------------------


def test_mod_needs_the_current_edit_sequence(quickbooks: FakeQuickBooks, session: QuickBooksSession) -> None:
    [acme] = ask(session, rq("CustomerQuery", {"FullName": "Acme"}))
    list_id, sequence = text(acme, "ListID") or "", text(acme, "EditSequence") or ""

    [changed] = ask(
        session, rq("CustomerMod", {"CustomerMod": {"ListID": list_id, "EditSequence": sequence, "Phone": "555-0100"}})
    )
    [stale] = ask(
        session, rq("CustomerMod", {"CustomerMod": {"ListID": list_id, "EditSequence": sequence, "Phone": "555-0199"}})
    )

    assert changed.status_code == 0
    assert text(changed, "Phone") == "555-0100"
    assert int(text(changed, "EditSequence") or 0) > int(sequence)
    assert (stale.status_code, stale.status_severity) == (3200, "Error")
    assert stale.status_message == f'The provided edit sequence "{sequence}" is out-of-date.'
    stored = quickbooks.company.get(list_id)
    assert stored is not None and stored.findtext("Phone") == "555-0100"


def test_mod_of_an_unknown_record_answers_3120(session: QuickBooksSession) -> None:
    [rs] = ask(session, rq("CustomerMod", {"CustomerMod": {"ListID": "80000099-1405768916", "EditSequence": "1"}}))

    assert rs.status_code == 3120
    assert rs.status_message.startswith('Object "80000099-1405768916" specified in the request cannot be found.')


# --- Query ----------------------------------------------------------------


def test_queries_filter_by_id_name_and_status(session: QuickBooksSession) -> None:
    [acme] = ask(session, rq("CustomerQuery", {"FullName": "acme"}))
    acme_id = text(acme, "ListID") or ""
    responses = ask(
        session,
        rq("CustomerQuery", {"ListID": acme_id}, "by-id"),
        rq("CustomerQuery", {}, "active"),
        rq("CustomerQuery", {"ActiveStatus": "All"}, "all"),
        rq(
            "CustomerQuery",
            {"NameFilter": {"MatchCriterion": "Contains", "Name": "lob"}, "ActiveStatus": "All"},
            "name",
        ),
        rq("CustomerQuery", {"MaxReturned": "1", "ActiveStatus": "All"}, "max"),
    )

    names = {rs.request_id: [r.findtext("Name") for r in rs.records] for rs in responses}
    assert names == {
        "by-id": ["Acme"],
        "active": ["Acme"],  # ActiveOnly is QuickBooks' default
        "all": ["Acme", "Globex"],
        "name": ["Globex"],
        "max": ["Acme"],
    }


def test_missing_records_answer_like_quickbooks_does(session: QuickBooksSession) -> None:
    by_id, by_name, nothing = ask(
        session,
        rq("CustomerQuery", {"ListID": "8000001B-1405768916"}, "1"),
        rq("CustomerQuery", {"FullName": "bleech"}, "2"),
        rq("CustomerQuery", {"NameFilter": {"MatchCriterion": "StartsWith", "Name": "zz"}}, "3"),
        on_error="continueOnError",
    )

    # The shapes of samples/…statusCode3120_Error… and …statusCode500_Warn…
    assert (by_id.status_code, by_id.status_severity) == (3120, "Error")
    assert (by_name.status_code, by_name.status_severity) == (500, "Warn")
    assert '("bleech")' in by_name.status_message
    assert (nothing.status_code, nothing.status_severity, nothing.records) == (1, "Info", ())
    assert nothing.status_message == "A query request did not find a matching object in QuickBooks"


def test_an_iterator_pages_through_results_then_expires(quickbooks: FakeQuickBooks, session: QuickBooksSession) -> None:
    seed_invoices(quickbooks.company, 25)
    [first] = ask(session, rq("InvoiceQuery", {"MaxReturned": "10"}, iterator="Start"))
    iterator_id = first.iterator_id or ""
    [second] = ask(session, rq("InvoiceQuery", {"MaxReturned": "10"}, "2", iterator="Continue", iteratorID=iterator_id))
    [last] = ask(session, rq("InvoiceQuery", {"MaxReturned": "10"}, "3", iterator="Continue", iteratorID=iterator_id))
    [expired] = ask(
        session, rq("InvoiceQuery", {"MaxReturned": "10"}, "4", iterator="Continue", iteratorID=iterator_id)
    )

    assert GUID.match(iterator_id)
    assert [(rs.status_code, len(rs.records), rs.iterator_remaining_count) for rs in (first, second, last)] == [
        (0, 10, 15), (0, 10, 5), (0, 5, 0),
    ]  # fmt: skip
    assert second.iterator_id == last.iterator_id == iterator_id
    pages = [r.findtext("RefNumber") for rs in (first, second, last) for r in rs.records]
    assert pages == [str(n) for n in range(1001, 1026)]
    assert first.records[0].find("InvoiceLineRet") is None  # IncludeLineItems was not asked for
    assert (expired.status_code, expired.status_severity) == (3391, "Error")
    assert expired.status_message == f'The iteratorID "{iterator_id}" is not valid.'


def test_an_iterator_does_not_outlive_its_session(quickbooks: FakeQuickBooks) -> None:
    seed_invoices(quickbooks.company, 3)
    with quickbooks.begin_session() as first_session:
        [started] = ask(
            first_session, rq("InvoiceQuery", {"MaxReturned": "1", "IncludeLineItems": "true"}, iterator="Start")
        )
    with quickbooks.begin_session() as next_session:
        [continued] = ask(
            next_session, rq("InvoiceQuery", {}, iterator="Continue", iteratorID=started.iterator_id or "")
        )

    assert started.records[0].find("InvoiceLineRet") is not None
    assert started.iterator_remaining_count == 2
    assert continued.status_code == 3391


# --- onError --------------------------------------------------------------


def three_adds() -> list[etree._Element]:
    return [
        rq("CustomerAdd", {"CustomerAdd": {"Name": "First"}}, "1"),
        rq("CustomerAdd", {"CustomerAdd": {"Name": "Acme"}}, "2"),  # 3100: the name is taken
        rq("CustomerAdd", {"CustomerAdd": {"Name": "Third"}}, "3"),
    ]


def customer_names(quickbooks: FakeQuickBooks) -> list[str | None]:
    return [c.findtext("Name") for c in quickbooks.company.records("Customer")]


def test_stop_on_error_leaves_later_requests_unprocessed(
    quickbooks: FakeQuickBooks, session: QuickBooksSession
) -> None:
    responses = ask(session, *three_adds(), on_error="stopOnError")

    assert [(rs.request_id, rs.status_code) for rs in responses] == [("1", 0), ("2", 3100), ("3", 3231)]
    assert responses[2].status_message == "The request has not been processed."
    assert responses[2].status_severity == "Error"
    assert customer_names(quickbooks) == ["Acme", "First", "Globex"]


def test_continue_on_error_processes_everything(quickbooks: FakeQuickBooks, session: QuickBooksSession) -> None:
    responses = ask(session, *three_adds(), on_error="continueOnError")

    assert [rs.status_code for rs in responses] == [0, 3100, 0]
    assert customer_names(quickbooks) == ["Acme", "First", "Globex", "Third"]


def test_rollback_on_error_undoes_the_documents_writes(quickbooks: FakeQuickBooks, session: QuickBooksSession) -> None:
    responses = ask(session, *three_adds(), on_error="rollbackOnError")

    assert [rs.status_code for rs in responses] == [0, 3100, 3231]
    assert customer_names(quickbooks) == ["Acme", "Globex"]


# --- documents QuickBooks refuses -------------------------------------------
# Written out by hand: lxml would refuse to write most of them.

REFUSED = [
    pytest.param("<QBXML><QBXMLMsgsRq", "0x80040400", id="not-well-formed"),
    pytest.param(
        '<QBXML><QBXMLMsgsRq onError="stopOnError"><CustomerQueryRq/></QBXMLMsgsRq></QBXML>',
        "0x80040400",
        id="no-qbxml-version",
    ),
    pytest.param(
        '<?qbxml version="13.0"?><QBXML><QBXMLMsgsRq onError="sometimes"><CustomerQueryRq/></QBXMLMsgsRq></QBXML>',
        "0x80040400",
        id="bad-onError",
    ),
    pytest.param(
        '<?qbxml version="13.0"?><QBXML><QBXMLMsgsRq onError="stopOnError"><CustomerAdd/></QBXMLMsgsRq></QBXML>',
        "0x80040400",
        id="not-a-request",
    ),
    pytest.param(
        '<?qbxml version="13.0"?><QBXML><QBXMLMsgsRq onError="stopOnError">'
        "<CustomerAddRq><CustomerAdd/></CustomerAddRq></QBXMLMsgsRq></QBXML>",
        "0x80040400",
        id="no-name",
    ),
    pytest.param(
        '<?qbxml version="13.0"?><QBXML><QBXMLMsgsRq onError="stopOnError">'
        "<CustomerQueryRq><MaxReturned>ten</MaxReturned></CustomerQueryRq></QBXMLMsgsRq></QBXML>",
        "0x80040400",
        id="bad-number",
    ),
    pytest.param(
        '<?qbxml version="13.0"?><QBXML><QBXMLMsgsRq onError="stopOnError">'
        "<CustomerAddRq><CustomerAdd><Name>Zoë ☃</Name></CustomerAdd></CustomerAddRq></QBXMLMsgsRq></QBXML>",
        "0x80040400",
        id="outside-iso-8859-1",
    ),
    pytest.param(
        '<?qbxml version="14.0"?><QBXML><QBXMLMsgsRq onError="stopOnError"><CustomerQueryRq/></QBXMLMsgsRq></QBXML>',
        "0x80040423",
        id="version-too-new",
    ),
]


@pytest.mark.parametrize(("document", "hresult"), REFUSED)
def test_documents_quickbooks_cannot_read_fail_process_request(
    quickbooks: FakeQuickBooks, session: QuickBooksSession, document: str, hresult: str
) -> None:
    result = session.process_request(document)

    assert (result.ok, result.response, result.hresult) == (False, "", hresult)
    if hresult == "0x80040400":
        assert result.message == "QuickBooks found an error when parsing the provided XML text stream."
    assert result.detail  # says what was wrong, for the report
    assert customer_names(quickbooks) == ["Acme", "Globex"]


def test_a_latin_1_name_is_fine(session: QuickBooksSession) -> None:
    [rs] = ask(session, rq("CustomerAdd", {"CustomerAdd": {"Name": "Zoë Café"}}))

    assert (rs.status_code, text(rs, "Name")) == (0, "Zoë Café")


def test_requests_the_fake_does_not_know_answer_3250(session: QuickBooksSession) -> None:
    bill, query = ask(
        session,
        rq("BillAdd", {"BillAdd": {"VendorRef": {"FullName": "X"}}}, "1"),
        rq("CustomerQuery", {}, "2"),
        on_error="continueOnError",
    )

    assert (bill.type, bill.status_code, bill.status_severity) == ("BillAddRs", 3250, "Error")
    assert bill.status_message == "This feature is not enabled or not available in this version of QuickBooks."
    assert query.status_code == 0


# --- fault injection ---------------------------------------------------------


def test_status_fault_refuses_the_first_write_only(quickbooks: FakeQuickBooks) -> None:
    faults = Faults(StatusFault(code=3260, request=WRITE_REQUESTS))
    with quickbooks.begin_session(faults=faults) as session:
        query, denied = ask(
            session, rq("CustomerQuery", {}, "1"), rq("CustomerAdd", {"CustomerAdd": {"Name": "New"}}, "2")
        )
        [again] = ask(session, rq("CustomerAdd", {"CustomerAdd": {"Name": "New"}}, "3"))

    assert query.status_code == 0
    assert (denied.request_id, denied.status_code, denied.status_severity) == ("2", 3260, "Error")
    assert denied.status_message == "Insufficient permission level to perform this action."
    assert denied.records == ()
    assert again.status_code == 0  # times=1: the fault has fired
    assert customer_names(quickbooks) == ["Acme", "Globex", "New"]


def test_status_fault_on_a_given_call_with_custom_text(quickbooks: FakeQuickBooks) -> None:
    faults = Faults(StatusFault(code=3171, request="InvoiceAdd", call=2, message="Closed period."))
    invoice = rq("InvoiceAdd", {"InvoiceAdd": {"CustomerRef": {"FullName": "Acme"}}})
    with quickbooks.begin_session(faults=faults) as session:
        first = ask(session, invoice)[0]
        second = ask(session, invoice)[0]
        third = ask(session, invoice)[0]

    assert [first.status_code, second.status_code, third.status_code] == [0, 3171, 0]
    assert second.status_message == "Closed period."


def test_hresult_fault_empties_the_response(quickbooks: FakeQuickBooks) -> None:
    faults = Faults(HresultFault(hresult="0x80040402", request="CustomerAdd"))
    with quickbooks.begin_session(faults=faults) as session:
        result = session.process_request(request_document(rq("CustomerAdd", {"CustomerAdd": {"Name": "Lost"}})))

    assert (result.response, result.hresult) == ("", "0x80040402")
    assert result.message == "Unexpected error. Check the qbsdklog.txt file for possible, additional information."
    assert customer_names(quickbooks) == ["Acme", "Globex"]


def test_slow_fault_sleeps_before_answering() -> None:
    slept: list[float] = []
    quickbooks = FakeQuickBooks(sleep=slept.append)
    with quickbooks.begin_session(faults=Faults(SlowFault(seconds=30.0, request="*Query"))) as session:
        ask(session, rq("CustomerAdd", {"CustomerAdd": {"Name": "A"}}))
        ask(session, rq("CustomerQuery"))
        ask(session, rq("CustomerQuery"))

    assert slept == [30.0]


def test_open_fault_keeps_quickbooks_closed_the_given_number_of_times(quickbooks: FakeQuickBooks) -> None:
    faults = Faults(OpenFault(hresult="0x80040408", times=2))
    failures = []
    for _ in range(2):
        with pytest.raises(OpenError) as failure:
            quickbooks.begin_session(faults=faults)
        failures.append((failure.value.hresult, failure.value.message))
    session = quickbooks.begin_session(r"C:\Other.qbw", faults=faults)

    assert failures == [("0x80040408", "Could not start QuickBooks.")] * 2
    assert session.company_file == r"C:\Other.qbw"


def test_a_session_cannot_be_used_after_it_ended(quickbooks: FakeQuickBooks) -> None:
    with quickbooks.begin_session() as session:
        pass

    with pytest.raises(RuntimeError):
        session.process_request(request_document(rq("CustomerQuery")))


# --- the first-call response --------------------------------------------------


def test_first_call_response_reports_every_configured_fact() -> None:
    profile = QuickBooksProfile(
        product_name="QuickBooks Enterprise Solutions 23.0",
        major_version=33,
        minor_version=2,
        supported_qbxml_versions=("12.0", "13.0", "16.0"),
        file_mode="MultiUser",
        is_automatic_login=True,
        company_name="Widgets & Co",
        owner_id="{57F3B9B1-86F1-4fcc-B1EE-566DE1813D20}",
        file_id="{90A44FB5-33D9-4815-AC85-BC87A7E7D1EB}",
        is_automatic_login_allowed=True,
        automatic_login_user_name="sync-user",
        is_personal_data_access_allowed=True,
    )
    root = etree.fromstring(FakeQuickBooks(profile).first_call_response().encode())

    host = root.find("QBXMLMsgsRs/HostQueryRs/HostRet")
    company = root.find("QBXMLMsgsRs/CompanyQueryRs/CompanyRet")
    rights = root.find("QBXMLMsgsRs/PreferencesQueryRs/PreferencesRet/CurrentAppAccessRights")
    assert host is not None and company is not None and rights is not None
    assert [(rs.tag, rs.get("requestID"), rs.get("statusCode")) for rs in root.find("QBXMLMsgsRs")] == [
        ("HostQueryRs", "0", "0"), ("CompanyQueryRs", "1", "0"), ("PreferencesQueryRs", "2", "0"),
    ]  # fmt: skip
    facts = ("ProductName", "MajorVersion", "MinorVersion", "IsAutomaticLogin", "QBFileMode")
    assert [host.findtext(fact) for fact in facts] == [
        "QuickBooks Enterprise Solutions 23.0",
        "33",
        "2",
        "true",
        "MultiUser",
    ]
    assert [v.text for v in host.iterfind("SupportedQBXMLVersion")] == ["12.0", "13.0", "16.0"]
    assert company.findtext("CompanyName") == "Widgets & Co"
    [file_id] = [d for d in company.iterfind("DataExtRet") if d.findtext("DataExtName") == "FileID"]
    assert file_id.findtext("OwnerID") == "{57F3B9B1-86F1-4fcc-B1EE-566DE1813D20}"
    assert file_id.findtext("DataExtValue") == "{90A44FB5-33D9-4815-AC85-BC87A7E7D1EB}"
    assert [(c.tag, c.text) for c in rights] == [
        ("IsAutomaticLoginAllowed", "true"),
        ("AutomaticLoginUserName", "sync-user"),
        ("IsPersonalDataAccessAllowed", "true"),
    ]
    assert FakeQuickBooks(profile).profile.qbxml_version == (16, 0)


def test_first_call_response_has_the_shape_of_real_quickbooks_output() -> None:
    sample = etree.fromstring(
        (SAMPLES / "qbxml_strHCPResponse_QuickBooksPro2014_qbxml13_qbwc-gem-fixture.xml").read_bytes()
    )
    ours = etree.fromstring(FakeQuickBooks().first_call_response().encode())

    def tags(root: etree._Element, path: str) -> list[str]:
        return [child.tag for child in root.find(path)]

    # Same Host and Preferences layout; no FileID without an OwnerID; no login user unless set.
    assert tags(ours, "QBXMLMsgsRs/HostQueryRs/HostRet") == tags(sample, "QBXMLMsgsRs/HostQueryRs/HostRet")
    assert tags(ours, "QBXMLMsgsRs/PreferencesQueryRs/PreferencesRet") == tags(
        sample, "QBXMLMsgsRs/PreferencesQueryRs/PreferencesRet"
    )
    assert ours.find("QBXMLMsgsRs/CompanyQueryRs/CompanyRet/DataExtRet") is None
    rights = ours.find("QBXMLMsgsRs/PreferencesQueryRs/PreferencesRet/CurrentAppAccessRights")
    assert rights is not None
    assert [c.tag for c in rights] == ["IsAutomaticLoginAllowed", "IsPersonalDataAccessAllowed"]


def test_host_queries_can_also_be_sent_as_requests(session: QuickBooksSession) -> None:
    host, preferences = ask(session, rq("HostQuery", {}, "h"), rq("PreferencesQuery", {}, "p"))

    assert text(host, "ProductName") == "QuickBooks Pro 2014"
    assert text(preferences, "CurrentAppAccessRights/IsAutomaticLoginAllowed") == "false"


# --- scenarios ----------------------------------------------------------------


def test_every_scenario_builds_a_working_company_file() -> None:
    for name in SCENARIOS:
        quickbooks, faults = build_scenario(name)
        assert [c.findtext("FullName") for c in quickbooks.company.records("Customer")] == [
            "Acme Corporation", "Acme Corporation:Website", "Globex Corporation", "Initech",
        ]  # fmt: skip
        assert isinstance(faults, Faults)


def test_unknown_scenarios_name_the_known_ones() -> None:
    with pytest.raises(UnknownScenario, match="permission-denied"):
        build_scenario("sunny")


def test_permission_denied_scenario_refuses_the_first_write() -> None:
    quickbooks, faults = build_scenario("permission-denied")
    with quickbooks.begin_session(faults=faults) as session:
        [query] = ask(session, rq("CustomerQuery"))
        [add] = ask(session, rq("CustomerAdd", {"CustomerAdd": {"Name": "New"}}))

    assert (query.status_code, add.status_code) == (0, 3260)


def test_wrong_login_user_scenario_reports_admin_logged_in_automatically() -> None:
    quickbooks, _ = build_scenario("wrong-login-user", profile=QuickBooksProfile(company_name="Mine"))
    root = etree.fromstring(quickbooks.first_call_response().encode())

    assert root.findtext("QBXMLMsgsRs/HostQueryRs/HostRet/IsAutomaticLogin") == "true"
    assert root.findtext(".//CurrentAppAccessRights/AutomaticLoginUserName") == "Admin"
    assert root.findtext(".//CompanyRet/CompanyName") == "Mine"


def test_quickbooks_not_running_scenario_never_opens() -> None:
    quickbooks, faults = build_scenario("quickbooks-not-running")
    for _ in range(3):
        with pytest.raises(OpenError, match=re.escape("0x80040408: Could not start QuickBooks.")):
            quickbooks.begin_session(faults=faults)


def test_iterator_scenario_needs_several_pages() -> None:
    quickbooks, faults = build_scenario("iterator")
    with quickbooks.begin_session(faults=faults) as session:
        [page] = ask(session, rq("InvoiceQuery", {"MaxReturned": "10"}, iterator="Start"))

    assert (len(page.records), page.iterator_remaining_count) == (10, 15)
