"""The company file behind the fake QuickBooks: records and the rules QuickBooks enforces.

Records are kept as the ``…Ret`` elements QuickBooks would return, because
that is the only form anyone ever sees them in: an Add builds the Ret from the
request, a Mod edits it, a Query hands out copies. What is modelled is what a
Web Connector server trips over in practice:

- IDs shaped like QuickBooks' (``80000001-1405768916`` for lists, ``1A-1405768916``
  for transactions), ``TimeCreated``/``TimeModified`` and ``EditSequence``;
- list names unique per name list (customers and vendors share one, as in
  QuickBooks; items another), sub-customers via ``ParentRef`` (``Acme:Job 1``);
- references to customers and items that must exist (3140);
- stale edit sequences (3200), unknown IDs (3120);
- invoices with lines, totals and balances, payments applied to them.

What is not modelled (accounts, classes, terms, tax codes…) is copied through
unchecked, and element order in a Ret follows the request rather than the full
qbXML schema. Aggregates in a Mod replace the whole aggregate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from decimal import Decimal

from lxml import etree

from .documents import Fields, append_fields, text_element
from .statuses import QBStatus

Clock = Callable[[], datetime]

ITEM_TYPES: tuple[str, ...] = ("ItemService", "ItemNonInventory")

#: Elements a Ret carries that QuickBooks computes; a Mod never sets them and
#: new fields from a Mod go before them.
_COMPUTED = ("Subtotal", "AppliedAmount", "BalanceRemaining", "IsPaid", "UnusedPayment", "UnusedCredits")


def local_now() -> datetime:
    """The default clock: local time with its UTC offset, as QuickBooks stamps records."""
    return datetime.now().astimezone()


def money(amount: Decimal) -> str:
    """QuickBooks writes amounts with two decimals: ``100.00``."""
    return f"{amount.quantize(Decimal('0.01')):f}"


@dataclass(frozen=True)
class EntityType:
    """What the fake knows about one kind of QuickBooks object."""

    name: str
    is_list: bool
    #: List names must be unique within a group: QuickBooks keeps customers,
    #: vendors, employees and other names in one name list, items in another.
    name_group: str = ""
    #: Reference elements that must point at existing records of these types.
    refs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Line aggregate stem: ``InvoiceLine`` for InvoiceLineAdd/Mod/Ret.
    line: str = ""
    line_refs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Fixed elements QuickBooks puts at the end of every Ret of this type.
    trailer: tuple[tuple[str, str], ...] = ()

    @property
    def id_tag(self) -> str:
        return "ListID" if self.is_list else "TxnID"

    @property
    def tail_tags(self) -> frozenset[str]:
        """Tags after which no request field is inserted."""
        lines = {f"{self.line}Ret"} if self.line else set()
        return frozenset({tag for tag, _ in self.trailer} | set(_COMPUTED) | lines | {"AppliedToTxnRet"})


ENTITY_TYPES: dict[str, EntityType] = {
    entity.name: entity
    for entity in (
        EntityType(
            "Customer",
            is_list=True,
            name_group="names",
            refs={"ParentRef": ("Customer",)},
            trailer=(("Balance", "0.00"), ("TotalBalance", "0.00"), ("JobStatus", "None")),
        ),
        EntityType("Vendor", is_list=True, name_group="names", trailer=(("Balance", "0.00"),)),
        EntityType("ItemService", is_list=True, name_group="items", refs={"ParentRef": ("ItemService",)}),
        EntityType("ItemNonInventory", is_list=True, name_group="items", refs={"ParentRef": ("ItemNonInventory",)}),
        EntityType(
            "Invoice",
            is_list=False,
            refs={"CustomerRef": ("Customer",)},
            line="InvoiceLine",
            line_refs={"ItemRef": ITEM_TYPES},
        ),
        EntityType("ReceivePayment", is_list=False, refs={"CustomerRef": ("Customer",)}),
    )
}


def _ref_kind(types: tuple[str, ...]) -> str:
    # QuickBooks names the list in 3140 messages: "Customer", "Item".
    return "Item" if all(t.startswith("Item") for t in types) else types[0]


@dataclass
class _Record:
    type: str
    ret: etree._Element


@dataclass(frozen=True)
class Snapshot:
    """The whole company file at one moment (see :meth:`CompanyFile.snapshot`)."""

    records: dict[str, _Record]
    counter: int
    txn_number: int


@dataclass(frozen=True)
class Selection:
    """The records a query matched, in QuickBooks' order, plus a 500 warning if names were missing."""

    ids: list[str]
    warning: QBStatus | None = None


class CompanyFile:
    """One in-memory company file.

    Seed it with :meth:`add` (which goes through the same rules as an
    ``…AddRq``), inspect it with :meth:`records` and :meth:`get`.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or local_now
        self._records: dict[str, _Record] = {}
        # QuickBooks draws list IDs, transaction IDs and line IDs from one counter.
        self._counter = 0
        self._txn_number = 0

    # -- seeding and inspection -------------------------------------------

    def add(self, type_name: str, fields: Fields) -> etree._Element:
        """Create a record as ``<{type_name}AddRq>`` would; return a copy of its Ret.

        ``fields`` are the children of ``<{type_name}Add>`` (see
        :func:`~qwc_service.simulator.documents.append_fields`). Raises
        :class:`~qwc_service.simulator.statuses.QBStatus` when QuickBooks would refuse.
        """
        add = append_fields(etree.Element(f"{type_name}Add"), fields)
        return self.execute_add(ENTITY_TYPES[type_name], add)

    def records(self, type_name: str) -> list[etree._Element]:
        """Copies of every record of a type, in the order a query returns them."""
        return [self.render(i) for i in self._ordered([type_name])]

    def get(self, record_id: str) -> etree._Element | None:
        """A copy of the record with this ListID or TxnID, if it exists."""
        return self.render(record_id) if record_id in self._records else None

    # -- rollback -----------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A copy of the whole file, for rollbackOnError."""
        return Snapshot(copy.deepcopy(self._records), self._counter, self._txn_number)

    def restore(self, snapshot: Snapshot) -> None:
        self._records = copy.deepcopy(snapshot.records)
        self._counter, self._txn_number = snapshot.counter, snapshot.txn_number

    # -- Add ------------------------------------------------------------------

    @contextmanager
    def _refusable(self) -> Iterator[None]:
        """A refused request leaves no trace, not even a used ID or TxnNumber."""
        counters = self._counter, self._txn_number
        try:
            yield
        except QBStatus:
            self._counter, self._txn_number = counters
            raise

    def execute_add(self, entity: EntityType, add: etree._Element) -> etree._Element:
        """Perform an ``<XAdd>`` aggregate; return a copy of the new Ret."""
        with self._refusable():
            ret = self._add_list(entity, add) if entity.is_list else self._add_txn(entity, add)
        return self.render(ret.findtext(entity.id_tag) or "")

    def _add_list(self, entity: EntityType, add: etree._Element) -> etree._Element:
        name = add.findtext("Name") or ""
        parent = self._parent(entity, add.find("ParentRef"))
        full_name = self._full_name(name, parent)
        self._check_unique(entity, full_name, name, exclude="")
        created, seconds = self._stamp()
        list_id = self._new_id(seconds, is_list=True)
        ret = append_fields(
            etree.Element(f"{entity.name}Ret"),
            {
                "ListID": list_id,
                "TimeCreated": created,
                "TimeModified": created,
                "EditSequence": str(seconds),
                "Name": name,
                "FullName": full_name,
                "IsActive": add.findtext("IsActive") or "true",
            },
        )
        if parent is not None:
            ret.append(self._ref_to(parent, "ParentRef"))
        append_fields(ret, {"Sublevel": self._sublevel(parent)})
        for child in add:
            if child.tag not in ("Name", "IsActive", "ParentRef"):
                ret.append(self._copy_field(child, entity.refs, entity.name))
        append_fields(ret, dict(entity.trailer))
        self._records[list_id] = _Record(entity.name, ret)
        return ret

    def _add_txn(self, entity: EntityType, add: etree._Element) -> etree._Element:
        created, seconds = self._stamp()
        ret = etree.Element(f"{entity.name}Ret")
        txn_id = self._new_id(seconds, is_list=False)
        self._txn_number += 1
        append_fields(
            ret,
            {
                "TxnID": txn_id,
                "TimeCreated": created,
                "TimeModified": created,
                "EditSequence": str(seconds),
                "TxnNumber": str(self._txn_number),
            },
        )
        line_add = f"{entity.line}Add" if entity.line else ""
        lines: list[etree._Element] = []
        for child in add:
            if child.tag == line_add:
                lines.append(self._new_line(entity, child, seconds))
            elif child.tag != "AppliedToTxnAdd":
                ret.append(self._copy_field(child, entity.refs, entity.name))
        if ret.find("TxnDate") is None:
            anchor = ret.find("CustomerRef")
            position = ret.index(anchor) + 1 if anchor is not None else len(ret)
            ret.insert(position, text_element("TxnDate", self.clock().date().isoformat()))
        for line in lines:
            ret.append(line)
        if entity.name == "ReceivePayment":
            self._apply_payment(ret, add)
        self._records[txn_id] = _Record(entity.name, ret)
        if entity.name == "Invoice":
            self._price_invoice(ret)
        elif entity.name == "ReceivePayment":
            for applied in ret.iterfind("AppliedToTxnRet"):
                self._price_invoice(self._records[applied.findtext("TxnID") or ""].ret)
        return ret

    def _new_line(self, entity: EntityType, source: etree._Element, seconds: int) -> etree._Element:
        line = etree.Element(f"{entity.line}Ret")
        append_fields(line, {"TxnLineID": self._new_id(seconds, is_list=False)})
        for child in source:
            if child.tag != "TxnLineID":
                line.append(self._copy_field(child, entity.line_refs, entity.name))
        self._price_line(line)
        return line

    @staticmethod
    def _price_line(line: etree._Element) -> None:
        """Fill in ``Amount`` from Quantity × Rate when the request left it out."""
        if line.find("Amount") is not None:
            return
        quantity = Decimal(line.findtext("Quantity") or "1")
        rate = Decimal(line.findtext("Rate") or "0")
        amount = text_element("Amount", money(quantity * rate))
        before = [c for c in line if c.tag in ("ItemRef", "Desc", "Quantity", "UnitOfMeasure", "Rate", "RatePercent")]
        line.insert(line.index(before[-1]) + 1 if before else len(line), amount)

    # -- Mod ------------------------------------------------------------------

    def execute_mod(self, entity: EntityType, mod: etree._Element) -> etree._Element:
        """Perform an ``<XMod>`` aggregate; return a copy of the changed Ret.

        Work happens on a copy that replaces the stored record only when every
        check passed, so a refused Mod changes nothing.
        """
        with self._refusable():
            return self._modify(entity, mod)

    def _modify(self, entity: EntityType, mod: etree._Element) -> etree._Element:
        record_id = mod.findtext(entity.id_tag) or ""
        record = self._records.get(record_id)
        if record is None or record.type != entity.name:
            raise QBStatus.of(3120, name=record_id)
        ret = copy.deepcopy(record.ret)
        edit_sequence = mod.findtext("EditSequence") or ""
        if edit_sequence != ret.findtext("EditSequence"):
            raise QBStatus.of(3200, value=edit_sequence)
        modified, seconds = self._stamp()
        renamed = False
        if entity.is_list and (mod.find("Name") is not None or mod.find("ParentRef") is not None):
            self._rename(entity, ret, mod)
            renamed = True
        line_mod = f"{entity.line}Mod" if entity.line else ""
        skip = {entity.id_tag, "EditSequence", "Name", "ParentRef", line_mod}
        for child in mod:
            if child.tag not in skip:
                self._set_field(entity, ret, self._copy_field(child, entity.refs, entity.name))
        if line_mod and mod.find(line_mod) is not None:
            self._modify_lines(entity, ret, mod.findall(line_mod), seconds)
        _set_text(ret, "TimeModified", modified)
        _set_text(ret, "EditSequence", str(max(seconds, int(edit_sequence) + 1)))
        record.ret = ret
        if renamed:
            self._rename_children(record_id)
        if entity.name == "Invoice":
            self._price_invoice(ret)
        return self.render(record_id)

    def _rename(self, entity: EntityType, ret: etree._Element, mod: etree._Element) -> None:
        name = mod.findtext("Name") if mod.find("Name") is not None else ret.findtext("Name")
        parent_ref = mod.find("ParentRef") if mod.find("ParentRef") is not None else ret.find("ParentRef")
        parent = self._parent(entity, parent_ref)
        if parent is not None and self._descends_from(parent.findtext("ListID") or "", ret.findtext("ListID") or ""):
            # A record cannot move under itself or its own sub-records.
            raise QBStatus.of(3140, kind=entity.name, name=parent.findtext("FullName") or "", owner=entity.name)
        full_name = self._full_name(name or "", parent)
        self._check_unique(entity, full_name, name or "", exclude=ret.findtext("ListID") or "")
        _set_text(ret, "Name", name or "")
        _set_text(ret, "FullName", full_name)
        old_ref = ret.find("ParentRef")
        if old_ref is not None:
            ret.remove(old_ref)
        sublevel = ret.find("Sublevel")
        if parent is not None and sublevel is not None:
            sublevel.addprevious(self._ref_to(parent, "ParentRef"))
        if sublevel is not None:
            sublevel.text = self._sublevel(parent)

    def _rename_children(self, parent_id: str) -> None:
        """Sub-records carry their parent's name in FullName (``Acme:Job 1``)."""
        parent = self._records[parent_id].ret
        for record in self._records.values():
            if record.ret.findtext("ParentRef/ListID") == parent_id:
                _set_text(record.ret, "FullName", self._full_name(record.ret.findtext("Name") or "", parent))
                self._rename_children(record.ret.findtext("ListID") or "")

    def _modify_lines(self, entity: EntityType, ret: etree._Element, mods: list[etree._Element], seconds: int) -> None:
        """QuickBooks' line rule: listed lines are kept or changed, ``TxnLineID`` -1 adds one, unlisted lines go."""
        line_ret = f"{entity.line}Ret"
        existing = {line.findtext("TxnLineID"): line for line in ret.findall(line_ret)}
        for line in existing.values():
            ret.remove(line)
        for mod in mods:
            line_id = mod.findtext("TxnLineID") or ""
            if line_id == "-1":
                ret.append(self._new_line(entity, mod, seconds))
                continue
            line = existing.get(line_id)
            if line is None:
                raise QBStatus.of(3120, name=line_id)
            changed = {child.tag for child in mod}
            if "Amount" not in changed and changed & {"Quantity", "Rate"}:
                amount = line.find("Amount")
                if amount is not None:
                    line.remove(amount)
            for child in mod:
                if child.tag != "TxnLineID":
                    self._replace_or_append(line, self._copy_field(child, entity.line_refs, entity.name))
            self._price_line(line)
            ret.append(line)

    # -- queries -------------------------------------------------------------

    def select(self, type_names: tuple[str, ...], query: etree._Element) -> Selection:
        """The records an ``…QueryRq`` matches, before MaxReturned and iterators.

        Lookups by ID answer 3120 when nothing was found (like the sample
        ``CustomerQueryRs_statusCode3120``); lookups by name return a 500
        warning for missing names (like ``…statusCode500_Warn``). Filter
        queries that match nothing are the caller's status 1.
        """
        entity = ENTITY_TYPES[type_names[0]]
        candidates = self._ordered(type_names)
        wanted_ids = [e.text or "" for e in query.findall(entity.id_tag)]
        if wanted_ids:
            present = set(candidates)
            found = [i for i in wanted_ids if i in present]
            if not found:
                raise QBStatus.of(3120, name=wanted_ids[0])
            missing = [i for i in wanted_ids if i not in present]
            return Selection(found, QBStatus.of(500, name=missing[0]) if missing else None)
        name_tag = "FullName" if entity.is_list else "RefNumber"
        wanted_names = [e.text or "" for e in query.findall(name_tag)]
        if wanted_names:
            found, missing = [], []
            for wanted in wanted_names:
                hits = [i for i in candidates if self._names_equal(self._records[i].ret.findtext(name_tag), wanted)]
                found.extend(hits)
                if not hits:
                    missing.append(wanted)
            return Selection(found, QBStatus.of(500, name=missing[0]) if missing else None)
        tz = self.clock().tzinfo
        return Selection([i for i in candidates if self._passes_filters(self._records[i].ret, query, entity, tz)])

    def _passes_filters(
        self, ret: etree._Element, query: etree._Element, entity: EntityType, tz: tzinfo | None
    ) -> bool:
        modified = datetime.fromisoformat(ret.findtext("TimeModified") or "")
        dates = query.find("ModifiedDateRangeFilter") if not entity.is_list else query
        if dates is not None and not _within(
            modified, dates.findtext("FromModifiedDate"), dates.findtext("ToModifiedDate"), tz
        ):
            return False
        if entity.is_list:
            status = query.findtext("ActiveStatus") or "ActiveOnly"
            active = ret.findtext("IsActive") == "true"
            if (status == "ActiveOnly" and not active) or (status == "InactiveOnly" and active):
                return False
            if not _matches(ret.findtext("FullName") or "", query.find("NameFilter"), "Name"):
                return False
            names = query.find("NameRangeFilter")
            if names is not None:
                full_name = (ret.findtext("FullName") or "").casefold()
                if full_name < (names.findtext("FromName") or "").casefold():
                    return False
                if names.findtext("ToName") and full_name > (names.findtext("ToName") or "").casefold():
                    return False
            return True
        txn_dates = query.find("TxnDateRangeFilter")
        if txn_dates is not None:
            txn_date = date.fromisoformat(ret.findtext("TxnDate") or "")
            if txn_dates.findtext("FromTxnDate") and txn_date < date.fromisoformat(
                txn_dates.findtext("FromTxnDate") or ""
            ):
                return False
            if txn_dates.findtext("ToTxnDate") and txn_date > date.fromisoformat(txn_dates.findtext("ToTxnDate") or ""):
                return False
        entity_filter = query.find("EntityFilter")
        if entity_filter is not None and not self._entity_matches(ret, entity_filter):
            return False
        if not _matches(ret.findtext("RefNumber") or "", query.find("RefNumberFilter"), "RefNumber"):
            return False
        paid = query.findtext("PaidStatus") or "All"
        is_paid = ret.findtext("IsPaid") == "true"
        return not ((paid == "PaidOnly" and not is_paid) or (paid == "NotPaidOnly" and is_paid))

    def _entity_matches(self, ret: etree._Element, entity_filter: etree._Element) -> bool:
        customer_id = ret.findtext("CustomerRef/ListID") or ""
        customer = self._records.get(customer_id)
        full_name = customer.ret.findtext("FullName") or "" if customer else ""
        for child in entity_filter:
            wanted = child.text or ""
            if child.tag == "ListID" and customer_id == wanted:
                return True
            if child.tag == "FullName" and self._names_equal(full_name, wanted):
                return True
            if child.tag == "ListIDWithChildren" and self._descends_from(customer_id, wanted):
                return True
            if child.tag == "FullNameWithChildren" and (
                self._names_equal(full_name, wanted) or full_name.casefold().startswith(wanted.casefold() + ":")
            ):
                return True
        return False

    def _descends_from(self, record_id: str, ancestor_id: str) -> bool:
        while record_id:
            if record_id == ancestor_id:
                return True
            record = self._records.get(record_id)
            record_id = record.ret.findtext("ParentRef/ListID") or "" if record else ""
        return False

    def render(
        self, record_id: str, *, include_lines: bool = True, only: frozenset[str] = frozenset()
    ) -> etree._Element:
        """A copy of a record as a query returns it.

        References show the referenced record's *current* FullName (QuickBooks
        stores the ListID), ``include_lines`` mirrors ``IncludeLineItems``, and
        ``only`` mirrors ``IncludeRetElement``.
        """
        record = self._records[record_id]
        ret = copy.deepcopy(record.ret)
        for ref in ret.iter():
            if isinstance(ref.tag, str) and ref.tag.endswith("Ref"):
                target = self._records.get(ref.findtext("ListID") or "")
                full_name = ref.find("FullName")
                if target is not None and full_name is not None:
                    full_name.text = target.ret.findtext("FullName")
        entity = ENTITY_TYPES[record.type]
        for child in list(ret):
            if (not include_lines and entity.line and child.tag == f"{entity.line}Ret") or (
                only and child.tag not in only
            ):
                ret.remove(child)
        return ret

    # -- invoices and payments ------------------------------------------------

    def _price_invoice(self, invoice: etree._Element) -> None:
        """Recompute Subtotal, AppliedAmount, BalanceRemaining and IsPaid."""
        txn_id = invoice.findtext("TxnID")
        subtotal = sum(
            (Decimal(line.findtext("Amount") or "0") for line in invoice.iterfind("InvoiceLineRet")), Decimal(0)
        )
        applied = sum(
            (
                Decimal(applied.findtext("Amount") or "0")
                for record in self._records.values()
                if record.type == "ReceivePayment"
                for applied in record.ret.iterfind("AppliedToTxnRet")
                if applied.findtext("TxnID") == txn_id
            ),
            Decimal(0),
        )
        balance = subtotal - applied
        for child in list(invoice):
            if child.tag in _COMPUTED:
                invoice.remove(child)
        totals = append_fields(
            etree.Element("totals"),
            {
                "Subtotal": money(subtotal),
                "AppliedAmount": money(-applied),
                "BalanceRemaining": money(balance),
                "IsPaid": "true" if balance <= 0 else "false",
            },
        )
        first_line = invoice.find("InvoiceLineRet")
        for total in list(totals):
            if first_line is not None:
                first_line.addprevious(total)
            else:
                invoice.append(total)

    def _apply_payment(self, payment: etree._Element, add: etree._Element) -> None:
        """Check and record ``AppliedToTxnAdd``; every check runs before anything changes."""
        customer_id = payment.findtext("CustomerRef/ListID")
        total = Decimal(add.findtext("TotalAmount") or "0")
        applications: list[tuple[etree._Element, Decimal]] = []
        for applied in add.iterfind("AppliedToTxnAdd"):
            txn_id = applied.findtext("TxnID") or ""
            amount = Decimal(applied.findtext("PaymentAmount") or "0")
            record = self._records.get(txn_id)
            if record is None or record.type != "Invoice" or record.ret.findtext("CustomerRef/ListID") != customer_id:
                raise QBStatus.of(3120, name=txn_id)
            if amount > Decimal(record.ret.findtext("BalanceRemaining") or "0"):
                detail = "You cannot pay more than the amount due."
                raise QBStatus.of(3210, name="PaymentAmount", value=money(amount), detail=detail)
            applications.append((record.ret, amount))
        applied_total = sum((amount for _, amount in applications), Decimal(0))
        if applied_total > total:
            # QuickBooks' wording for this case was not found; the code is its usual one.
            detail = "The amounts applied are more than the payment amount."
            raise QBStatus.of(3210, name="TotalAmount", value=money(total), detail=detail)
        if payment.find("TotalAmount") is None:
            append_fields(payment, {"TotalAmount": money(total)})
        append_fields(payment, {"UnusedPayment": money(total - applied_total), "UnusedCredits": "0.00"})
        for invoice, amount in applications:
            fields: dict[str, str] = {"TxnID": invoice.findtext("TxnID") or "", "TxnType": "Invoice"}
            fields["TxnDate"] = invoice.findtext("TxnDate") or ""
            if invoice.findtext("RefNumber"):
                fields["RefNumber"] = invoice.findtext("RefNumber") or ""
            fields["BalanceRemaining"] = money(Decimal(invoice.findtext("BalanceRemaining") or "0") - amount)
            fields["Amount"] = money(amount)
            append_fields(payment, {"AppliedToTxnRet": fields})

    # -- helpers -----------------------------------------------------------

    def _stamp(self) -> tuple[str, int]:
        now = self.clock()
        return now.isoformat(timespec="seconds"), int(now.timestamp())

    def _new_id(self, seconds: int, *, is_list: bool) -> str:
        self._counter += 1
        number = 0x80000000 + self._counter if is_list else self._counter
        return f"{number:0{8 if is_list else 1}X}-{seconds}"

    def _ordered(self, type_names: list[str] | tuple[str, ...]) -> list[str]:
        """Lists come back sorted by FullName, transactions in the order they were entered."""
        ids = [i for i, record in self._records.items() if record.type in type_names]
        if ENTITY_TYPES[type_names[0]].is_list:
            ids.sort(key=lambda i: (self._records[i].ret.findtext("FullName") or "").casefold())
        return ids

    @staticmethod
    def _names_equal(a: str | None, b: str | None) -> bool:
        # QuickBooks compares names without regard to case.
        return (a or "").casefold() == (b or "").casefold()

    def _find(self, ref: etree._Element, types: tuple[str, ...]) -> _Record | None:
        list_id = ref.findtext("ListID")
        if list_id:
            record = self._records.get(list_id)
            return record if record is not None and record.type in types else None
        full_name = ref.findtext("FullName")
        for record in self._records.values():
            if record.type in types and self._names_equal(record.ret.findtext("FullName"), full_name):
                return record
        return None

    def _resolve(self, ref: etree._Element, types: tuple[str, ...], owner: str) -> etree._Element:
        """A reference as QuickBooks returns it (ListID and FullName), or 3140."""
        record = self._find(ref, types)
        if record is None:
            given = ref.findtext("ListID") or ref.findtext("FullName") or ""
            raise QBStatus.of(3140, kind=_ref_kind(types), name=given, owner=owner)
        return self._ref_to(record.ret, ref.tag)

    @staticmethod
    def _ref_to(ret: etree._Element, tag: str) -> etree._Element:
        return append_fields(
            etree.Element(tag), {"ListID": ret.findtext("ListID") or "", "FullName": ret.findtext("FullName") or ""}
        )

    def _parent(self, entity: EntityType, ref: etree._Element | None) -> etree._Element | None:
        if ref is None:
            return None
        return self._records[self._resolve(ref, entity.refs["ParentRef"], entity.name).findtext("ListID") or ""].ret

    @staticmethod
    def _full_name(name: str, parent: etree._Element | None) -> str:
        return f"{parent.findtext('FullName')}:{name}" if parent is not None else name

    @staticmethod
    def _sublevel(parent: etree._Element | None) -> str:
        return str(int(parent.findtext("Sublevel") or "0") + 1) if parent is not None else "0"

    def _check_unique(self, entity: EntityType, full_name: str, name: str, *, exclude: str) -> None:
        for record_id, record in self._records.items():
            other = ENTITY_TYPES[record.type]
            if other.name_group != entity.name_group or record_id == exclude:
                continue
            if self._names_equal(record.ret.findtext("FullName"), full_name):
                raise QBStatus.of(3100, name=name)

    def _copy_field(self, child: etree._Element, refs: Mapping[str, tuple[str, ...]], owner: str) -> etree._Element:
        if child.tag in refs:
            return self._resolve(child, refs[child.tag], owner)
        copied = copy.deepcopy(child)
        copied.tail = None
        return copied

    def _set_field(self, entity: EntityType, ret: etree._Element, new: etree._Element) -> None:
        existing = ret.find(new.tag)
        if existing is not None:
            existing.addprevious(new)
            ret.remove(existing)
            return
        tail = [c for c in ret if c.tag in entity.tail_tags]
        if tail:
            tail[0].addprevious(new)
        else:
            ret.append(new)

    @staticmethod
    def _replace_or_append(parent: etree._Element, new: etree._Element) -> None:
        existing = parent.find(new.tag)
        if existing is not None:
            existing.addprevious(new)
            parent.remove(existing)
        else:
            parent.append(new)


def _set_text(parent: etree._Element, tag: str, text: str) -> None:
    child = parent.find(tag)
    assert child is not None, f"every Ret has <{tag}>"
    child.text = text


def _within(moment: datetime, start: str | None, end: str | None, tz: tzinfo | None) -> bool:
    if start and moment < _instant(start, end_of_day=False, tz=tz):
        return False
    return not (end and moment > _instant(end, end_of_day=True, tz=tz))


def _instant(text: str, *, end_of_day: bool, tz: tzinfo | None) -> datetime:
    """A filter bound: a date means the whole day, a time without offset means company time."""
    if len(text) == 10:
        moment = datetime.combine(date.fromisoformat(text), time.max if end_of_day else time.min)
    else:
        moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _matches(value: str, condition: etree._Element | None, tag: str) -> bool:
    """``NameFilter``/``RefNumberFilter``: MatchCriterion StartsWith, Contains or EndsWith."""
    if condition is None:
        return True
    wanted = (condition.findtext(tag) or "").casefold()
    criterion = condition.findtext("MatchCriterion") or "StartsWith"
    value = value.casefold()
    if criterion == "Contains":
        return wanted in value
    if criterion == "EndsWith":
        return value.endswith(wanted)
    return value.startswith(wanted)
