"""The words QuickBooks uses when something goes wrong: qbXML status codes and HRESULTs.

Texts come from ``/work/shared/reference/status_codes.csv`` (official where the
CSV has official text, real responses otherwise). A server's error handling is
often keyed on these messages as much as on the codes, so the fake repeats
them verbatim where they are known, and says plainly that it is simulating
where they are not.
"""

from __future__ import annotations

from .faults import Severity

#: statusMessage per statusCode. ``{kind}`` is the object type of the
#: request (``Invoice``), ``{name}`` the record name or ID it concerns,
#: ``{value}`` an offending value. 3261's official text is truncated in every
#: source found; the tail here completes it in the same words.
STATUS_MESSAGES: dict[int, str] = {
    0: "Status OK",
    1: "A query request did not find a matching object in QuickBooks",
    500: (
        "The query request has not been fully completed. There was a required element "
        '("{name}") that could not be found in QuickBooks.'
    ),
    1000: "There has been an internal error when processing the request.",
    3100: 'The name "{name}" of the list element is already in use.',
    3120: (
        'Object "{name}" specified in the request cannot be found.  QuickBooks error message: '
        "Invalid argument.  The specified record does not exist in the list."
    ),
    3140: (
        'There is an invalid reference to QuickBooks {kind} "{name}" in the {owner}.  '
        "QuickBooks error message: Invalid argument.  The specified record does not exist in the list."
    ),
    3170: (
        'There was an error when modifying a {kind} named "{name}".  QuickBooks error message: '
        "This list has been modified by another user."
    ),
    3171: (
        "An attempt was made to modify a {kind} with a date that is on or before the closing date "
        "of the company. If you are sure you really want to do this, please ask a user with Admin "
        "privileges to remove the password for editing transactions on or before to closing date "
        "(this setting is in the Accounting Company Preferences), then try again."
    ),
    3180: (
        'There was an error when saving a {kind} "{name}". QuickBooks error message: '
        "This list has been modified by another user."
    ),
    3200: 'The provided edit sequence "{value}" is out-of-date.',
    3210: 'The "{name}" field has an invalid value "{value}".  QuickBooks error message: {detail}',
    3231: "The request has not been processed.",
    3250: "This feature is not enabled or not available in this version of QuickBooks.",
    3260: "Insufficient permission level to perform this action.",
    3261: "The integrated application has no permission to access personal data.",
    3391: 'The iteratorID "{value}" is not valid.',
}

#: The request processor's HRESULT texts (ProcessRequest and OpenConnection/BeginSession).
HRESULT_MESSAGES: dict[str, str] = {
    "0x80040400": "QuickBooks found an error when parsing the provided XML text stream.",
    "0x80040401": "Could not access QuickBooks.",
    "0x80040402": "Unexpected error. Check the qbsdklog.txt file for possible, additional information.",
    "0x80040403": "Could not open the specified QuickBooks company data file",
    "0x80040408": "Could not start QuickBooks.",
    "0x8004040A": (
        "A QuickBooks company data file is already open and it is different from the one requested "
        "or there are multiple company files open."
    ),
    "0x80040410": (
        "The QuickBooks company data file is currently open in a mode other than the one specified by your application."
    ),
    "0x80040414": (
        "A modal dialog box is showing in the QuickBooks user interface. Your application cannot "
        "access QuickBooks until the user dismisses the dialog box."
    ),
    "0x80040416": "If QuickBooks is not running, the company data file name must be supplied to BeginSession.",
    "0x80040418": (
        "This application has not accessed this QuickBooks company data file before. Only the "
        "QuickBooks administrator can grant an application permission to access a QuickBooks "
        "company data file for the first time."
    ),
    "0x8004041A": (
        "This application does not have permission to access this QuickBooks company data file. "
        "The QuickBooks administrator can grant access permission through the Integrated "
        "Application preferences."
    ),
    "0x8004041B": (
        "Unable to lock the necessary information to allow this application to access this "
        "company data file. Try again later."
    ),
    "0x8004041D": (
        "This application is not allowed to log into this QuickBooks company data file "
        "automatically. The QuickBooks administrator can grant permission for automatic login "
        "through the Integrated Application preferences."
    ),
    "0x80040420": "The QuickBooks user has denied access.",
    "0x80040422": (
        "This application requires Single User file access mode and there is already another "
        "application sharing data with this QuickBooks company data file."
    ),
    "0x80040423": "The version of qbXML that was requested is not supported or is unknown.",
    "0x80040424": "QuickBooks did not finish its initialization. Please try again later.",
    "0x80040430": (
        "This application is unable to log into this QuickBooks company data file automatically. "
        "The QuickBooks administrator must grant permission for an automatic login through the "
        "Integrated Application preferences. If such permission was already granted, the "
        "administrator must revoke permission, save preferences, then grant the permission again."
    ),
}

PARSE_ERROR = "0x80040400"


def severity_for(code: int) -> Severity:
    """QuickBooks' documented ranges: 0–499 Info, 500–999 Warn, the rest Error."""
    if code < 500:
        return "Info"
    if code < 1000:
        return "Warn"
    return "Error"


def status_message(
    code: int, *, kind: str = "", name: str = "", value: str = "", owner: str = "", detail: str = ""
) -> str:
    """The statusMessage for ``code`` with its placeholders filled in."""
    template = STATUS_MESSAGES.get(code)
    if template is None:
        return f"Simulated QuickBooks status {code}."
    return template.format(kind=kind, name=name, value=value, owner=owner, detail=detail)


def hresult_message(hresult: str) -> str:
    """The request processor's text for an HRESULT (case of the hex digits ignored)."""
    for known, message in HRESULT_MESSAGES.items():
        if known.lower() == hresult.lower():
            return message
    return f"Simulated request processor error {hresult}."


class QBStatus(Exception):
    """A request ends with a non-zero qbXML status; the ``…Rs`` carries it."""

    def __init__(self, code: int, message: str, severity: Severity | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.severity: Severity = severity or severity_for(code)

    @classmethod
    def of(cls, code: int, **placeholders: str) -> QBStatus:
        """Build from the standard message of ``code`` (see :func:`status_message`)."""
        return cls(code, status_message(code, **placeholders))
