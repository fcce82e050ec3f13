"""qbXML in and out: job validation, response statuses and first-call facts, on real samples."""

from __future__ import annotations

import pytest

from conftest import sample
from qwc_service import qbxml
from qwc_service.qbxml import HostFacts, QbxmlError


def test_fragments_are_wrapped_with_stop_on_error() -> None:
    prepared = qbxml.prepare_request("<CustomerAddRq><CustomerAdd><Name>A</Name></CustomerAdd></CustomerAddRq>\n"
                                     "<InvoiceQueryRq/>")
    assert prepared.request_types == ("CustomerAdd", "InvoiceQuery")
    assert prepared.on_error == "stopOnError" and prepared.is_write
    assert prepared.xml.startswith('<QBXML><QBXMLMsgsRq onError="stopOnError"><CustomerAddRq>')


def test_full_document_keeps_its_on_error_and_version() -> None:
    prepared = qbxml.prepare_request(
        '<?xml version="1.0" encoding="utf-8"?>\n<?qbxml version="13.0"?>\n'
        '<QBXML><QBXMLMsgsRq onError="continueOnError"><CustomerQueryRq requestID="1"/>'
        "<VendorQueryRq/></QBXMLMsgsRq></QBXML>"
    )
    assert (prepared.on_error, prepared.qbxml_version, prepared.is_write) == ("continueOnError", "13.0", False)


@pytest.mark.parametrize("request_type,write", [
    ("CustomerQuery", False), ("GeneralDetailReportQuery", False), ("CustomerAdd", True),
    ("InvoiceMod", True), ("TxnDel", True), ("TxnVoid", True), ("DataExtAdd", True), ("SomethingNew", True),
])
def test_anything_but_a_query_counts_as_a_write(request_type: str, write: bool) -> None:
    assert qbxml.is_write_request(request_type) is write


@pytest.mark.parametrize("text,fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("<CustomerQueryRq>", "not well-formed XML"),
    ("<QBXML><QBXMLMsgsRq><CustomerQueryRq/></QBXMLMsgsRq></QBXML>", "no onError"),
    ('<QBXML><QBXMLMsgsRq onError="ignore"><CustomerQueryRq/></QBXMLMsgsRq></QBXML>', "onError='ignore'"),
    ('<QBXML><QBXMLMsgsRq onError="stopOnError"><Customer/></QBXMLMsgsRq></QBXML>', "<Customer> (line 1)"),
    ('<QBXML><QBXMLMsgsRq onError="stopOnError"/></QBXML>', "no requests"),
    ("<QBXML><Other/></QBXML>", "exactly one <QBXMLMsgsRq>"),
    ("<Invoice/>", "is not a request"),
    ('<!DOCTYPE QBXML [<!ENTITY x "y">]><QBXML/>', "DTD"),
    ("hello <CustomerQueryRq/>", "outside its elements"),
    ('<?qbxml version="thirteen"?><QBXML/>', "not a version"),
])
def test_bad_jobs_are_refused_with_what_and_where(text: str, fragment: str) -> None:
    with pytest.raises(QbxmlError) as error:
        qbxml.prepare_request(text)
    assert fragment in str(error.value)


def test_line_numbers_point_at_the_problem() -> None:
    with pytest.raises(QbxmlError, match=r"line 3"):
        qbxml.prepare_request('<QBXML>\n<QBXMLMsgsRq onError="stopOnError">\n<Nope/>\n</QBXMLMsgsRq></QBXML>')


def test_render_puts_the_version_first_and_tags_every_request() -> None:
    xml = qbxml.prepare_request('<CustomerQueryRq requestID="mine"/><InvoiceAddRq/>').xml
    rendered = qbxml.render_request(xml, "12.0", job_id=42)
    assert rendered.splitlines()[0].startswith("<?xml")
    assert rendered.splitlines()[1].startswith('<?qbxml version="12.0"?>')
    assert '<CustomerQueryRq requestID="42.0"/><InvoiceAddRq requestID="42.1"/>' in rendered


def test_paging_a_query() -> None:
    xml = qbxml.start_iterator(qbxml.prepare_request("<InvoiceQueryRq><IncludeLineItems>true</IncludeLineItems>"
                                                     "</InvoiceQueryRq>").xml, 50)
    assert '<InvoiceQueryRq iterator="Start"><MaxReturned>50</MaxReturned><IncludeLineItems>' in xml
    continued = qbxml.render_request(xml, "13.0", job_id=7, iterator_id="{abc}")
    assert 'iterator="Continue"' in continued and 'iteratorID="{abc}"' in continued


def test_merging_pages_keeps_every_record_in_order() -> None:
    page = ('<QBXML><QBXMLMsgsRs><InvoiceQueryRs statusCode="0" statusSeverity="Info" statusMessage="ok" '
            'iteratorRemainingCount="{left}" iteratorID="{{i}}"><InvoiceRet><TxnID>{n}</TxnID></InvoiceRet>'
            "</InvoiceQueryRs></QBXMLMsgsRs></QBXML>")
    merged = qbxml.merge_pages([page.format(left=2, n=1), page.format(left=1, n=2), page.format(left=0, n=3)])
    (status,) = qbxml.read_statuses(merged)
    assert status.iterator_remaining == 0
    assert [t.text for t in qbxml.parse_document(merged).iter("TxnID")] == ["1", "2", "3"]


def test_text_outside_latin1_is_flagged() -> None:
    xml = qbxml.prepare_request("<CustomerAddRq><CustomerAdd><Name>Café ☕</Name></CustomerAdd></CustomerAddRq>").xml
    (warning,) = qbxml.unrepresentable_text(xml)
    assert "<Name>" in warning and "U+2615" in warning and "é" not in warning.split("characters")[1]


@pytest.mark.parametrize("name,code,severity", [
    ("qbxml_CustomerAddRs_statusCode0_qbwc-gem-fixture.xml", 0, "Info"),
    ("qbxml_CustomerQueryRs_statusCode3120_Error_qbwc-gem-fixture.xml", 3120, "Error"),
    ("qbxml_CustomerQueryRs_statusCode500_Warn_qbwc-gem-fixture.xml", 500, "Warn"),
])
def test_statuses_of_real_responses(name: str, code: int, severity: str) -> None:
    (status,) = qbxml.read_statuses(sample(name))
    assert (status.code, status.severity) == (code, severity)
    assert status.failed is (severity == "Error")
    assert status.message


def test_iterator_attributes_are_read() -> None:
    (status,) = qbxml.read_statuses(sample("qbxml_InvoiceQueryRs_iterator_response_consolibyte.xml"))
    assert status.request_type == "InvoiceQuery"
    assert status.iterator_id == "{6fcbb18b-68cf-4adb-bf40-164ac0bb4ec0}" and status.iterator_remaining == 0
    assert status.request_id.startswith("SW52b2ljZVF1ZXJ5")


def test_many_statuses_in_one_response() -> None:
    text = ('<QBXML><QBXMLMsgsRs><CustomerAddRs requestID="1" statusCode="0" statusSeverity="Info" statusMessage="ok">'
            "<CustomerRet><Name>x</Name></CustomerRet></CustomerAddRs>"
            '<InvoiceAddRs requestID="2" statusCode="3140" statusSeverity="Error" statusMessage="bad ref"/>'
            "</QBXMLMsgsRs></QBXML>")
    statuses = qbxml.read_statuses(text)
    assert [(s.request_id, s.code, s.failed) for s in statuses] == [("1", 0, False), ("2", 3140, True)]


@pytest.mark.parametrize("text", ["", "<QBXML>", "<Other/>", '<QBXML><QBXMLMsgsRs><XRs statusCode="abc"/></QBXMLMsgsRs></QBXML>',
                                  '<!DOCTYPE QBXML [<!ENTITY x "y">]><QBXML/>'])
def test_unreadable_responses_raise(text: str) -> None:
    with pytest.raises(QbxmlError):
        qbxml.read_statuses(text)


def test_host_facts_from_a_real_first_call() -> None:
    text = sample("qbxml_strHCPResponse_QuickBooksPro2014_qbxml13_qbwc-gem-fixture.xml")
    facts = qbxml.read_host_facts(text, owner_id="{512349b1-1111-2222-3333-000de1813d20}")
    assert facts.product_name == "QuickBooks Pro 2014"
    assert (facts.major_version, facts.country, facts.file_mode) == ("24", "US", "SingleUser")
    assert facts.highest_qbxml_version == "13.0"
    assert facts.company_name == "myCompany"
    assert facts.file_id == "{00000ee-1111-ffff-cccc-5ff123456047}"
    assert (facts.is_automatic_login, facts.is_automatic_login_allowed, facts.is_personal_data_access_allowed) == (
        False, False, False)
    assert HostFacts.from_dict(facts.to_dict()) == facts
    assert qbxml.read_host_facts(text, owner_id="{00000000-0000-0000-0000-000000000000}").file_id == ""


def test_version_choice_is_the_lowest_of_job_and_host() -> None:
    facts = HostFacts(supported_qbxml_versions=("1.0", "2.0", "13.0", "8.0"))
    assert qbxml.choose_version(None, facts, 13, 0) == "13.0"
    assert qbxml.choose_version("8.0", facts, 13, 0) == "8.0"
    assert qbxml.choose_version("16.0", facts, 13, 0) == "13.0"
    assert qbxml.version_exceeds("16.0", "13.0") and not qbxml.version_exceeds("13.0", "13.0")
    assert qbxml.choose_version(None, HostFacts(), 12, 1) == "12.1"


def test_fragment_errors_point_into_the_callers_text() -> None:
    with pytest.raises(QbxmlError, match=r"<CustomerQueryRq> \(line 1\) is never closed"):
        qbxml.prepare_request("<CustomerQueryRq>")
    with pytest.raises(QbxmlError, match=r"line 2") as error:
        qbxml.prepare_request("<CustomerQueryRq/>\n<InvoiceQueryRq><A></B></InvoiceQueryRq>")
    assert "QBXMLMsgsRq" not in str(error.value)


def test_latin1_text_has_no_warnings_and_character_references_are_still_read() -> None:
    latin1 = qbxml.prepare_request("<CustomerAddRq><Name>Café</Name></CustomerAddRq>").xml
    assert qbxml.unrepresentable_text(latin1) == []
    (warning,) = qbxml.unrepresentable_text('<QBXML><QBXMLMsgsRq onError="stopOnError"><A Rq="&#x2615;"/>'
                                            "</QBXMLMsgsRq></QBXML>")
    assert "attribute Rq" in warning and "U+2615" in warning
