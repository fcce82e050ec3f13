""".qwc files: what a person opens in the Web Connector to add a connection.

A .qwc file is a small ``<QBWCXML>`` document (QBWC-PROTOCOL.md section 4).
The Web Connector checks it when it is added and refuses it, with an
unhelpful dialog, for reasons we can see in advance: an AppURL that is not
https, an IP address instead of a host name, a support page on another domain.
So every value is checked here and a refusal names the reason and the QBWC
code the person would otherwise meet.

Files come from templates (``qwc_templates/``), parsed with lxml and filled
*element by element*: a value is only ever set as an element's text, never
pasted into XML source, so ``&``, ``<`` and quotes in a connection name or an
application name are escaped by lxml. An empty element in a template is a
slot that qwc-service fills (the connection's sync user and GUIDs, the
AppURL, a default AppName, AppSupport and schedule); an element with a value
is a default that command-line options override; ``{connection}``, ``{user}``
and ``{host}`` in a template's text are replaced after parsing. The output is
rebuilt in the element order of Intuit's sample files, without the template's
comments.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn, Sequence
from urllib.parse import SplitResult, urlsplit, urlunsplit

import click
from lxml import etree

from .exceptions import InvalidInput, QwcError
from .models import Connection

#: Required by QBWC, in the order of Intuit's samples (AppID may be empty).
REQUIRED = ("AppName", "AppID", "AppURL", "AppDescription", "AppSupport", "UserName", "OwnerID", "FileID", "QBType")
#: Optional elements QBWC knows, in the order we write them after the required ones
#: (Style and AuthFlags come right after QBType in Intuit's HTTPS sample).
OPTIONAL = ("Style", "AuthFlags", "Scheduler", "IsReadOnly", "PersonalDataPref", "UnattendedModePref", "Notify",
            "AppDisplayName", "AppUniqueName", "CertURL")
ELEMENTS = REQUIRED + OPTIONAL
#: Filled from the connection and --url only: a template leaves them empty.
SERVICE_FILLED = ("AppURL", "UserName", "OwnerID", "FileID")
SCHEDULER_CHILDREN = ("RunEveryNMinutes", "RunEveryNSeconds")
#: What ``{name}`` in a template's text stands for.
PLACEHOLDERS = {
    "connection": "the connection's name",
    "user": "the connection's sync user (UserName)",
    "host": "the host name of the AppURL",
}

PERSONAL_DATA = {"not-needed": "pdpNotNeeded", "optional": "pdpOptional", "required": "pdpRequired"}
UNATTENDED = {"required": "umpRequired", "optional": "umpOptional"}
AUTH_FLAG_BITS = {0x1: "SimpleStart", 0x2: "Pro", 0x4: "Premier", 0x8: "Enterprise"}

#: The interval written when a template's <Scheduler/> is an empty slot and no option is given.
DEFAULT_EVERY_MINUTES = 5
#: The largest interval accepted: the largest 32-bit integer (QBWC is a .NET program; no one needs more).
MAX_INTERVAL = 2**31 - 1
#: Registry key names (QBWC keeps each application under a key named after it) are at most 255 characters.
MAX_APP_NAME = 255
DEFAULT_TEMPLATE = "default"
TEMPLATE_SUFFIX = ".qwc.xml"

_GUID = re.compile(r"\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
#: Second-level labels under which a country code's domains are registered (example.co.uk).
_COUNTRY_SECOND_LEVEL = frozenset({"ac", "co", "com", "edu", "gob", "gov", "ltd", "mil", "ne", "net", "nic", "or",
                                   "org", "plc", "sch"})


class QwcRefused(InvalidInput):
    """A .qwc file we will not write, because the Web Connector (or qwc-service) would refuse it.

    ``code`` is the QBWC error the person would otherwise see (e.g.
    ``QBWC1001``), or None when the refusal is ours alone.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(f"{message} ({code})" if code else message)
        self.code = code


# -- templates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A template after parsing: which elements it has and what they say.

    ``values`` maps each element present to its text, stripped ("" is a slot
    for qwc-service to fill). ``schedule`` is the Scheduler's one child as
    (name, text), or None when the Scheduler is an empty slot or absent
    (``"Scheduler" in values`` tells which).
    """

    source: str
    values: dict[str, str] = field(default_factory=dict)
    schedule: tuple[str, str] | None = None


def templates_dir() -> Path:
    """Where the shipped templates live.

    In an installed package they are ``qwc_service.qwc_templates`` (pyproject
    maps the top-level ``qwc_templates/`` there, as it does for migrations); in
    a source checkout installed before that mapping existed, the top-level
    directory itself.
    """
    try:
        shipped = resources.files("qwc_service.qwc_templates")
    except ModuleNotFoundError:
        shipped = None
    if isinstance(shipped, Path) and (shipped / f"{DEFAULT_TEMPLATE}{TEMPLATE_SUFFIX}").is_file():
        return shipped
    return Path(__file__).resolve().parent.parent / "qwc_templates"


def template_names() -> list[str]:
    """The templates in :func:`templates_dir`, by the name ``--template`` accepts."""
    directory = templates_dir()
    return sorted(p.name[: -len(TEMPLATE_SUFFIX)] for p in directory.glob(f"*{TEMPLATE_SUFFIX}") if p.is_file())


def resolve_template(spec: str | os.PathLike[str] | None) -> Path:
    """A template file from a path, or from a name in the templates directory (``acme`` = ``acme.qwc.xml``)."""
    if spec is None:
        spec = DEFAULT_TEMPLATE
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    text = os.fspath(spec)
    directory = templates_dir()
    if text and "/" not in text and os.sep not in text:
        for candidate in (directory / text, directory / f"{text}{TEMPLATE_SUFFIX}"):
            if candidate.is_file():
                return candidate
    names = ", ".join(template_names()) or "none"
    raise InvalidInput(f"template {text!r} not found: give a template file, or the name of one in {directory} "
                       f"({names})")


def load_template(spec: str | os.PathLike[str] | Template | None = None) -> Template:
    """Read and check a template; ``None`` is the default template."""
    if isinstance(spec, Template):
        return spec
    path = resolve_template(spec)
    return parse_template(path.read_bytes(), source=str(path))


def parse_template(data: bytes, source: str = "template") -> Template:
    """Parse a template and refuse anything the Web Connector would not read as we mean it.

    Unknown or misspelt elements, duplicates, attributes and stray text are
    refused rather than dropped, so a typo such as ``<Shceduler>`` never
    silently loses a setting. DTDs are refused: a template needs no entities.
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True,
                             remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise QwcRefused(f"{source}: not well-formed XML: {exc.msg}") from None
    where = f"{source}:"
    if root.getroottree().docinfo.doctype:
        raise QwcRefused(f"{where} a DOCTYPE has no place in a .qwc template; remove it")
    if root.tag != "QBWCXML":
        raise QwcRefused(f"{where} the root element must be <QBWCXML> (no namespace), not <{_name(root)}>")
    if root.attrib:
        raise QwcRefused(f"{where} <QBWCXML> takes no attributes")
    if (root.text or "").strip():
        raise QwcRefused(f"{where} text directly inside <QBWCXML> is not allowed; put values inside elements")
    values: dict[str, str] = {}
    schedule: tuple[str, str] | None = None
    for child in root:
        if not isinstance(child.tag, str):  # an entity reference left unresolved
            raise QwcRefused(f"{where} entity references are not allowed; write the character itself")
        name = _name(child)
        if name not in ELEMENTS:
            raise QwcRefused(f"{where} unknown element <{name}>{_did_you_mean(name, ELEMENTS)}; "
                             f"the Web Connector knows {', '.join(ELEMENTS)}")
        if name in values:
            raise QwcRefused(f"{where} <{name}> appears twice; keep one")
        if child.attrib:
            raise QwcRefused(f"{where} <{name}> has attributes; .qwc elements take none")
        if (child.tail or "").strip():
            raise QwcRefused(f"{where} text after <{name}> is outside any element")
        if name == "Scheduler":
            schedule = _parse_scheduler(child, where)
            values[name] = ""
            continue
        if len(child):
            raise QwcRefused(f"{where} <{name}> holds elements; it takes only text")
        values[name] = (child.text or "").strip()
    _check_structure(values, where)
    return Template(source=source, values=values, schedule=schedule)


def _check_structure(values: dict[str, str], where: str) -> None:
    """Every required element present; the ones qwc-service owns left empty."""
    missing = [name for name in REQUIRED if name not in values]
    if missing:
        slots = " ".join(f"<{name}/>" for name in missing)
        them = "them" if len(missing) > 1 else "it"
        raise QwcRefused(f"{where} required element{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"missing; the Web Connector does not load a .qwc file without {them}. Add {slots} "
                         f"(empty: qwc-service fills {them})")
    for name in SERVICE_FILLED:
        if values[name]:
            raise QwcRefused(f"{where} <{name}> must be empty: qwc-service fills it from "
                             f"{'--url' if name == 'AppURL' else 'the connection'} (it holds {values[name]!r})")


def _parse_scheduler(element: Any, where: str) -> tuple[str, str] | None:
    if (element.text or "").strip():
        raise QwcRefused(f"{where} <Scheduler> holds text; put it in <RunEveryNMinutes> or <RunEveryNSeconds>")
    children = list(element)
    if not children:
        return None
    if len(children) > 1:
        raise QwcRefused(f"{where} <Scheduler> has {len(children)} elements; the Web Connector uses only the "
                         "first, so keep exactly one: <RunEveryNMinutes> or <RunEveryNSeconds>")
    child = children[0]
    name = _name(child) if isinstance(child.tag, str) else "?"
    if name not in SCHEDULER_CHILDREN:
        raise QwcRefused(f"{where} unknown element <{name}> in <Scheduler>{_did_you_mean(name, SCHEDULER_CHILDREN)}; "
                         "use <RunEveryNMinutes> or <RunEveryNSeconds>")
    if child.attrib or len(child) or (child.tail or "").strip():
        raise QwcRefused(f"{where} <{name}> takes only a number")
    return name, (child.text or "").strip()


def _name(element: Any) -> str:
    qname = etree.QName(element)
    return f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    for candidate in known:
        if candidate.lower() == name.lower():
            return f" (names are case-sensitive: {candidate})"
    return ""


# -- URLs ------------------------------------------------------------------------------------------


def _is_ip(host: str) -> bool:
    """Whether QBWC would see an IP address: dotted numbers (even short forms like 127.1) or IPv6."""
    bare = host.strip("[]").rstrip(".")
    try:
        ipaddress.ip_address(bare.split("%")[0])
        return True
    except ValueError:
        return bool(re.fullmatch(r"[0-9.]+", bare))


def _is_development_host(host: str) -> bool:
    """localhost or a bare machine name: the only hosts QBWC lets use plain http."""
    bare = host.rstrip(".")
    return bare == "localhost" or "." not in bare


def _domain(host: str) -> str:
    """The registered domain QBWC compares: the last two labels (three under co.uk, com.au, ...)."""
    labels = host.rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _COUNTRY_SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _split_url(url: str, element: str) -> tuple[SplitResult, str]:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise QwcRefused(f"{element} {url!r} must start with https:// (the Web Connector speaks only HTTP(S))")
    host = parts.hostname or ""
    if not host:
        raise QwcRefused(f"{element} {url!r} has no host name")
    if parts.username is not None or parts.password is not None:
        raise QwcRefused(f"{element} {url!r} carries a user name or password; leave them out: the Web Connector "
                         "sends the sync user's name and password in authenticate, never in the URL")
    try:
        parts.port
    except ValueError:
        raise QwcRefused(f"{element} {url!r} has an invalid port") from None
    if not _is_ip(host) and not _HOST_NAME.fullmatch(host):
        raise QwcRefused(f"{element} {url!r}: {host!r} is not a valid host name (write an international name "
                         "in its xn-- form)")
    return parts, host


def check_app_url(url: str) -> str:
    """Refuse an AppURL the Web Connector would not load; return it stripped."""
    url = url.strip()
    if not url:
        raise QwcRefused("the AppURL (--url) is empty: give the address the Web Connector calls, "
                         "e.g. https://qb.example.com/qbwc")
    parts, host = _split_url(url, "AppURL")
    if _is_ip(host):
        raise QwcRefused(f"AppURL {url!r} is an IP address: the Web Connector refuses to load an application "
                         "whose service URL has no host name; use one", "QBWC1001")
    if parts.scheme.lower() != "https" and not _is_development_host(host):
        raise QwcRefused(f"AppURL {url!r} is not https: the Web Connector loads plain http applications only from "
                         "localhost or a bare machine name, for development", "QBWC1010")
    return url


def default_support_url(app_url: str) -> str:
    """The AppSupport for an AppURL: the service's ``/support`` page beside its ``/qbwc`` endpoint.

    Same scheme, host and port as the AppURL (so the domains match, QBWC1000);
    an AppURL ending in ``/qbwc`` under a prefix (a reverse proxy's
    ``/quickbooks/qbwc``) gives ``/quickbooks/support``, otherwise ``/support``.
    """
    parts = urlsplit(app_url.strip())
    path = parts.path.rstrip("/")
    path = path[: -len("qbwc")] + "support" if path.endswith("/qbwc") else "/support"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def check_support_url(support_url: str, app_url: str) -> str:
    """Refuse an AppSupport the Web Connector would not accept beside this AppURL."""
    support_url = support_url.strip()
    _, support_host = _split_url(support_url, "AppSupport")
    if _is_ip(support_host):
        raise QwcRefused(f"AppSupport {support_url!r} is an IP address: the Web Connector refuses a support URL "
                         "without a host name; use one", "QBWC1002")
    app_host = urlsplit(app_url).hostname or ""
    app_bare, support_bare = app_host.rstrip("."), support_host.rstrip(".")
    if app_bare == "localhost":
        return support_url  # Intuit's own localhost sample points AppSupport at another domain
    if "." not in app_bare:
        if support_bare != app_bare:
            raise QwcRefused(f"AppSupport {support_url!r} is not on the AppURL's machine {app_host!r}: with a "
                             "machine name, the Web Connector wants the same one in both", "QBWC1000")
    elif _domain(support_bare) != _domain(app_bare):
        raise QwcRefused(f"AppSupport {support_url!r} is on another domain than the AppURL ({support_host!r} vs "
                         f"{app_host!r}): the Web Connector wants both on one domain; leave --support-url out to "
                         "use the AppURL's host with /support", "QBWC1000")
    return support_url


def check_cert_url(url: str) -> str:
    _split_url(url, "CertURL")
    return url


# -- values ----------------------------------------------------------------------------------------


def parse_interval(value: int | str, element: str, given_as: str) -> int:
    """A RunEveryNMinutes or RunEveryNSeconds value as a whole number, refusing what QBWC cannot use.

    Minutes: at least 1, the shortest interval the Web Connector offers in
    minutes (its own UI refuses less). A shorter interval goes in seconds:
    Intuit's guide allows RunEveryNSeconds down to one second ("Real Time").
    """
    text = str(value).strip()
    seconds_option = "--every-seconds" if given_as.startswith("--") else "<RunEveryNSeconds>"
    if not re.fullmatch(r"[0-9]+", text):
        hint = ""
        if element == "RunEveryNMinutes":
            try:
                fraction = float(text)
            except ValueError:
                fraction = -1.0
            if 0 < fraction < MAX_INTERVAL / 60:
                hint = f"; for {round(fraction * 60)} seconds use {seconds_option} {round(fraction * 60)}"
        unit = "minutes" if element == "RunEveryNMinutes" else "seconds"
        raise QwcRefused(f"{given_as} {text!r} is not a whole number of {unit}{hint}")
    number = int(text)
    if number < 1:
        if element == "RunEveryNMinutes":
            raise QwcRefused(f"{given_as} must be at least 1: one minute is the shortest interval in minutes (the "
                             f"Web Connector's own minimum); for a shorter one use {seconds_option}")
        raise QwcRefused(f"{given_as} must be at least 1 second")
    if number > MAX_INTERVAL:
        raise QwcRefused(f"{given_as} {number} is larger than the Web Connector can read ({MAX_INTERVAL})")
    return number


def parse_auth_flags(value: str) -> str:
    """AuthFlags as QBWC writes it (``0xF``): a hex combination of the editions' bits, 0x0 meaning all."""
    text = value.strip()
    editions = ", ".join(f"0x{bit:X} {name}" for bit, name in AUTH_FLAG_BITS.items())
    if not re.fullmatch(r"0[xX][0-9A-Fa-f]+", text):
        raise QwcRefused(f"AuthFlags {text!r} is not a hex value like 0xF: combine {editions} (0x0 = all editions)")
    number = int(text, 16)
    if number > 0xF:
        raise QwcRefused(f"AuthFlags {text} sets bits no QuickBooks edition has; combine {editions} "
                         "(0x0 = all editions, 0xF = each of them)")
    return f"0x{number:X}"


def _choice(value: str, choices: dict[str, str], element: str, option: str) -> str:
    """An option's short form (``optional``) or the element's own value (``pdpOptional``)."""
    text = value.strip()
    if text in choices:
        return choices[text]
    if text in choices.values():
        return text
    raise QwcRefused(f"{element} {text!r} is not one of {', '.join(choices.values())} ({option} "
                     f"{'|'.join(choices)})")


def _boolean(value: str, element: str) -> str:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise QwcRefused(f"{element} {value.strip()!r} must be true or false")
    return text


def _check_application_name(value: str, element: str) -> str:
    if not value:
        raise QwcRefused(f"{element} is empty; the Web Connector shows and stores the application under it")
    if "\\" in value:
        raise QwcRefused(f"{element} {value!r} contains a backslash; the Web Connector stores each application "
                         "under a registry key named after it, and key names cannot contain one")
    if len(value) > MAX_APP_NAME:
        raise QwcRefused(f"{element} is {len(value)} characters long; registry key names, which the Web Connector "
                         f"makes from it, stop at {MAX_APP_NAME}")
    return value


def _expand(text: str, context: dict[str, str], where: str) -> str:
    """Replace ``{connection}``-style placeholders in one element's text (never in XML source)."""

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in context:
            known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
            raise QwcRefused(f"{where}: unknown placeholder {{{key}}}; known: {known}")
        return context[key]

    return _PLACEHOLDER.sub(substitute, text)


# -- rendering -------------------------------------------------------------------------------------


def render(
    template: Template,
    *,
    url: str,
    connection_name: str,
    username: str,
    owner_id: str,
    file_id: str,
    min_run_every_seconds: int | None = None,
    app_name: str | None = None,
    app_id: str | None = None,
    description: str | None = None,
    support_url: str | None = None,
    every_minutes: int | str | None = None,
    every_seconds: int | str | None = None,
    read_only: bool | None = None,
    personal_data: str | None = None,
    unattended: str | None = None,
    auth_flags: str | None = None,
) -> bytes:
    """The .qwc document for one connection: UTF-8 bytes with an XML declaration, pretty-printed.

    Precedence for each element: an option given here, then the template's
    value, then qwc-service's default for an empty slot. Options add their
    element even when the template lacks it. Empty options count as not
    given. Everything is checked before anything is written.
    """
    _check_structure(template.values, f"{template.source}:")
    url = check_app_url(url)
    if every_minutes is not None and every_seconds is not None:
        raise QwcRefused("give --every-minutes or --every-seconds, not both: the Web Connector would use only "
                         "the first one written")
    app_host = urlsplit(url).hostname or ""
    context = {"connection": connection_name, "user": username, "host": app_host}
    values = {name: _expand(text, context, f"{template.source}: <{name}>") for name, text in template.values.items()}

    overrides = {
        "AppName": app_name, "AppID": app_id, "AppDescription": description, "AppSupport": support_url,
        "AuthFlags": auth_flags,
        "IsReadOnly": None if read_only is None else ("true" if read_only else "false"),
        "PersonalDataPref": personal_data, "UnattendedModePref": unattended,
    }
    for name, value in overrides.items():
        if value is not None and (value.strip() or name == "AppID"):
            values[name] = value.strip()

    values["AppURL"] = url
    values["UserName"] = username.strip()
    values["OwnerID"] = owner_id.strip()
    values["FileID"] = file_id.strip()
    if not values["AppName"]:
        values["AppName"] = f"qwc-service {connection_name}"
    if not values["AppDescription"]:
        values["AppDescription"] = f"QuickBooks sync for {connection_name} through qwc-service"
    if not values["AppSupport"]:
        values["AppSupport"] = default_support_url(url)
    if not values["QBType"]:
        values["QBType"] = "QBFS"

    _check_values(values)
    schedule = _schedule(template, every_minutes, every_seconds, min_run_every_seconds, connection_name)

    root = etree.Element("QBWCXML")
    for name in ELEMENTS:
        if name == "Scheduler":
            if schedule is not None:
                scheduler = etree.SubElement(root, "Scheduler")
                etree.SubElement(scheduler, schedule[0]).text = str(schedule[1])
            continue
        value = values.get(name, "")
        if not value and name not in REQUIRED:
            continue  # an empty optional slot nobody filled
        try:
            etree.SubElement(root, name).text = value
        except ValueError:
            raise QwcRefused(f"{name} {value!r} contains a character XML cannot carry (a control character)") from None
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _check_values(values: dict[str, str]) -> None:
    """Every element's value, as the Web Connector (and qwc-service) will read it."""
    _check_application_name(values["AppName"], "AppName")
    if values.get("AppUniqueName"):
        _check_application_name(values["AppUniqueName"], "AppUniqueName")
    values["AppSupport"] = check_support_url(values["AppSupport"], values["AppURL"])
    if not values["UserName"]:
        raise QwcRefused("UserName is empty: the connection has no sync user")
    for name in ("OwnerID", "FileID"):
        if not _GUID.fullmatch(values[name]):
            raise QwcRefused(f"{name} {values[name]!r} is not a braced GUID like "
                             "{57F3B9B1-86F1-4fcc-B1EE-566DE1813D20}")
    if values["QBType"] != "QBFS":
        raise QwcRefused(f"QBType {values['QBType']!r}: qwc-service speaks qbXML to QuickBooks desktop (QBFS); "
                         "QuickBooks Point of Sale (QBPOS) uses another language it does not speak")
    if values.get("Style") and values["Style"] != "Document":
        unknown = "" if values["Style"] in ("DocWrapped", "RPC") else " (it knows Document, DocWrapped and RPC)"
        raise QwcRefused(f"Style {values['Style']!r}: qwc-service answers only Document-style SOAP, the Web "
                         f"Connector's default{unknown}; leave Style out or write Document")
    if values.get("AuthFlags"):
        values["AuthFlags"] = parse_auth_flags(values["AuthFlags"])
    for name in ("IsReadOnly", "Notify"):
        if values.get(name):
            values[name] = _boolean(values[name], name)
    if values.get("PersonalDataPref"):
        values["PersonalDataPref"] = _choice(values["PersonalDataPref"], PERSONAL_DATA, "PersonalDataPref",
                                             "--personal-data")
    if values.get("UnattendedModePref"):
        values["UnattendedModePref"] = _choice(values["UnattendedModePref"], UNATTENDED, "UnattendedModePref",
                                               "--unattended")
    if values.get("CertURL"):
        check_cert_url(values["CertURL"])


def _schedule(template: Template, every_minutes: int | str | None, every_seconds: int | str | None,
              floor: int | None, connection_name: str) -> tuple[str, int] | None:
    """The one Scheduler child to write, or None for no Scheduler at all."""
    if every_minutes is not None:
        element, given_as = "RunEveryNMinutes", "--every-minutes"
        number = parse_interval(every_minutes, element, given_as)
    elif every_seconds is not None:
        element, given_as = "RunEveryNSeconds", "--every-seconds"
        number = parse_interval(every_seconds, element, given_as)
    elif template.schedule is not None:
        element, text = template.schedule
        given_as = f"{template.source}: <{element}>"
        number = parse_interval(text, element, given_as)
    elif "Scheduler" in template.values:  # an empty slot: the default, never below the connection's floor
        seconds = max(DEFAULT_EVERY_MINUTES * 60, floor or 0)
        return ("RunEveryNMinutes", seconds // 60) if seconds % 60 == 0 else ("RunEveryNSeconds", seconds)
    else:
        return None
    seconds = number * 60 if element == "RunEveryNMinutes" else number
    if floor and seconds < floor:
        raise QwcRefused(f"{given_as} {number} ({seconds} s) is shorter than connection {connection_name!r}'s "
                         f"minimum run interval of {floor} s (connection set --min-run-every-seconds); qwc-service "
                         f"tells the Web Connector to wait that long anyway. Ask for at least {floor} s, or lower "
                         "the minimum")
    return element, number


def render_for_connection(
    connection: Connection,
    url: str,
    *,
    template: str | os.PathLike[str] | Template | None = None,
    **options: Any,
) -> bytes:
    """The .qwc file for a connection (the HTTP API's entry point as well as the CLI's).

    UserName, OwnerID and FileID come from the connection's row, so the file
    is the same however often it is generated: QBWC keys the company file's
    FileID under the OwnerID, and a new GUID would make it a new application.
    ``options`` are :func:`render`'s: ``app_name``, ``app_id``,
    ``description``, ``support_url``, ``every_minutes`` or ``every_seconds``,
    ``read_only``, ``personal_data`` (``not-needed``, ``optional``,
    ``required``), ``unattended`` (``required``, ``optional``), ``auth_flags``.
    Raises :class:`QwcRefused` with the reason (and QBWC code) for anything
    the Web Connector would refuse.

    ``template`` is a file path, a name from :func:`template_names`, or a
    :class:`Template` from :func:`parse_template`. A caller serving remote
    clients (the HTTP API) must pass only the last two: a path would let a
    client make the server read any file.
    """
    return render(
        load_template(template),
        url=url,
        connection_name=connection.name,
        username=connection.username,
        owner_id=connection.owner_id,
        file_id=connection.file_id,
        min_run_every_seconds=connection.min_run_every_seconds,
        **options,
    )


def default_file_name(connection_name: str) -> str:
    """``<NAME>.qwc``, with characters Windows or a path would choke on replaced."""
    stem = re.sub(r'[<>:"/\\|?*\x00-\x1f]', "_", connection_name).strip(" .")
    return f"{stem or 'connection'}.qwc"


# -- the command -----------------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class _QwcCommand(click.Command):
    """Bad input is one ``error: …`` line and exit status 1, click's own usage errors included."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _fail(exc.format_message())

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        from .config import ConfigError
        from .database import DatabaseError

        try:
            return super().invoke(ctx)
        except (QwcError, ConfigError, DatabaseError) as exc:
            _fail(str(exc))
        except SQLAlchemyError as exc:
            _fail(f"database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
        except OSError as exc:
            _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))


@click.command("qwc", cls=_QwcCommand)
@click.argument("name")
@click.option("--url", metavar="URL", help="The address the Web Connector calls: https://HOST/qbwc (http only "
                                           "for localhost or a bare machine name).")
@click.option("--template", metavar="FILE", help="A template file, or the name of one in qwc_templates/ "
                                                 f"(default: {DEFAULT_TEMPLATE}{TEMPLATE_SUFFIX}).")
@click.option("--every-minutes", metavar="N", help="Auto-Run every N minutes (at least 1).")
@click.option("--every-seconds", metavar="N", help="Auto-Run every N seconds (RunEveryNSeconds; QBWC shows it "
                                                   "as Real Time).")
@click.option("--read-only", is_flag=True, default=False, help="Declare that the application only reads data.")
@click.option("--personal-data", metavar="not-needed|optional|required",
              help="PersonalDataPref: access to credit card and Social Security numbers.")
@click.option("--unattended", metavar="required|optional",
              help="UnattendedModePref: whether it must run with QuickBooks closed.")
@click.option("--auth-flags", metavar="0xF", help="QuickBooks editions allowed: 0x1 SimpleStart, 0x2 Pro, "
                                                  "0x4 Premier, 0x8 Enterprise, combined; 0x0 = all.")
@click.option("--output", "-o", metavar="FILE|-", help="Where to write it (default NAME.qwc here; - = stdout).")
@click.option("--app-name", help="AppName (default: the template's, qwc-service NAME).")
@click.option("--support-url", metavar="URL", help="AppSupport (default: the AppURL's host with /support).")
def qwc_command(name: str, url: str | None, template: str | None, every_minutes: str | None,
                every_seconds: str | None, read_only: bool, personal_data: str | None, unattended: str | None,
                auth_flags: str | None, output: str | None, app_name: str | None, support_url: str | None) -> None:
    """Write the .qwc file that adds connection NAME to the Web Connector.

    UserName, OwnerID and FileID come from the connection, so generating the
    file again gives the same application. The password is never in the
    file: it is typed into the Web Connector.
    """
    from . import connections, database
    from .config import Settings

    if not url:
        _fail("--url is required: the address the Web Connector calls, e.g. https://qb.example.com/qbwc")
    if every_minutes is not None and every_seconds is not None:
        _fail("give --every-minutes or --every-seconds, not both")
    personal = _choice(personal_data, PERSONAL_DATA, "PersonalDataPref", "--personal-data") if personal_data else None
    unattended_pref = _choice(unattended, UNATTENDED, "UnattendedModePref", "--unattended") if unattended else None
    chosen_template = load_template(template)

    settings = Settings.from_env()
    engine = database.make_engine(settings.database_url)
    try:
        database.upgrade(engine)
        with database.make_sessionmaker(engine).begin() as db:
            connection = connections.get_connection(db, name)
            data = render_for_connection(
                connection, url, template=chosen_template, app_name=app_name, support_url=support_url,
                every_minutes=every_minutes, every_seconds=every_seconds, read_only=read_only or None,
                personal_data=personal, unattended=unattended_pref, auth_flags=auth_flags,
            )
            summary = (f"UserName {connection.username}, OwnerID {connection.owner_id}, "
                       f"FileID {connection.file_id}")
            # Remember the schedule: health checks call a connection overdue after three of them.
            connection.run_every_seconds = schedule_seconds(data) or connection.run_every_seconds
    finally:
        engine.dispose()

    if output == "-":
        click.echo(data, nl=False)  # bytes go to the binary stream as they are
        return
    path = Path(output) if output else Path(default_file_name(name))
    path.write_bytes(data)
    click.echo(f"wrote {path} for connection {name!r} ({summary})")
    click.echo("In the Web Connector: Add an application, choose this file, then type the sync user's password.")


def schedule_seconds(document: bytes) -> int | None:
    """The Auto-Run interval a generated file asks for, in seconds (None without a Scheduler)."""
    root = etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))
    minutes = root.findtext("Scheduler/RunEveryNMinutes")
    seconds = root.findtext("Scheduler/RunEveryNSeconds")
    if minutes and minutes.strip().isdigit():
        return int(minutes) * 60
    if seconds and seconds.strip().isdigit():
        return int(seconds)
    return None
