"""Preflight: what the first call of a session says about trouble ahead.

QuickBooks describes itself on every session's first sendRequestXML
(``qbxml.HostFacts``). Some of those facts predict failures before any job
runs: the wrong QuickBooks user logged in, a person at the keyboard whose
rights apply instead, personal data switched off while jobs need it, another
company file open than last time, multi-user mode. Each warning carries the
fix, in the words of the QuickBooks menus.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .models import Connection, Job, JobState
from .qbxml import HostFacts

INTEGRATED_APPS = ("Edit > Preferences > Integrated Applications > Company Preferences > select this "
                   "application > Properties")
#: Elements that only appear in requests touching personal or sensitive data.
_PERSONAL_MARKERS = ("<SSN>", "<CreditCardInfo>", "<CreditCardNumber>", "<BirthDate>")


@dataclass(frozen=True)
class Warning:
    code: str
    summary: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def expected_user(connection: Connection) -> str:
    """The QuickBooks user that should run the sync: configured, or named like the sync user."""
    return connection.qb_user or connection.username


def check(facts: HostFacts, connection: Connection, needs_personal_data: bool) -> list[Warning]:
    warnings: list[Warning] = []
    expected = expected_user(connection)
    login = facts.automatic_login_user_name
    if facts.is_automatic_login is False:
        warnings.append(Warning(
            "keyboard-user",
            "QuickBooks was already open, so the rights of the person logged in at the keyboard applied, "
            f"not those of {expected!r}.",
            "Leave QuickBooks closed (or at the No Company Open screen) when the Web Connector runs, so it "
            f"opens the company file itself and logs in as {expected!r}.",
        ))
    elif login and login.casefold() != expected.casefold():
        warnings.append(Warning(
            "wrong-login-user",
            f"QuickBooks logged in as {login!r}, not the dedicated sync user {expected!r}: the wrong user is "
            "selected in Integrated Applications.",
            f"As Admin in single-user mode: {INTEGRATED_APPS} > Login as: choose {expected!r}. "
            f"(If {login!r} is right, run: qwc-service connection set {connection.name} --qb-user {login!r}.)",
        ))
    if facts.is_personal_data_access_allowed is False and needs_personal_data:
        warnings.append(Warning(
            "personal-data-off",
            "Queued jobs read or write personal data (social security or credit card numbers), but this "
            "application may not access personal data; QuickBooks will refuse them with 3261.",
            f"As Admin: {INTEGRATED_APPS} > tick 'Allow this application to access personal data such as "
            "Social Security Numbers and customer credit card information'.",
        ))
    if connection.last_file_id and facts.file_id and facts.file_id != connection.last_file_id:
        warnings.append(Warning(
            "other-company-file",
            f"Another company file is open than the one this connection synced before "
            f"({facts.company_name or 'unknown company'}, FileID {facts.file_id}; before: "
            f"{connection.last_company_name or 'unknown company'}, FileID {connection.last_file_id}).",
            "Close this company file and open the right one, or give this connection its company file path "
            f"(qwc-service connection set {connection.name} --company-file PATH).",
        ))
    elif (connection.last_company_name and facts.company_name
          and facts.company_name != connection.last_company_name and not facts.file_id):
        warnings.append(Warning(
            "other-company-file",
            f"The company open is {facts.company_name!r}; this connection synced "
            f"{connection.last_company_name!r} before.",
            "Make sure the right company file is open, or set the connection's company file path.",
        ))
    if facts.file_mode.lower() == "multiuser":
        warnings.append(Warning(
            "multi-user",
            "The company file is open in multi-user mode: records others have open are refused "
            "(3170/3175) and some changes need single-user mode.",
            "Schedule the sync when no one is working, or switch to single-user mode "
            "(File > Switch to Single-user Mode) while it runs; busy records are retried automatically.",
        ))
    return warnings


def needs_personal_data(db: Session, connection_id: int) -> bool:
    """Whether any queued job carries personal-data elements (checked once per session)."""
    return db.scalar(
        select(Job.id).where(
            Job.connection_id == connection_id,
            Job.state == JobState.QUEUED.value,
            or_(*(Job.request_xml.contains(marker) for marker in _PERSONAL_MARKERS)),
        ).limit(1)
    ) is not None


def remember(connection: Connection, facts: HostFacts) -> None:
    """Note the company file this session saw, to compare with the next one."""
    if facts.file_id:
        connection.last_file_id = facts.file_id
    if facts.company_name:
        connection.last_company_name = facts.company_name


#: For the troubleshooting guide: each warning, why it matters and the fix, in general terms.
CATALOG: dict[str, tuple[str, str, str]] = {
    "keyboard-user": (
        "QuickBooks was already open",
        "When QuickBooks is already open, the Web Connector works inside that session, so the rights of the person "
        "logged in at the keyboard apply, not those of the dedicated sync user. Requests that person may not make "
        "fail with 3260, and the sync works or fails depending on who is logged in.",
        "Leave QuickBooks closed, or at the No Company Open screen, when the Web Connector runs. It then opens the "
        "company file itself and logs in as the user chosen under Integrated Applications > Login as.",
    ),
    "wrong-login-user": (
        "The wrong user is selected in Integrated Applications",
        "QuickBooks logged in as someone other than the connection's dedicated sync user, so that user's rights "
        "applied. If it is Admin, everything works until someone changes Admin's password or rights.",
        f"As Admin in single-user mode: {INTEGRATED_APPS} > Login as: choose the dedicated sync user. If the user "
        "QuickBooks chose is the right one, tell qwc-service: qwc-service connection set NAME --qb-user USER.",
    ),
    "personal-data-off": (
        "Personal data is off for this application",
        "Queued jobs read or write social security or credit card numbers, which QuickBooks only allows an "
        "application when the Admin permits it; otherwise they fail with 3261.",
        f"As Admin: {INTEGRATED_APPS} > tick 'Allow this application to access personal data such as Social "
        "Security Numbers and customer credit card information'.",
    ),
    "other-company-file": (
        "Another company file is open",
        "The company file open in QuickBooks is not the one this connection synced before (its FileID or company "
        "name differs): jobs meant for one company could land in another.",
        "Close it and open the right company file, or give the connection its company file path "
        "(qwc-service connection set NAME --company-file PATH) so the Web Connector opens that file itself.",
    ),
    "multi-user": (
        "The company file is in multi-user mode",
        "Records that others have open are refused (3170, 3175) and some changes need single-user mode.",
        "Run the sync when no one is working, or switch to single-user mode (File > Switch to Single-user Mode) "
        "while it runs. Busy records are retried automatically.",
    ),
}


def markdown() -> str:
    """The preflight warnings as a section of the troubleshooting guide."""
    lines = ["## Preflight warnings", "",
             "Checked on the first call of every session, from what QuickBooks says about itself; they appear in "
             "the Web Connector's status text, `qwc-service connection show NAME`, the API and the status page.", ""]
    for code, (title, why, fix) in CATALOG.items():
        lines += [f"### {title} (`{code}`)", "", why, "", f"**Fix:** {fix}", ""]
    return "\n".join(lines)
