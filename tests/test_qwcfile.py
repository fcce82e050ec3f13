""".qwc files from templates: what the Web Connector loads, and every file it would refuse.

The generated files are compared with Intuit's own samples (tests/samples),
parsed back with lxml, and regenerated to show the GUIDs never change. Each
refusal is checked for its reason and, where the Web Connector has one, its
QBWC code.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from click.testing import CliRunner
from lxml import etree

from qwc_service import qwcfile
from qwc_service.cli import main
from qwc_service.models import Connection
from qwc_service.qwcfile import (
    ELEMENTS,
    PLACEHOLDERS,
    REQUIRED,
    SERVICE_FILLED,
    QwcRefused,
    default_file_name,
    default_support_url,
    parse_template,
    render_for_connection,
)

SAMPLES = Path(__file__).parent / "samples"
REPO = Path(__file__).parent.parent
URL = "https://qb.example.com/qbwc"
OWNER = "{57F3B9B1-86F1-4fcc-B1EE-566DE1813D20}"
FILE = "{90A44FB5-33D9-4815-AC85-BC87A7E7D1EB}"
BRACED_GUID = re.compile(r"\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}", re.IGNORECASE)
INTUIT_HTTPS = "qwc_intuit_sdk_sample_HTTPSWebService.qwc"
INTUIT_HTTP = "qwc_intuit_sdk_sample_HTTPWebService.qwc"


def connection(name: str = "acme", username: str = "acme-sync", floor: int | None = None) -> Connection:
    """A connection as the database holds it (not added to any session)."""
    return Connection(name=name, username=username, owner_id=OWNER, file_id=FILE, min_run_every_seconds=floor)


def parse(data: bytes) -> Any:
    return etree.fromstring(data)


def tags(root: Any) -> list[str]:
    return [child.tag for child in root]


def default_template_with(edit: Callable[[Any], None]) -> bytes:
    """The shipped default template, changed by ``edit`` (through lxml, like any template)."""
    root = etree.fromstring((qwcfile.templates_dir() / "default.qwc.xml").read_bytes())
    edit(root)
    return etree.tostring(root)


def template(xml: str) -> qwcfile.Template:
    return parse_template(xml.encode(), source="custom.qwc.xml")


@contextmanager
def refused(code: str | None, match: str = "") -> Iterator[Any]:
    """pytest.raises for a refusal, checking its reason and its QBWC code (None: a refusal of ours alone)."""
    with pytest.raises(QwcRefused, match=match) as info:
        yield info
    assert info.value.code == code, str(info.value)
    if code:
        assert str(info.value).endswith(f"({code})")


# -- the file -------------------------------------------------------------------------------------


def test_default_file_carries_every_required_element_in_intuits_order() -> None:
    data = render_for_connection(connection(), URL)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<QBWCXML>\n  <AppName>")  # pretty-printed
    root = parse(data)
    assert root.tag == "QBWCXML"
    assert tags(root) == [*REQUIRED, "Style", "Scheduler", "IsReadOnly"]
    assert {name: root.findtext(name) for name in REQUIRED} == {
        "AppName": "qwc-service acme",
        "AppID": "",
        "AppURL": URL,
        "AppDescription": "QuickBooks sync for acme through qwc-service",
        "AppSupport": "https://qb.example.com/support",
        "UserName": "acme-sync",
        "OwnerID": OWNER,
        "FileID": FILE,
        "QBType": "QBFS",
    }
    assert root.findtext("Style") == "Document" and root.findtext("IsReadOnly") == "false"
    assert tags(root.find("Scheduler")) == ["RunEveryNMinutes"] and root.findtext("Scheduler/RunEveryNMinutes") == "5"
    assert b"<AppID></AppID>" in data  # written like Intuit's samples
    assert b"<!--" not in data  # the template's comments stay in the template


def test_every_option_lands_in_its_element() -> None:
    root = parse(render_for_connection(
        connection(), URL, app_name="Acme ERP", support_url="https://www.example.com/help", every_seconds=30,
        read_only=True, personal_data="required", unattended="optional", auth_flags="0x6",
        description="Invoices from Acme ERP", app_id="acme-erp"))
    assert tags(root) == [*REQUIRED, "Style", "AuthFlags", "Scheduler", "IsReadOnly", "PersonalDataPref",
                          "UnattendedModePref"]
    assert [root.findtext(n) for n in ("AppName", "AppID", "AppDescription", "AppSupport", "AuthFlags", "IsReadOnly",
                                       "PersonalDataPref", "UnattendedModePref")] == [
        "Acme ERP", "acme-erp", "Invoices from Acme ERP", "https://www.example.com/help", "0x6", "true",
        "pdpRequired", "umpOptional"]
    assert tags(root.find("Scheduler")) == ["RunEveryNSeconds"] and root.findtext("Scheduler/RunEveryNSeconds") == "30"


@pytest.mark.parametrize("value,expected", [("not-needed", "pdpNotNeeded"), ("optional", "pdpOptional"),
                                            ("pdpRequired", "pdpRequired")])
def test_personal_data_choices(value: str, expected: str) -> None:
    assert parse(render_for_connection(connection(), URL, personal_data=value)).findtext("PersonalDataPref") == expected


@pytest.mark.parametrize("value,expected", [("0x0", "0x0"), ("0xf", "0xF"), ("0X8", "0x8"), ("0x05", "0x5")])
def test_auth_flags_are_written_as_intuit_writes_them(value: str, expected: str) -> None:
    assert parse(render_for_connection(connection(), URL, auth_flags=value)).findtext("AuthFlags") == expected


@pytest.mark.parametrize("sample,url", [
    (INTUIT_HTTPS, "https://MTVL04A200337.corp.intuit.net/qbwc"),
    (INTUIT_HTTP, "http://localhost/WCWebService/WCWebService.asmx"),
])
def test_intuit_samples_as_templates_give_their_own_structure(sample: str, url: str) -> None:
    """Blank the four elements qwc-service owns in Intuit's files: what comes out is Intuit's file again."""
    original = parse((SAMPLES / sample).read_bytes())
    blanked = parse((SAMPLES / sample).read_bytes())
    for name in SERVICE_FILLED:
        blanked.find(name).text = ""
    root = parse(render_for_connection(connection(), url, template=parse_template(etree.tostring(blanked), sample)))
    # Both samples hold the same elements; we write them in the order of the HTTPS one (Intuit's listing).
    assert tags(root) == tags(parse((SAMPLES / INTUIT_HTTPS).read_bytes()))
    assert sorted(tags(root)) == sorted(tags(original))
    for name in ("AppName", "AppID", "AppDescription", "AppSupport", "QBType", "Style", "AuthFlags"):
        assert root.findtext(name) == original.findtext(name), name
    assert (root.findtext("AppURL"), root.findtext("UserName"), root.findtext("OwnerID"), root.findtext("FileID")) == (
        url, "acme-sync", OWNER, FILE)


def test_an_intuit_sample_unchanged_is_refused_as_a_template() -> None:
    with refused(None, r"<AppURL> must be empty: qwc-service fills it from --url"):
        parse_template((SAMPLES / INTUIT_HTTPS).read_bytes(), INTUIT_HTTPS)


def test_every_shipped_template_gives_a_loadable_file() -> None:
    names = qwcfile.template_names()
    assert "default" in names
    for name in names:
        root = parse(render_for_connection(connection(), URL, template=name))
        assert tags(root)[: len(REQUIRED)] == list(REQUIRED), name


def test_values_with_markup_characters_round_trip_escaped_by_lxml() -> None:
    nasty = "Ben & Jerry's <\"Ice\"> Co"
    conn = connection(name=nasty, username='sync&<"user">')
    data = render_for_connection(conn, URL, app_name=f"{nasty} app", support_url="https://qb.example.com/help?a=1&b=2",
                                 description="a > b & 'c'")
    root = parse(data)
    assert root.findtext("AppName") == f"{nasty} app"
    assert root.findtext("UserName") == 'sync&<"user">'
    assert root.findtext("AppSupport") == "https://qb.example.com/help?a=1&b=2"
    assert root.findtext("AppDescription") == "a > b & 'c'"
    assert b"Ben &amp; Jerry's &lt;\"Ice\"&gt; Co app" in data and b"sync&amp;&lt;" in data
    assert b"<\"Ice\">" not in data


def test_placeholders_are_filled_after_parsing_so_they_are_escaped_too() -> None:
    custom = template("""<QBWCXML>
        <AppName>ERP for {connection}</AppName><AppID/><AppURL/>
        <AppDescription>{user} at {host}</AppDescription><AppSupport>https://{host}/help</AppSupport>
        <UserName/><OwnerID/><FileID/><QBType/><AppDisplayName>{connection} &amp; co</AppDisplayName>
    </QBWCXML>""")
    root = parse(render_for_connection(connection(name="A&B <{user}>"), URL, template=custom))
    assert root.findtext("AppName") == "ERP for A&B <{user}>"  # a value is never expanded twice
    assert root.findtext("AppDescription") == "acme-sync at qb.example.com"
    assert root.findtext("AppSupport") == "https://qb.example.com/help"
    assert root.findtext("AppDisplayName") == "A&B <{user}> & co"
    assert root.findtext("QBType") == "QBFS"  # an empty required slot gets its default
    assert "Scheduler" not in tags(root)  # no Scheduler in the template, no option: none written


# -- GUIDs ----------------------------------------------------------------------------------------


def test_owner_and_file_ids_come_from_the_row_and_never_change(add_connection: Callable[..., Connection],
                                                                db: Any) -> None:
    from qwc_service import connections

    added = add_connection()
    files = []
    for _ in range(2):
        with db.begin() as session:
            files.append(render_for_connection(connections.get_connection(session, "acme"), URL))
    assert files[0] == files[1]
    root = parse(files[0])
    assert (root.findtext("OwnerID"), root.findtext("FileID")) == (added.owner_id, added.file_id)
    assert BRACED_GUID.fullmatch(root.findtext("OwnerID")) and BRACED_GUID.fullmatch(root.findtext("FileID"))
    assert root.findtext("OwnerID") != root.findtext("FileID")


def test_a_template_built_by_hand_is_checked_like_a_parsed_one() -> None:
    with refused(None, "by-hand: required elements AppID, AppURL"):
        render_for_connection(connection(), URL, template=qwcfile.Template("by-hand", {"AppName": "x"}))


def test_a_row_without_braced_guids_is_refused() -> None:
    conn = connection()
    conn.owner_id = OWNER.strip("{}")
    with refused(None, r"OwnerID .* is not a braced GUID"):
        render_for_connection(conn, URL)


# -- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url,support", [
    ("http://localhost/qbwc", "http://localhost/support"),
    ("http://localhost:8080/qbwc", "http://localhost:8080/support"),
    ("http://qbserver:8080/qbwc", "http://qbserver:8080/support"),  # a bare machine name, for development
    ("https://qbserver/qbwc", "https://qbserver/support"),
    ("https://qb.example.com:8443/qbwc", "https://qb.example.com:8443/support"),
    ("https://qb.example.com/quickbooks/qbwc/", "https://qb.example.com/quickbooks/support"),  # behind a prefix
    ("https://qb.example.com/connector", "https://qb.example.com/support"),
])
def test_urls_the_web_connector_accepts_and_their_default_support_page(url: str, support: str) -> None:
    root = parse(render_for_connection(connection(), url))
    assert (root.findtext("AppURL"), root.findtext("AppSupport")) == (url, support)


@pytest.mark.parametrize("url,support", [
    ("https://qb.example.com/qbwc", "https://www.example.com/help"),  # another host on the same domain
    ("https://a.shop.co.uk/qbwc", "https://b.shop.co.uk/help"),
    ("http://localhost/WCWebService/WCWebService.asmx", "http://developer.intuit.com"),  # Intuit's Listing 4-1
    ("https://qb.example.com/qbwc", "http://qb.example.com/help"),  # Intuit's HTTPS sample has an http AppSupport
])
def test_support_urls_the_web_connector_accepts(url: str, support: str) -> None:
    assert parse(render_for_connection(connection(), url, support_url=support)).findtext("AppSupport") == support


@pytest.mark.parametrize("url,code,reason", [
    ("http://qb.example.com/qbwc", "QBWC1010", "is not https"),
    ("http://qbserver.local/qbwc", "QBWC1010", "is not https"),
    ("https://203.0.113.7/qbwc", "QBWC1001", "is an IP address"),
    ("http://192.168.1.5:8080/qbwc", "QBWC1001", "is an IP address"),
    ("https://127.1/qbwc", "QBWC1001", "is an IP address"),
    ("https://[2001:db8::1]/qbwc", "QBWC1001", "is an IP address"),
    ("http://[::1]/qbwc", "QBWC1001", "is an IP address"),
    ("ftp://qb.example.com/qbwc", None, "must start with https://"),
    ("qb.example.com/qbwc", None, "must start with https://"),
    ("https:///qbwc", None, "has no host name"),
    ("https://sync:secret@qb.example.com/qbwc", None, "carries a user name or password"),
    ("https://qb.example.com:99999/qbwc", None, "invalid port"),
    ("https://qb example.com/qbwc", None, "not a valid host name"),
    ("  ", None, r"the AppURL \(--url\) is empty"),
])
def test_app_urls_the_web_connector_refuses(url: str, code: str | None, reason: str) -> None:
    with refused(code, reason):
        render_for_connection(connection(), url)


@pytest.mark.parametrize("url,support,code,reason", [
    (URL, "https://198.51.100.4/support", "QBWC1002", "AppSupport .* is an IP address"),
    (URL, "https://support.example.org/help", "QBWC1000", "on another domain than the AppURL"),
    (URL, "https://example.com.evil.net/help", "QBWC1000", "on another domain"),
    ("https://a.shop.co.uk/qbwc", "https://b.other.co.uk/help", "QBWC1000", "on another domain"),
    ("http://qbserver/qbwc", "http://otherbox/support", "QBWC1000", "not on the AppURL's machine"),
    (URL, "mailto:help@example.com", None, "must start with https://"),
])
def test_support_urls_the_web_connector_refuses(url: str, support: str, code: str | None, reason: str) -> None:
    with refused(code, reason):
        render_for_connection(connection(), url, support_url=support)


def test_the_default_support_url_answers_200(live_server: Any) -> None:
    """QBWC fetches AppSupport and wants a 200 (QBWC1003 otherwise): the default is a page the service serves."""
    response = requests.get(default_support_url(live_server.url), timeout=10)
    assert response.status_code == 200 and "Web Connector" in response.text


# -- schedule -------------------------------------------------------------------------------------


def schedule(data: bytes) -> list[tuple[str, str]]:
    return [(child.tag, child.text) for child in parse(data).iterfind("Scheduler/*")]


@pytest.mark.parametrize("options,floor,expected", [
    ({}, None, [("RunEveryNMinutes", "5")]),
    ({"every_minutes": 1}, None, [("RunEveryNMinutes", "1")]),  # the Web Connector's own minimum
    ({"every_minutes": "15"}, None, [("RunEveryNMinutes", "15")]),
    ({"every_seconds": 1}, None, [("RunEveryNSeconds", "1")]),  # "Real Time", as low as Intuit allows
    ({"every_seconds": "90"}, None, [("RunEveryNSeconds", "90")]),
    ({}, 600, [("RunEveryNMinutes", "10")]),  # the default never undercuts the connection's floor
    ({}, 330, [("RunEveryNSeconds", "330")]),
    ({}, 60, [("RunEveryNMinutes", "5")]),
    ({"every_minutes": 5}, 300, [("RunEveryNMinutes", "5")]),
])
def test_schedules(options: dict[str, Any], floor: int | None, expected: list[tuple[str, str]]) -> None:
    assert schedule(render_for_connection(connection(floor=floor), URL, **options)) == expected


@pytest.mark.parametrize("options,floor,reason", [
    ({"every_minutes": 0}, None, "--every-minutes must be at least 1: one minute is the shortest"),
    ({"every_minutes": "0.5"}, None, "not a whole number of minutes; for 30 seconds use --every-seconds 30"),
    ({"every_minutes": "1.5"}, None, "for 90 seconds use --every-seconds 90"),
    ({"every_minutes": "-3"}, None, "not a whole number of minutes"),
    ({"every_minutes": "often"}, None, "not a whole number of minutes"),
    ({"every_seconds": 0}, None, "--every-seconds must be at least 1 second"),
    ({"every_seconds": "2.5"}, None, "not a whole number of seconds"),
    ({"every_seconds": 2**31}, None, "larger than the Web Connector can read"),
    ({"every_minutes": 5, "every_seconds": 30}, None, "not both"),
    ({"every_seconds": 30}, 300, r"\(30 s\) is shorter than connection 'acme''s minimum run interval of 300 s"),
    ({"every_minutes": 4}, 300, "minimum run interval of 300 s"),
])
def test_bad_schedules_are_refused(options: dict[str, Any], floor: int | None, reason: str) -> None:
    with refused(None, reason):
        render_for_connection(connection(floor=floor), URL, **options)


def test_an_option_replaces_the_templates_schedule_and_adds_a_missing_scheduler() -> None:
    with_seconds = template("""<QBWCXML><AppName/><AppID/><AppURL/><AppDescription/><AppSupport/><UserName/>
        <OwnerID/><FileID/><QBType/><Scheduler><RunEveryNSeconds>30</RunEveryNSeconds></Scheduler></QBWCXML>""")
    assert schedule(render_for_connection(connection(), URL, template=with_seconds)) == [("RunEveryNSeconds", "30")]
    assert schedule(render_for_connection(connection(), URL, template=with_seconds, every_minutes=15)) == [
        ("RunEveryNMinutes", "15")]
    without = template("""<QBWCXML><AppName/><AppID/><AppURL/><AppDescription/><AppSupport/><UserName/>
        <OwnerID/><FileID/><QBType/></QBWCXML>""")
    assert schedule(render_for_connection(connection(), URL, template=without, every_seconds=45)) == [
        ("RunEveryNSeconds", "45")]


def test_a_templates_bad_schedule_is_refused_naming_the_template() -> None:
    zero = template("""<QBWCXML><AppName/><AppID/><AppURL/><AppDescription/><AppSupport/><UserName/>
        <OwnerID/><FileID/><QBType/><Scheduler><RunEveryNMinutes>0</RunEveryNMinutes></Scheduler></QBWCXML>""")
    with refused(None, r"custom.qwc.xml: <RunEveryNMinutes> must be at least 1.*use <RunEveryNSeconds>"):
        render_for_connection(connection(), URL, template=zero)


# -- other values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options,reason", [
    ({"auth_flags": "0x10"}, "AuthFlags 0x10 sets bits no QuickBooks edition has"),
    ({"auth_flags": "15"}, "AuthFlags '15' is not a hex value like 0xF"),
    ({"auth_flags": "F"}, "is not a hex value"),
    ({"auth_flags": "0xG"}, "is not a hex value"),
    ({"auth_flags": "0x1|0x2"}, "is not a hex value"),
    ({"personal_data": "maybe"}, "PersonalDataPref 'maybe' is not one of pdpNotNeeded"),
    ({"unattended": "never"}, "UnattendedModePref 'never' is not one of umpRequired, umpOptional"),
    ({"app_name": "Acme\\ERP"}, "contains a backslash"),
    ({"app_name": "x" * 256}, "256 characters long"),
    ({"app_name": "bell\x07"}, "contains a character XML cannot carry"),
])
def test_bad_values_are_refused(options: dict[str, Any], reason: str) -> None:
    with refused(None, reason):
        render_for_connection(connection(), URL, **options)


@pytest.mark.parametrize("element,value,reason", [
    ("QBType", "QBPOS", "Point of Sale"),
    ("Style", "RPC", "Document-style SOAP"),
    ("Style", "Fancy", "it knows Document, DocWrapped and RPC"),
    ("Notify", "yes", "Notify 'yes' must be true or false"),
    ("IsReadOnly", "1", "must be true or false"),
    ("CertURL", "certs.example.com", "CertURL .* must start with https://"),
    ("AppUniqueName", "a\\b", "AppUniqueName .* contains a backslash"),
    ("AppName", "{company} sync", "unknown placeholder {company}; known: {connection}, {user}, {host}"),
])
def test_bad_template_values_are_refused(element: str, value: str, reason: str) -> None:
    def edit(root: Any) -> None:
        found = root.find(element)
        if found is None:
            found = etree.SubElement(root, element)
        found.text = value

    with refused(None, reason):
        render_for_connection(connection(), URL, template=parse_template(default_template_with(edit), "t.qwc.xml"))


# -- templates ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REQUIRED)
def test_a_template_missing_a_required_element_is_refused(name: str) -> None:
    data = default_template_with(lambda root: root.remove(root.find(name)))
    with refused(None, rf"mine.qwc.xml: required element {name} missing; the Web Connector does not load"):
        parse_template(data, "mine.qwc.xml")


@pytest.mark.parametrize("xml,reason", [
    ("<QBWCXML><AppName>x</AppName>", "not well-formed XML"),
    ("<Application/>", "the root element must be <QBWCXML>"),
    ('<QBWCXML xmlns="http://developer.intuit.com/"/>', r"the root element must be <QBWCXML> \(no namespace\)"),
    ('<!DOCTYPE QBWCXML [<!ENTITY e "x">]><QBWCXML/>', "a DOCTYPE has no place"),
    ("<QBWCXML>stray<AppName/></QBWCXML>", "text directly inside <QBWCXML>"),
    ("<QBWCXML><Shceduler/></QBWCXML>", "unknown element <Shceduler>; the Web Connector knows AppName"),
    ("<QBWCXML><appname/></QBWCXML>", r"unknown element <appname> \(names are case-sensitive: AppName\)"),
    ("<QBWCXML><AppName/><AppName/></QBWCXML>", "<AppName> appears twice"),
    ('<QBWCXML><AppName lang="en"/></QBWCXML>', "<AppName> has attributes"),
    ("<QBWCXML><AppName><b>x</b></AppName></QBWCXML>", "<AppName> holds elements"),
    ("<QBWCXML><Scheduler><RunEveryNMinutes>5</RunEveryNMinutes><RunEveryNSeconds>9</RunEveryNSeconds></Scheduler>"
     "</QBWCXML>", "the Web Connector uses only the first, so keep exactly one"),
    ("<QBWCXML><Scheduler><RunEveryNHours>1</RunEveryNHours></Scheduler></QBWCXML>",
     "unknown element <RunEveryNHours> in <Scheduler>"),
    ("<QBWCXML><Scheduler>5</Scheduler></QBWCXML>", "<Scheduler> holds text"),
])
def test_malformed_templates_are_refused(xml: str, reason: str) -> None:
    with refused(None, reason):
        template(xml)


@pytest.mark.parametrize("name", SERVICE_FILLED)
def test_a_template_may_not_set_what_the_connection_decides(name: str) -> None:
    def edit(root: Any) -> None:
        root.find(name).text = "{11111111-2222-3333-4444-555555555555}"

    with refused(None, rf"<{name}> must be empty: qwc-service fills it"):
        parse_template(default_template_with(edit), "t.qwc.xml")


def test_a_template_is_found_by_name_in_the_templates_directory(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "erp.qwc.xml").write_bytes(default_template_with(lambda r: setattr(r.find("AppName"), "text", "ERP")))
    monkeypatch.setattr(qwcfile, "templates_dir", lambda: tmp_path)
    assert parse(render_for_connection(connection(), URL, template="erp")).findtext("AppName") == "ERP"
    with pytest.raises(qwcfile.InvalidInput, match=r"template 'nosuch' not found: .*\(erp\)"):
        render_for_connection(connection(), URL, template="nosuch")


def test_the_templates_readme_documents_every_element_and_placeholder() -> None:
    readme = (REPO / "qwc_templates" / "README.md").read_text(encoding="utf-8")
    for name in ELEMENTS:
        assert f"`{name}`" in readme, name
    for name in PLACEHOLDERS:
        assert f"`{{{name}}}`" in readme, name


def test_the_guide_documents_every_option_of_the_command() -> None:
    guide = (REPO / "docs" / "qwc-files.md").read_text(encoding="utf-8")
    for param in qwcfile.qwc_command.params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert f"`{opt}" in guide, opt
    for code in ("QBWC1000", "QBWC1001", "QBWC1002", "QBWC1010"):
        assert code in guide


def test_default_file_names_are_safe_on_windows() -> None:
    assert default_file_name("acme") == "acme.qwc"
    assert default_file_name('a/b\\c:d*e?"f"<g>|') == "a_b_c_d_e__f__g__.qwc"
    assert default_file_name("../..") == "_.qwc"
    assert default_file_name("...") == "connection.qwc"


# -- the command ----------------------------------------------------------------------------------


@pytest.fixture
def cli(settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, add_connection: Callable[..., Connection]):
    """``qwc-service`` in a scratch working directory, with connection acme (sync user acme-sync)."""
    monkeypatch.setenv("QWC_DATABASE_URL", settings.database_url)
    monkeypatch.chdir(tmp_path)
    add_connection()
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def test_cli_writes_name_dot_qwc_in_the_working_directory(cli: Any, tmp_path: Path) -> None:
    result = cli("qwc", "acme", "--url", URL)
    written = tmp_path / "acme.qwc"
    assert "wrote acme.qwc for connection 'acme' (UserName acme-sync, OwnerID {" in result.stdout
    root = parse(written.read_bytes())
    assert root.findtext("UserName") == "acme-sync" and root.findtext("AppURL") == URL
    assert BRACED_GUID.fullmatch(root.findtext("OwnerID"))
    first = written.read_bytes()
    cli("qwc", "acme", "--url", URL)
    assert written.read_bytes() == first  # regenerating gives the same application


def test_cli_prints_the_file_with_dash_o_dash(cli: Any, tmp_path: Path) -> None:
    result = cli("qwc", "acme", "--url", URL, "-o", "-", "--every-seconds", "45", "--read-only",
                 "--personal-data", "not-needed", "--unattended", "required", "--auth-flags", "0xc",
                 "--app-name", "Acme & Co", "--support-url", "https://help.example.com/qb")
    assert result.stderr == ""
    assert result.stdout_bytes.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = parse(result.stdout_bytes)
    assert [root.findtext(n) for n in ("AppName", "AppSupport", "IsReadOnly", "PersonalDataPref",
                                       "UnattendedModePref", "AuthFlags", "Scheduler/RunEveryNSeconds")] == [
        "Acme & Co", "https://help.example.com/qb", "true", "pdpNotNeeded", "umpRequired", "0xC", "45"]
    assert list(tmp_path.glob("*.qwc")) == []


def test_cli_honours_a_custom_template(cli: Any, tmp_path: Path) -> None:
    custom = tmp_path / "erp.xml"
    custom.write_text("""<?xml version="1.0" encoding="utf-8"?>
<!-- Acme ERP's connector -->
<QBWCXML>
  <AppName>Acme ERP ({connection})</AppName>
  <AppID>acme-erp</AppID>
  <AppURL/>
  <AppDescription>Invoices &amp; customers from Acme ERP</AppDescription>
  <AppSupport>https://www.{host}/help</AppSupport>
  <UserName/><OwnerID/><FileID/>
  <QBType>QBFS</QBType>
  <Notify>true</Notify>
  <AppDisplayName>Acme ERP</AppDisplayName>
  <AppUniqueName>acme-erp-{connection}</AppUniqueName>
  <CertURL>https://certs.example.com/</CertURL>
  <AuthFlags>0x6</AuthFlags>
  <PersonalDataPref>pdpRequired</PersonalDataPref>
  <Scheduler><RunEveryNSeconds>90</RunEveryNSeconds></Scheduler>
</QBWCXML>
""", encoding="utf-8")
    (tmp_path / "out").mkdir()
    cli("qwc", "acme", "--url", "https://example.com/qbwc", "--template", str(custom), "-o", "out/acme-erp.qwc",
        "--personal-data", "optional")
    root = parse((tmp_path / "out" / "acme-erp.qwc").read_bytes())
    assert tags(root) == [*REQUIRED, "AuthFlags", "Scheduler", "PersonalDataPref", "Notify", "AppDisplayName",
                          "AppUniqueName", "CertURL"]
    assert {n: root.findtext(n) for n in ("AppName", "AppID", "AppDescription", "AppSupport", "Notify",
                                          "AppUniqueName", "AuthFlags", "PersonalDataPref", "CertURL")} == {
        "AppName": "Acme ERP (acme)", "AppID": "acme-erp", "AppDescription": "Invoices & customers from Acme ERP",
        "AppSupport": "https://www.example.com/help", "Notify": "true", "AppUniqueName": "acme-erp-acme",
        "AuthFlags": "0x6", "PersonalDataPref": "pdpOptional", "CertURL": "https://certs.example.com/"}
    assert root.findtext("Scheduler/RunEveryNSeconds") == "90"


@pytest.mark.parametrize("args,message", [
    (("qwc", "nobody", "--url", URL), "no connection named 'nobody'"),
    (("qwc", "acme"), "--url is required"),
    (("qwc",), "Missing argument 'NAME'"),
    (("qwc", "acme", "--url", URL, "--bogus"), "No such option '--bogus'"),
    (("qwc", "acme", "--url", "http://qb.example.com/qbwc"), "is not https: the Web Connector loads plain http"),
    (("qwc", "acme", "--url", "https://10.1.2.3/qbwc"), "(QBWC1001)"),
    (("qwc", "acme", "--url", URL, "--support-url", "https://10.1.2.3/s"), "(QBWC1002)"),
    (("qwc", "acme", "--url", URL, "--support-url", "https://help.other.org/"), "(QBWC1000)"),
    (("qwc", "acme", "--url", URL, "--every-minutes", "0.5"), "for 30 seconds use --every-seconds 30"),
    (("qwc", "acme", "--url", URL, "--every-minutes", "0"), "--every-minutes must be at least 1"),
    (("qwc", "acme", "--url", URL, "--every-seconds", "0"), "--every-seconds must be at least 1 second"),
    (("qwc", "acme", "--url", URL, "--every-minutes", "5", "--every-seconds", "5"), "not both"),
    (("qwc", "acme", "--url", URL, "--personal-data", "maybe"), "--personal-data not-needed|optional|required"),
    (("qwc", "acme", "--url", URL, "--unattended", "sometimes"), "is not one of umpRequired"),
    (("qwc", "acme", "--url", URL, "--auth-flags", "0x1F"), "sets bits no QuickBooks edition has"),
    (("qwc", "acme", "--url", URL, "--template", "nosuch"), "template 'nosuch' not found"),
    (("qwc", "acme", "--url", URL, "-o", "missing-dir/acme.qwc"), "No such file or directory"),
])
def test_cli_bad_input_is_one_error_line_and_exit_1(cli: Any, tmp_path: Path, args: tuple[str, ...],
                                                     message: str) -> None:
    result = cli(*args, ok=False)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]
    assert list(tmp_path.rglob("*.qwc")) == []  # nothing half-written
