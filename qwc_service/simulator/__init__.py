"""A faithful fake of the QuickBooks Web Connector and of QuickBooks, for testing servers.

- :class:`FakeQuickBooks` answers qbXML from an in-memory company file;
- :class:`FakeWebConnector` drives a server over real HTTP the way QBWC does;
- :class:`Faults` and its rules make either of them misbehave on cue;
- :func:`build_scenario` gives ready-made situations, and
  :func:`format_transcript` / :func:`result_to_dict` report a session.

Typical use::

    quickbooks, faults = build_scenario("permission-denied")
    result = FakeWebConnector(url, quickbooks, faults=faults, username="sync", password="…").run()
    print(format_transcript(result))
"""

from __future__ import annotations

from .company import CompanyFile
from .connector import (
    QBWC_VERSION,
    Call,
    Exchange,
    FakeWebConnector,
    Outcome,
    SessionResult,
)
from .documents import Response, element, read_responses, request_document
from .faults import (
    WRITE_REQUESTS,
    CrashFault,
    DropFault,
    Fault,
    Faults,
    HresultFault,
    OpenFault,
    SlowFault,
    StatusFault,
)
from .quickbooks import (
    FakeQuickBooks,
    OpenError,
    ProcessResult,
    QuickBooksProfile,
    QuickBooksSession,
)
from .report import format_transcript, result_to_dict
from .scenarios import SCENARIOS, UnknownScenario, build_scenario
from .statuses import QBStatus

__all__ = [
    "QBWC_VERSION",
    "SCENARIOS",
    "WRITE_REQUESTS",
    "Call",
    "CompanyFile",
    "CrashFault",
    "DropFault",
    "Exchange",
    "FakeQuickBooks",
    "FakeWebConnector",
    "Fault",
    "Faults",
    "HresultFault",
    "OpenError",
    "OpenFault",
    "Outcome",
    "ProcessResult",
    "QBStatus",
    "QuickBooksProfile",
    "QuickBooksSession",
    "Response",
    "SessionResult",
    "SlowFault",
    "StatusFault",
    "UnknownScenario",
    "build_scenario",
    "element",
    "format_transcript",
    "read_responses",
    "request_document",
    "result_to_dict",
]
