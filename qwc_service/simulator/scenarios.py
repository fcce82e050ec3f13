"""Named, ready-made situations for ``qwc-service simulate NAME --scenario S``.

Each scenario is a company file plus faults: the situations users actually
meet (a sync user without rights, QuickBooks logged in as the wrong user,
QuickBooks not running, large result sets, a network that drops). They are
built fresh on every call so that runs never share state.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from .company import Clock, CompanyFile
from .faults import (
    WRITE_REQUESTS,
    CrashFault,
    DropFault,
    Faults,
    OpenFault,
    StatusFault,
)
from .quickbooks import FakeQuickBooks, QuickBooksProfile

#: Scenario name → one line for ``--help`` and reports.
SCENARIOS: dict[str, str] = {
    "happy": "QuickBooks Pro 2014 with a few customers, a vendor and two items; nothing goes wrong.",
    "permission-denied": "QuickBooks answers 3260 (insufficient permission) to the first write request.",
    "wrong-login-user": "QuickBooks was opened by automatic login as Admin, not as a dedicated sync user.",
    "quickbooks-not-running": "QuickBooks cannot be started (0x80040408), so the connector calls connectionError.",
    "iterator": "The company file holds many invoices: an InvoiceQuery iterator needs several pages.",
    "dropped-connection": "The connection drops right after the first sendRequestXML answer.",
    "crash": "The connector dies after QuickBooks performed the first request, before receiveResponseXML.",
}

#: Invoices in the ``iterator`` scenario: three pages at MaxReturned 10.
ITERATOR_INVOICES = 25


class UnknownScenario(ValueError):
    """No scenario has this name; the message lists the ones that exist."""


def build_scenario(
    name: str = "happy",
    *,
    profile: QuickBooksProfile | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
) -> tuple[FakeQuickBooks, Faults]:
    """A fresh QuickBooks and the faults of scenario ``name``.

    ``profile`` sets the facts a caller must control (OwnerID and FileID of
    the server's .qwc, the product); the scenario changes only what it is
    about. Hand both results to
    :class:`~qwc_service.simulator.connector.FakeWebConnector`.
    """
    if name not in SCENARIOS:
        raise UnknownScenario(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
    profile = profile or QuickBooksProfile()
    faults = Faults()
    if name == "permission-denied":
        faults = Faults(StatusFault(code=3260, request=WRITE_REQUESTS))
    elif name == "wrong-login-user":
        profile = dataclasses.replace(
            profile, is_automatic_login=True, is_automatic_login_allowed=True, automatic_login_user_name="Admin"
        )
    elif name == "quickbooks-not-running":
        faults = Faults(OpenFault(hresult="0x80040408", times=None))
    elif name == "dropped-connection":
        faults = Faults(DropFault(call=1))
    elif name == "crash":
        faults = Faults(CrashFault(call=1))
    company = CompanyFile(clock)
    seed_company(company)
    if name == "iterator":
        seed_invoices(company, ITERATOR_INVOICES)
    return FakeQuickBooks(profile, company=company, sleep=sleep or time.sleep), faults


def seed_company(company: CompanyFile) -> None:
    """The small company every scenario starts from."""
    company.add(
        "Customer",
        {
            "Name": "Acme Corporation",
            "CompanyName": "Acme Corporation",
            "BillAddress": {"Addr1": "1 Main Street", "City": "Springfield", "State": "IL", "PostalCode": "62701"},
            "Email": "billing@acme.example",
        },
    )
    company.add("Customer", {"Name": "Website", "ParentRef": {"FullName": "Acme Corporation"}})
    company.add("Customer", {"Name": "Globex Corporation", "CompanyName": "Globex Corporation"})
    company.add("Customer", {"Name": "Initech", "CompanyName": "Initech LLC"})
    company.add("Vendor", {"Name": "Contoso Supplies", "CompanyName": "Contoso Supplies Inc."})
    company.add(
        "ItemService",
        {
            "Name": "Consulting",
            "SalesOrPurchase": {"Desc": "Consulting hour", "Price": "150.00", "AccountRef": {"FullName": "Services"}},
        },
    )
    company.add(
        "ItemNonInventory",
        {
            "Name": "Widget",
            "SalesOrPurchase": {"Desc": "Standard widget", "Price": "25.00", "AccountRef": {"FullName": "Sales"}},
        },
    )


def seed_invoices(company: CompanyFile, count: int) -> None:
    """``count`` one-line invoices numbered from 1001, spread over the top-level customers."""
    customers = [c.findtext("FullName") or "" for c in company.records("Customer") if c.findtext("Sublevel") == "0"]
    for index in range(count):
        line = {"Desc": "Consulting hour", "Quantity": str(1 + index % 4), "Rate": "150.00"}
        company.add(
            "Invoice",
            {
                "CustomerRef": {"FullName": customers[index % len(customers)]},
                "RefNumber": str(1001 + index),
                "InvoiceLineAdd": line,
            },
        )
