"""Turn QuickBooks and Web Connector failure codes into messages a bookkeeper can act on.

The people who read our errors are bookkeepers and operations staff looking at QBWC's status
column and log, not developers. A bare "3260 Insufficient permission level" sends them to the
Admin account, where everything works, and they conclude the integration is broken. So every
message here says what happened, *whose* rights applied, which right is probably missing for
that request, where the setting is in *their* QuickBooks edition, and what to do, in order.

Public API:

* :func:`diagnose` - a failure (code, QuickBooks' message, request type, :class:`FailureContext`)
  to a :class:`Diagnosis`: category, ``retryable``, ``stops_session``, a one-line ``summary`` for
  QBWC's status column (at most :data:`SUMMARY_LIMIT` characters, code included) and ``details``.
* :func:`explain` - an offline explanation of any code, known or not (``qwc-service explain``).
* :func:`troubleshooting_markdown` - the whole catalog as a Markdown troubleshooting page.
* :func:`permission_areas` - the QuickBooks permission area(s) a qbXML request probably needs.

The catalog itself (codes, categories, texts) is data: see :mod:`qwc_service.catalog` and
``qwc_service/data/catalog.json``; the request-to-area map is ``data/op_permission_map.csv``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qwc_service.catalog import (
    CatalogEntry,
    Category,
    Code,
    CodeKind,
    CodeRange,
    InvalidCode,
    PermissionAdvice,
    ProductFamily,
    Severity,
    TextStatus,
    catalog_entries,
    closing_date_rule,
    code_ranges,
    lookup,
    normalise_request_type,
    parse_code,
    permission_areas,
    permission_map_rows,
    product_family,
)

__all__ = [
    "CatalogEntry",
    "Category",
    "Code",
    "CodeKind",
    "CodeRange",
    "Diagnosis",
    "FailureContext",
    "InvalidCode",
    "PermissionAdvice",
    "ProductFamily",
    "SUMMARY_LIMIT",
    "Severity",
    "catalog_entries",
    "code_ranges",
    "diagnose",
    "explain",
    "lookup",
    "parse_code",
    "permission_areas",
    "product_family",
    "troubleshooting_markdown",
]

#: QBWC's status column is one line; longer texts are cut off on screen.
SUMMARY_LIMIT = 200

ENTERPRISE_USERS_MENU = "Company > Users > Set Up Users and Roles"
PRO_USERS_MENU = "Company > Set Up Users and Passwords > Set Up Users"
INTEGRATED_APPS_MENU = "Edit > Preferences > Integrated Applications > Company Preferences"
PERSONAL_DATA_OPTION = (
    "Allow this application to access personal data such as Social Security Numbers "
    "and customer credit card information"
)
CLOSING_DATE_MENU = "Edit > Preferences > Accounting > Company Preferences > Closing Date"
SINGLE_USER = "File > Switch to Single-user Mode"
MULTI_USER = "File > Switch to Multi-user Mode"

# Codes whose messages need more than the catalog's templates: they name users and rights.
_RIGHTS_CODES = frozenset({"3260", "3261", "3171"})
# Words in QuickBooks' own message that mark a 3170/3180 as a lock or concurrent edit.
_LOCK_WORDS = re.compile(
    r"modified by another user|another user|in use|being (?:edited|used)|lock|currently open|busy",
    re.IGNORECASE,
)
# Categories where QuickBooks' message (naming the field or record) belongs in the summary.
_MESSAGE_IN_SUMMARY = frozenset({Category.DATA, Category.FEATURE, Category.VERSION})
_PERMISSION_WORDS = re.compile(r"permission|not authori[sz]ed|access (?:is )?denied", re.IGNORECASE)


# -- context -----------------------------------------------------------------------------------


def _clean(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


@dataclass(frozen=True, kw_only=True)
class FailureContext:
    """What we know about the session a failure happened in; every field is optional.

    Field names match :class:`qwc_service.qbxml.HostFacts` (from strHCPResponse), so
    :meth:`from_host_facts` can take its ``to_dict()`` directly. ``None`` and empty strings both
    mean "unknown" and make the messages say so instead of guessing.
    """

    #: Our name for the connection (one .qwc file / one company).
    connection_name: str | None = None
    #: CompanyRet/CompanyName.
    company_name: str | None = None
    #: The user name this connection signs in to qwc-service with (the .qwc UserName typed into
    #: the Web Connector). It is not a QuickBooks user and grants no QuickBooks rights.
    sync_user_name: str | None = None
    #: HostRet/ProductName: tells Enterprise from Pro/Premier, whose user screens differ.
    product_name: str | None = None
    #: CurrentAppAccessRights/AutomaticLoginUserName: the Integrated Applications "Login as" user.
    automatic_login_user_name: str | None = None
    #: HostRet/IsAutomaticLogin: True when QBWC opened QuickBooks unattended (the "Login as"
    #: user's rights apply), False when QuickBooks was already open (the keyboard user's apply).
    is_automatic_login: bool | None = None
    #: CurrentAppAccessRights/IsAutomaticLoginAllowed.
    is_automatic_login_allowed: bool | None = None
    #: CurrentAppAccessRights/IsPersonalDataAccessAllowed.
    is_personal_data_access_allowed: bool | None = None
    #: The company file path the connection opens ("" = whatever file is open in QuickBooks).
    company_file_path: str | None = None
    #: HostRet/QBFileMode: "SingleUser" or "MultiUser".
    file_mode: str | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("is_"):
                if value is not None and not isinstance(value, bool):
                    object.__setattr__(self, f.name, _to_bool(value))
            else:
                object.__setattr__(self, f.name, _clean(value) or None)

    @classmethod
    def from_host_facts(cls, facts: Mapping[str, Any] | None, **known: Any) -> FailureContext:
        """Build from ``HostFacts.to_dict()`` (or any mapping); ``known`` adds or overrides fields.

        Unknown keys are ignored, so the facts dict may carry more than we use.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in (facts or {}).items() if k in names}
        values.update({k: v for k, v in known.items() if k in names})
        unexpected = set(known) - names
        if unexpected:
            raise TypeError(f"unknown FailureContext fields: {sorted(unexpected)}")
        return cls(**values)

    @property
    def family(self) -> ProductFamily:
        return product_family(self.product_name)


def _to_bool(value: Any) -> bool | None:
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    return None


# -- rendering helpers ---------------------------------------------------------------------------


def _q(text: str, limit: int = 60) -> str:
    """Quote a name for a message, shortening very long names so summaries stay short."""
    text = _clean(text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return f'"{text}"'


class _Vars(dict[str, str]):
    """Placeholder values; an unknown placeholder is a catalog bug and must fail loudly."""

    def __missing__(self, key: str) -> str:
        raise KeyError(f"catalog text uses an unknown placeholder {{{key}}}")


def _users_menu(family: ProductFamily) -> str:
    if family is ProductFamily.ENTERPRISE:
        return ENTERPRISE_USERS_MENU
    if family is ProductFamily.PRO_PREMIER:
        return PRO_USERS_MENU
    return f"{ENTERPRISE_USERS_MENU} (Enterprise) or {PRO_USERS_MENU} (Pro/Premier)"


def _vars(ctx: FailureContext) -> _Vars:
    conn, company, path = ctx.connection_name, ctx.company_name, ctx.company_file_path
    if company and path:
        company_file = f"the company file {_q(company)} ({path})"
    elif company or path:
        company_file = f"the company file {_q(company or path or '', 200)}"
    else:
        company_file = "the company file"
    login = ctx.automatic_login_user_name
    return _Vars(
        connection=f"connection {_q(conn)}" if conn else "this connection",
        company_file=company_file,
        login_user=f'the "Login as" user {_q(login)}' if login else 'the "Login as" user chosen for this application',
        app=f"the application of connection {_q(conn)}" if conn else "this application",
        qbwc_user=f"Web Connector user {_q(ctx.sync_user_name or '')}" if ctx.sync_user_name
        else "the user name in its .qwc file",
        users_menu=_users_menu(ctx.family),
    )


def _render(template: str, values: _Vars) -> str:
    return template.format_map(values)


def _sentence(text: str) -> str:
    text = text.strip()
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ":")) else text + "."


def _fit(candidates: list[str]) -> str:
    """The first candidate within SUMMARY_LIMIT; else the last one cut at a word boundary."""
    for text in candidates:
        if len(text) <= SUMMARY_LIMIT:
            return text
    text = candidates[-1][: SUMMARY_LIMIT - 1]
    return text.rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _prefix(code: Code, severity: Severity) -> str:
    """How the summary names the code: the first words an operator reads."""
    if code.kind is CodeKind.QBWC:
        return f"Web Connector error {code}"
    word = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "status"}[severity]
    return f"QuickBooks {word} {code}"


# -- whose rights applied ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Who:
    """The QuickBooks user whose rights applied, in the forms the messages need."""

    short: str  # for summaries: 'QuickBooks user "sync"'
    target: str  # whom to edit in user setup
    lacking: str  # who lacks the right (for "Admin works" note)
    paragraph: str  # the full explanation


def _who(ctx: FailureContext) -> _Who:
    name = ctx.automatic_login_user_name
    where = f"{INTEGRATED_APPS_MENU} > (the application) > Properties"
    if ctx.is_automatic_login is True:
        if name:
            return _Who(
                short=f"QuickBooks user {_q(name, 40)}",
                target=f"the user {_q(name)}",
                lacking=f"the QuickBooks user {_q(name)}",
                paragraph=(
                    "QuickBooks was not open, so the Web Connector opened it unattended and logged in as the "
                    f'"Login as" user chosen for this application ({where}): QuickBooks user {_q(name)}. '
                    "That user's rights are the ones that applied."
                ),
            )
        return _Who(
            short='the "Login as" QuickBooks user',
            target=f'the user chosen in "Login as" for this application ({where})',
            lacking='the "Login as" user',
            paragraph=(
                "QuickBooks was not open, so the Web Connector opened it unattended and logged in as the "
                f'"Login as" user chosen for this application ({where}); QuickBooks did not report that '
                "user's name. That user's rights are the ones that applied."
            ),
        )
    if ctx.is_automatic_login is False:
        later = (
            f" When QuickBooks is closed, the Web Connector logs in as the \"Login as\" user {_q(name)} instead, "
            "so the same job can work in one run and fail in another."
            if name else ""
        )
        if ctx.is_automatic_login_allowed is False:
            later += (" Unattended login is not allowed for this application (Integrated Applications), so the "
                      "sync always runs with the rights of whoever is logged in.")
        return _Who(
            short="the user logged in to QuickBooks",
            target=(
                "the user who was logged in to QuickBooks when the sync ran (QuickBooks does not tell the "
                "application who that was: ask, or close QuickBooks before the sync runs so the \"Login as\" "
                "user is used)"
            ),
            lacking="the user who was logged in to QuickBooks at the time",
            paragraph=(
                "QuickBooks was already open when the Web Connector ran, so the rights were those of the user "
                "logged in at the keyboard. QuickBooks does not tell the application who that was, so we do not "
                f"know the name.{later}"
            ),
        )
    login = f" ({_q(name)})" if name else ""
    return _Who(
        short="the QuickBooks user the sync ran as",
        target=(f"the user {_q(name)}, or the user who was logged in if QuickBooks was already open" if name
                else "the QuickBooks user the sync runs as"),
        lacking=f"the QuickBooks user the sync ran as{login}",
        paragraph=(
            "If QuickBooks was closed, the Web Connector opened it unattended as the \"Login as\" user chosen "
            f"for this application in {INTEGRATED_APPS_MENU}{login}; if QuickBooks was already open, the "
            "rights were those of the user logged in at the keyboard, whose name QuickBooks does not report."
        ),
    )


# -- the diagnosis -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong, what the session should do about it, and what to tell people.

    ``summary`` is one line for QBWC's status column (getLastError / closeConnection): its first
    sentence stands on its own and contains the code. ``details`` is the full text for the log
    and the job's error, with numbered steps.
    """

    #: The canonical code ("3260", "0x80040408", "QBWC1012"), or the raw text if unreadable.
    code: str
    kind: CodeKind | None
    title: str
    category: Category
    severity: Severity
    retryable: bool
    stops_session: bool
    summary: str
    details: str
    #: False when the code is not in the catalog (the range's defaults applied) or unreadable.
    listed: bool
    request_type: str = ""
    #: For permission codes with a request type: the areas that request probably needs.
    permission: PermissionAdvice | None = None

    @property
    def fails_job(self) -> bool:
        """Warnings and information do not fail the job; they are worth logging only."""
        return self.severity is Severity.ERROR

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (enums as strings), for storing on a job or serving over an API."""
        return {
            "code": self.code,
            "kind": str(self.kind) if self.kind else None,
            "title": self.title,
            "category": str(self.category),
            "severity": str(self.severity),
            "retryable": self.retryable,
            "stops_session": self.stops_session,
            "summary": self.summary,
            "details": self.details,
            "listed": self.listed,
            "request_type": self.request_type,
        }


@dataclass
class _Parts:
    """A diagnosis before it is turned into text: shared by plain text and Markdown output."""

    header: str
    where: str = ""
    said: str = ""
    what: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    note: str = ""
    outcome: str = ""


def _outcome(entry: CatalogEntry) -> str:
    if entry.severity is Severity.INFO:
        return "Not an error: the job is not failed for it."
    if entry.severity is Severity.WARNING:
        return "A warning: the request was processed, so the job is not failed for it."
    if entry.stops_session:
        retry = ("A later run can succeed once the cause is gone." if entry.retryable
                 else "Retrying will not help until this is fixed.")
        return f"The sync session stops here, since nothing else can work until this is dealt with. {retry}"
    if entry.retryable:
        return "Only this job fails and the rest of the sync goes on; a later retry can succeed."
    return "Only this job fails and the rest of the sync goes on; retrying it will not help until this is fixed."


def _where(ctx: FailureContext, request_type: str) -> str:
    bits = []
    if ctx.connection_name:
        bits.append(f"connection {_q(ctx.connection_name)}")
    if ctx.company_name:
        bits.append(f"company {_q(ctx.company_name)}")
    if ctx.company_file_path:
        bits.append(f"file {ctx.company_file_path}")
    if ctx.product_name:
        bits.append(ctx.product_name)
    if ctx.sync_user_name:
        bits.append(f"Web Connector user {_q(ctx.sync_user_name)}")
    if request_type:
        bits.append(f"request {request_type}")
    return "; ".join(bits)


# Reference texts worth quoting in a message; paraphrases and truncated rows only confuse.
_SHOWN_TEXT = frozenset({TextStatus.OFFICIAL, TextStatus.REAL_RESPONSE, TextStatus.QUOTED})


def _said(entry: CatalogEntry, message: str) -> str:
    if message:
        return f"QuickBooks said: {_q(message, 600)}"
    if entry.official_text and entry.text_status in _SHOWN_TEXT:
        how = {
            TextStatus.OFFICIAL: "Intuit's text for this code",
            TextStatus.REAL_RESPONSE: "QuickBooks' usual text for this code (from real responses)",
        }.get(entry.text_status, "Reference text for this code (not verified as Intuit's wording)")
        return f"{how}: {_q(entry.official_text, 600)}"
    return ""


def _admin_single(values: _Vars) -> str:
    return (f"Log in to QuickBooks as Admin with {values['company_file']} open and switch to single-user mode "
            f"({SINGLE_USER}): only Admin can change these settings, and users' rights only in single-user mode.")


def _multi_back() -> str:
    return (f"Switch back to multi-user mode ({MULTI_USER}) if others work in the file, "
            "then run the Web Connector again.")


def _edit_user_step(family: ProductFamily, who: _Who, right: str) -> str:
    enterprise = (f"in {ENTERPRISE_USERS_MENU}, select {who.target}, see which roles it has, and on the Role List "
                  f"edit one of them (or give it another role) so that it has {right}")
    pro = (f"in {PRO_USERS_MENU}, select {who.target}, click Edit User, choose \"Selected areas of QuickBooks\" "
           f"and on the pages that follow give {right}")
    if family is ProductFamily.ENTERPRISE:
        return _sentence(enterprise[0].upper() + enterprise[1:])
    if family is ProductFamily.PRO_PREMIER:
        return _sentence(pro[0].upper() + pro[1:])
    return _sentence(f"QuickBooks Enterprise: {enterprise}. QuickBooks Pro/Premier: {pro}")


def _area_section(advice: PermissionAdvice, family: ProductFamily) -> str:
    if not advice.known:
        return (
            f"The permission map has no entry for {advice.request_type}, and QuickBooks' message does not say "
            "which right is missing. To find it, log in to QuickBooks as the user the sync runs as and do the same "
            "thing by hand (for example, enter the same kind of record): QuickBooks then names what is not allowed."
        )
    hedge = "probably needs" if advice.inferred else "needs"
    by_edition: dict[str, list[str]] = {}
    for label, area in advice.lines_for(family):
        by_edition.setdefault(label, []).append(area)
    lines = "; ".join(f"{label}: {' plus '.join(areas)}" for label, areas in by_edition.items())
    why = " (inferred from the request name; Intuit does not document this per request)" if advice.inferred else ""
    return f"{advice.request_type} {hedge}{why}: {lines}."


def _parts_rights(entry: CatalogEntry, variant: str, request_type: str, ctx: FailureContext,
                  values: _Vars) -> tuple[_Parts, PermissionAdvice | None, str]:
    """3260, 3261 and 3171 (``variant``): the messages that must name users, rights and menus.

    ``variant`` differs from ``entry.code`` only for an unlisted code whose message speaks of
    permission: it is explained like 3260 but keeps its own number.
    """
    code = entry.code
    family = ctx.family
    who = _who(ctx)
    req = request_type or "the request"
    company = f" in company {_q(ctx.company_name, 40)}" if ctx.company_name else ""
    parts = _Parts(header=f"{_prefix(code, entry.severity)}: {entry.title}.")
    parts.what = _render(entry.explanation, values)
    if request_type:
        parts.what += f" The request that failed: {request_type}."
    parts.sections.append(("Whose rights applied", who.paragraph))
    advice: PermissionAdvice | None = None
    pfx = _prefix(code, entry.severity)

    if variant == "3260":
        advice = permission_areas(request_type) if request_type else None
        if advice is not None:
            parts.sections.append(("Which right is missing", _area_section(advice, family)))
            right = ("the access described above" if advice.known
                     else "access to the area that covers this kind of record")
        else:
            parts.sections.append(("Which right is missing", (
                "QuickBooks' message does not say, and the failed request is not known here. The permission map "
                "(in \"qwc-service explain 3260\" and the troubleshooting guide) gives the area each kind of "
                "request probably needs.")))
            right = "access to the area that covers the failed request"
        parts.steps = [
            _admin_single(values),
            _edit_user_step(family, who, right),
            ("Some operations, credit card refunds for example, may need Admin-level rights; QuickBooks does not "
             "document this per request. If granting the area does not help, give the user full access for a test "
             "(Pro/Premier: \"All areas of QuickBooks\"; Enterprise: the Full Access role), then narrow it down."),
            _multi_back(),
        ]
        parts.note = (
            "If the same thing works when you try it logged in as Admin, that is expected: Admin has every right, "
            f"and {who.lacking} is the one lacking this one. To reproduce the problem, log in as that user instead."
        )
        area = advice.short_area(family) if advice else ""
        hint = f" (probably {area})" if area and advice and advice.inferred else (f" ({area})" if area else "")
        summary = _fit([
            f"{pfx}: {who.short} may not run {req}{company}. An Admin must grant the right{hint}.",
            f"{pfx}: {who.short} may not run {req}. An Admin must grant the right{hint}.",
            f"{pfx}: {who.short} may not run {req}{company}. An Admin must grant the right.",
            f"{pfx}: {who.short} may not run {req}. An Admin must grant the right.",
            f"{pfx}: the QuickBooks user lacks the right to run {req}; an Admin must grant it.",
        ])
    elif variant == "3261":
        state = ""
        if ctx.is_personal_data_access_allowed is False:
            state = "QuickBooks reports that this application is not allowed to access personal data."
        elif ctx.is_personal_data_access_allowed is True:
            state = ("QuickBooks reports that personal-data access is allowed for this application, so the QuickBooks "
                     "user probably lacks the rights to that data itself (step 3).")
        if state:
            parts.sections.insert(0, ("Current setting", state))
        data_rights = {
            ProductFamily.ENTERPRISE: ("the credit card activities of Customers & Receivables (View/Use Credit Card "
                                       "Numbers) or, for Social Security numbers, Employees & Payroll"),
            ProductFamily.PRO_PREMIER: ("Sales and Accounts Receivable with \"View complete customer credit card "
                                        "numbers\", or, for Social Security numbers, Payroll and Employees"),
        }.get(family, ("Enterprise: the credit card activities of Customers & Receivables or Employees & Payroll; "
                       "Pro/Premier: Sales and Accounts Receivable (credit card numbers) or Payroll and Employees "
                       "(Social Security numbers)"))
        parts.steps = [
            _admin_single(values),
            (f"Open {INTEGRATED_APPS_MENU}, select {values['app']}, click Properties and tick "
             f"\"{PERSONAL_DATA_OPTION}\"; click OK twice."),
            (f"If it was already ticked, {who.target} probably lacks the rights to the data itself: in "
             f"{values['users_menu']} give it {data_rights}."),
            ("If the option cannot be ticked, the application's .qwc file may declare that it needs no personal data "
             "(PersonalDataPref): generate it again with personal data optional or required and add it again."),
            _multi_back(),
        ]
        summary = _fit([
            f"{pfx}: this application may not access personal data (credit card or Social Security numbers){company}. "
            f"An Admin must allow it in Integrated Applications.",
            f"{pfx}: this application may not access personal data. An Admin must allow it in Integrated Applications.",
        ])
    else:  # 3171
        closing = closing_date_rule()
        enterprise_right = closing.enterprise if closing else "Accounting > Edit Closed Transactions"
        rights = {
            ProductFamily.ENTERPRISE: (f"In {ENTERPRISE_USERS_MENU}, give one of the roles of {who.target} the "
                                       f"activity {enterprise_right}."),
            ProductFamily.PRO_PREMIER: (f"In {PRO_USERS_MENU}, edit {who.target}: on the Changing or Deleting "
                                        "Transactions page, answer Yes to changing transactions recorded before "
                                        "the closing date (the \"Changing Closed Transactions\" right)."),
        }.get(family, (f"The QuickBooks user also needs the right to change closed periods: Enterprise: in "
                       f"{ENTERPRISE_USERS_MENU}, the role activity {enterprise_right}; Pro/Premier: in "
                       f"{PRO_USERS_MENU}, Yes to changing transactions recorded before the closing date on the "
                       "Changing or Deleting Transactions page."))
        parts.steps = [
            ("First ask your accountant whether the record really belongs in the closed period. Usually the better "
             "fix is to give it a date after the closing date in the system that sent it, then send it again."),
            "If it must go in the closed period: " + _admin_single(values)[0].lower() + _admin_single(values)[1:],
            (f"Open {CLOSING_DATE_MENU} (Set Date/Password) and remove the closing-date password, or move the "
             "closing date, for the time of the sync."),
            rights,
            _multi_back() + " Afterwards restore the closing date and its password.",
        ]
        summary = _fit([
            f"{pfx}: {req} is dated on or before the closing date{company}. Re-date it, or an Admin must open the "
            "closed period (Closing Date preference).",
            f"{pfx}: {req} is dated on or before the closing date. "
            "Re-date it, or an Admin must open the closed period.",
            f"{pfx}: the transaction is dated on or before the company's closing date.",
        ])
    return parts, advice, summary


def _refine(entry: CatalogEntry, message: str) -> CatalogEntry:
    """Adjust a catalog entry with what QuickBooks' own message says.

    * 3170/3180 wrap an inner QuickBooks message. It is usually a lock or a concurrent edit
      (transient), but can be a business rule ("The credit limit ... has been exceeded") that no
      retry fixes: without lock words in the message, treat it as a data error.
    * An unlisted code whose message speaks of permission gets the permission treatment.
    """
    code = str(entry.code)
    if code in {"3170", "3180"} and message and not _LOCK_WORDS.search(message):
        return dataclasses.replace(
            entry, category=Category.DATA, retryable=False,
            summary=("QuickBooks refused to save the record for the reason in its message "
                     "(not a lock, so a retry will not help)."),
            explanation=(entry.explanation + " Here QuickBooks' own message does not point at another user or a "
                         "lock, so it is treated as a problem with the record."),
        )
    if not entry.listed and entry.code.kind is CodeKind.QBXML and message and _PERMISSION_WORDS.search(message):
        base = lookup(3260)
        return dataclasses.replace(
            base, code=entry.code, title="Permission refused (unlisted code)", listed=False,
            range_label=entry.range_label, official_message="", text_status=TextStatus.NONE, source="",
        )
    return entry


def _compose(entry: CatalogEntry, message: str, request_type: str,
             ctx: FailureContext) -> tuple[_Parts, str, PermissionAdvice | None]:
    values = _vars(ctx)
    code = entry.code
    advice: PermissionAdvice | None = None
    # Unlisted codes only reach the permission category through _refine (no range defaults to it).
    variant = str(code) if str(code) in _RIGHTS_CODES else (
        "3260" if not entry.listed and entry.category is Category.PERMISSION else "")
    if variant:
        parts, advice, summary = _parts_rights(entry, variant, request_type, ctx, values)
    else:
        parts = _Parts(header=f"{_prefix(code, entry.severity)}: {entry.title}.")
        parts.what = _render(entry.explanation, values)
        if entry.category is Category.COMPANY_FILE and ctx.file_mode:
            parts.sections.append(("Reported by QuickBooks", f"the company file was open in {ctx.file_mode} mode."))
        parts.steps = [_render(step, values) for step in entry.action]
        req = f" ({request_type})" if request_type and code.kind is not CodeKind.QBWC else ""
        clause = _render(entry.summary, values).strip()
        clause = clause if clause.endswith((".", "!", "?")) else clause + "."
        bases = [f"{_prefix(code, entry.severity)}{req}: {clause}", f"{_prefix(code, entry.severity)}: {clause}"]
        candidates: list[str] = []
        if message and (not entry.listed or entry.category in _MESSAGE_IN_SUMMARY):
            # QuickBooks' own words name the field or record at fault (a customer's name, a value):
            # worth more than our generic clause when both do not fit.
            short = f"{_prefix(code, entry.severity)}{req}: {entry.title}."
            candidates += [f'{base} QuickBooks said: "{message}"' for base in (bases[0], short)]
            for base in (bases[0], short):
                room = SUMMARY_LIMIT - len(base) - len(' QuickBooks said: "…"')
                if room >= 40:
                    candidates.append(f'{base} QuickBooks said: "{message[:room].rstrip()}…"')
        summary = _fit(candidates + bases)
    parts.where = _where(ctx, request_type)
    parts.said = _said(entry, message)
    if not entry.listed:
        advice_from = ("Its message speaks of permission, so it is explained like 3260." if variant
                       else "The advice below is the default for that range.")
        parts.sections.insert(0, ("Unlisted code", (
            f"{code} is not in our catalog; it falls in the range {entry.range_label}. {advice_from}")))
    parts.outcome = _outcome(entry)
    return parts, summary, advice


def _text(parts: _Parts) -> str:
    out = [parts.header]
    if parts.where:
        out.append(f"Where: {parts.where}.")
    if parts.said:
        out.append(parts.said)
    if parts.what:
        out.append(f"What happened: {parts.what}")
    out += [f"{title}: {body}" for title, body in parts.sections]
    if parts.steps:
        out.append("What to do:")
        out += [f"  {i}. {step}" for i, step in enumerate(parts.steps, 1)]
    if parts.note:
        out.append(f"Note: {parts.note}")
    if parts.outcome:
        out.append(parts.outcome)
    return "\n".join(out)


def diagnose(
    code: Code | int | str | None,
    message: str | None = "",
    request_type: str | None = None,
    context: FailureContext | None = None,
) -> Diagnosis:
    """Explain one failure for the people who must fix it, and classify it for the session.

    ``code`` is a qbXML statusCode, an HRESULT in any of QBWC's spellings, or a QBWC code;
    ``message`` is QuickBooks' (or QBWC's) text; ``request_type`` is the failed request such as
    ``ARRefundCreditCardAdd`` (``...Rq`` also accepted); ``context`` what the session knows.

    Never raises: a code that cannot be read at all is diagnosed as an unreadable internal error
    that stops the session (the safe choice when we cannot tell what QuickBooks meant).
    """
    ctx = context or FailureContext()
    message = _clean(message)
    request = normalise_request_type(request_type)
    try:
        entry = lookup(code if code is not None else "")
    except InvalidCode:
        raw = _clean(code) or "(none)"
        what = (f"QuickBooks error {raw}: not a code we can read" if _clean(code)
                else "QuickBooks failed without an error code")
        summary = _fit([f"{what}; it said {_q(message, 120)}." if message else f"{what}.", f"{what}."])
        parts = _Parts(
            header=f"Unreadable failure code {raw}.",
            where=_where(ctx, request),
            said=f"QuickBooks said: {_q(message, 600)}" if message else "",
            what=("The failure came with a code that is not a qbXML status code, an HRESULT or a Web Connector "
                  "code, so we cannot tell what went wrong; the session stops to be safe."),
            steps=["Read the message that came with it, and the Web Connector log (QWCLog.txt).",
                   "If it keeps happening, report it to the maintainers of qwc-service with the log entry."],
            outcome="The sync session stops here.",
        )
        return Diagnosis(code=raw, kind=None, title="Unreadable failure code", category=Category.INTERNAL,
                         severity=Severity.ERROR, retryable=False, stops_session=True, summary=summary,
                         details=_text(parts), listed=False, request_type=request)
    entry = _refine(entry, message)
    parts, summary, advice = _compose(entry, message, request, ctx)
    return Diagnosis(
        code=str(entry.code), kind=entry.code.kind, title=entry.title, category=entry.category,
        severity=entry.severity, retryable=entry.retryable, stops_session=entry.stops_session,
        summary=summary, details=_text(parts), listed=entry.listed, request_type=request, permission=advice,
    )


# -- explain ------------------------------------------------------------------------------------

_TEXT_STATUS_WORDS = {
    TextStatus.OFFICIAL: "Intuit's wording",
    TextStatus.QUOTED: "quoted by third parties, not checked against an Intuit page",
    TextStatus.REAL_RESPONSE: "as seen in real QuickBooks responses",
    TextStatus.PARAPHRASE: "a paraphrase; the official text was not found",
    TextStatus.NOT_FOUND: "a description; the official text was not found",
    TextStatus.TRUNCATED: "cut off in the source",
    TextStatus.SAMPLE_TEXT: "an Intuit sample's own wording, not QuickBooks' message",
    TextStatus.NONE: "none",
}
_KIND_WORDS = {
    CodeKind.QBXML: "qbXML status code (statusCode on a qbXML response)",
    CodeKind.HRESULT: "QuickBooks request-processor HRESULT (hresult sent by the Web Connector)",
    CodeKind.QBWC: "Web Connector code (QBWC's own log and status column)",
}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _map_lines() -> list[str]:
    return [f"  - {row.requests}: Pro/Premier: {row.pro_premier}; Enterprise: {row.enterprise}"
            f"{' (inferred)' if row.inferred else ' (documented)'}" for row in permission_map_rows()]


def explain(code: Code | int | str | None) -> str:
    """A full offline explanation of any code, for ``qwc-service explain CODE``. Never raises."""
    try:
        parsed = parse_code(code if code is not None else "")
    except InvalidCode:
        raw = _clean(code) or "(empty)"
        return (f"{raw!r} is not a code qwc-service can read.\n"
                "Codes look like 3260 (qbXML status), 0x80040408, 80040408 or -2147220472 "
                "(QuickBooks request-processor HRESULT) or QBWC1012 (Web Connector).")
    entry = lookup(parsed)
    parts, _, _ = _compose(entry, "", "", FailureContext())
    lines = [f"{parsed}: {entry.title}"]
    kind = _KIND_WORDS[parsed.kind]
    if parsed.kind is CodeKind.HRESULT:
        kind += f"; signed decimal {parsed.signed}"
    lines.append(f"Kind: {kind}.")
    if entry.listed:
        if entry.range_label:
            lines.append(f"Range: {entry.range_label}.")
    else:
        lines.append(f"Not in the catalog. Range: {entry.range_label or 'none documented'}.")
    lines.append(f"Category: {entry.category}. Severity: {entry.severity}. A retry can help: {_yes(entry.retryable)}. "
                 f"Stops the sync session: {_yes(entry.stops_session)}.")
    if entry.official_message:
        lines.append(f"Reference text ({_TEXT_STATUS_WORDS[entry.text_status]}): {_q(entry.official_text, 1000)}")
    if entry.reference_category and entry.reference_category != str(entry.category):
        lines.append(f"(The reference lists it as '{entry.reference_category}'; here it is '{entry.category}'.)")
    if entry.source:
        lines.append(f"Source: {entry.source}")
    body = _text(dataclasses.replace(parts, header="", said="", outcome=""))
    lines.append(body.strip())
    if str(parsed) == "3260":
        lines.append("Rights each kind of request probably needs (from the permission map):")
        lines += _map_lines()
    return "\n".join(line for line in lines if line)


# -- troubleshooting document --------------------------------------------------------------------

CATEGORY_ORDER = (
    Category.PERMISSION, Category.COMPANY_FILE, Category.CONNECTION, Category.TRANSIENT,
    Category.DATA, Category.VERSION, Category.FEATURE, Category.INTERNAL,
)
CATEGORY_INTRO = {
    Category.PERMISSION: ("A QuickBooks user or the application lacks a right. Only the QuickBooks Admin can change "
                          "it; the sync session stops until then. The Admin account working is expected: the user "
                          "the sync runs as is the one lacking the right."),
    Category.COMPANY_FILE: ("The wrong company file is open, it is open in the wrong mode, or it cannot be opened "
                            "or locked. The session stops; close what is named, or leave QuickBooks closed."),
    Category.CONNECTION: ("The service, the Web Connector and QuickBooks could not reach each other. The session "
                          "stops; many of these go away on the next run once the cause is fixed."),
    Category.TRANSIENT: ("A passing conflict, usually someone else editing the same record. Only the job is "
                         "affected and a later retry usually works."),
    Category.DATA: "QuickBooks refused the content of one record. Only that job fails; fix the data and resend.",
    Category.VERSION: "A qbXML, QuickBooks or Web Connector version mismatch.",
    Category.FEATURE: "The QuickBooks edition or the company's preferences lack a feature the request needs.",
    Category.INTERNAL: ("A fault inside QuickBooks, the Web Connector or qwc-service, or a Web Connector "
                        "housekeeping message."),
}


def _md(text: str) -> str:
    """Escape what Markdown would misread in our texts: HTML-like <name> placeholders, pipes, stars.

    A bare "&" is left alone: it renders as itself and keeps "Customers & Receivables" readable.
    """
    return text.replace("<", "&lt;").replace("|", "\\|").replace("*", "\\*")


def _md_section(entry: CatalogEntry) -> list[str]:
    parts, _, _ = _compose(entry, "", "", FailureContext())
    out = [f"### {entry.code}: {_md(entry.title)}", ""]
    out.append(f"*{_md(_KIND_WORDS[entry.code.kind])}.* Severity: {entry.severity}. "
               f"Retry can help: {_yes(entry.retryable)}. Stops the session: {_yes(entry.stops_session)}.")
    out.append("")
    if entry.official_message:
        out.append(f"> {_md(entry.official_text)}")
        out.append(f"> ({_md(_TEXT_STATUS_WORDS[entry.text_status])})")
        out.append("")
    if parts.what:
        out += [_md(parts.what), ""]
    for title, body in parts.sections:
        out += [f"**{_md(title)}.** {_md(body)}", ""]
    for i, step in enumerate(parts.steps, 1):
        out.append(f"{i}. {_md(step)}")
    if parts.steps:
        out.append("")
    if parts.note:
        out += [f"**Note.** {_md(parts.note)}", ""]
    return out


def troubleshooting_markdown() -> str:
    """The catalog as a troubleshooting page: code forms, ranges, then one section per code by category.

    Generated, so it cannot drift from what the service says; regenerate ``docs/troubleshooting.md``
    whenever ``catalog.json`` or the permission map changes.
    """
    out = [
        "# Troubleshooting: QuickBooks and Web Connector codes",
        "",
        "Generated from `qwc_service/data/catalog.json` by `qwc_service.diagnosis.troubleshooting_markdown()`; "
        "do not edit by hand. `qwc-service explain CODE` prints the same for one code.",
        "",
        "Codes come in three forms: qbXML status codes (`3260`), QuickBooks request-processor HRESULTs "
        "(`0x80040408`, also written `80040408` or, as the Web Connector sometimes sends it, `-2147220472`) and "
        "Web Connector codes (`QBWC1012`). Texts in quotes are the reference wording; where it is not Intuit's "
        "own, the note under it says so. Steps say \"the company file\" and \"this application\" where the "
        "service's own messages name the actual file, connection and QuickBooks user.",
        "",
        "## Codes not listed here",
        "",
        "| Kind | Range | Meaning | Category | Severity | Retry can help | Stops the session |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in code_ranges():
        out.append(f"| {r.kind} | {r.describe()} | {_md(r.explanation)} | {r.category} | {r.severity} | "
                   f"{_yes(r.retryable)} | {_yes(r.stops_session)} |")
    out.append("")
    entries = catalog_entries()
    for category in CATEGORY_ORDER:
        group = [e for e in entries if e.category is category]
        if not group:
            continue
        out += [f"## {category.value.replace('-', ' ').capitalize()}", "", _md(CATEGORY_INTRO[category]), ""]
        if category is Category.PERMISSION:
            out += [
                "Which QuickBooks area a request probably needs (from `op_permission_map.csv`; names grouped as "
                "in the map; a Mod/Del/Void of a transaction also needs Changing or Deleting Transactions, a "
                "query the area's view rights):",
                "",
                "| Requests | Pro/Premier area | Enterprise role area | Confidence |",
                "|---|---|---|---|",
            ]
            out += [f"| {_md(row.requests)} | {_md(row.pro_premier)} | {_md(row.enterprise)} | {_md(row.note)} |"
                    for row in permission_map_rows()]
            out.append("")
        for entry in group:
            out += _md_section(entry)
    return "\n".join(out).rstrip() + "\n"
