"""The integrators' Python client: batches answer what one call per job would have answered."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone

import pytest

from qwc_service import NewJob, QueueClient
from qwc_service.exceptions import InvalidInput, NotFound
from qwc_service.qbxml import QbxmlError

QUERY = "<CustomerQueryRq/>"
ADD = "<CustomerAddRq><CustomerAdd><Name>Zoë 😀</Name></CustomerAdd></CustomerAddRq>"


@pytest.fixture
def client(engine, clock):
    client = QueueClient(engine=engine, migrate=False, clock=clock)
    yield client
    client.close()


def _comparable(info) -> dict[str, object]:
    data = asdict(info)
    for name in ("id", "connection", "after"):
        data.pop(name)
    return data


def test_enqueue_many_answers_what_enqueue_answers_in_order(client, add_connection) -> None:
    add_connection(name="one", username="one-sync")
    add_connection(name="many", username="many-sync")
    firsts = {name: client.enqueue(name, QUERY).id for name in ("one", "many")}
    not_before = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)

    def items(name: str) -> list[str | NewJob]:
        return [QUERY, NewJob(ADD, priority=4, after=[firsts[name]]), NewJob("<InvoiceQueryRq/>", page_size=10,
                not_before=not_before, key="k"), NewJob(QUERY, key="k")]

    singles = [client.enqueue("one", item) if isinstance(item, str) else client.enqueue(
        "one", item.request, priority=item.priority, after=item.after, key=item.key, not_before=item.not_before,
        page_size=item.page_size) for item in items("one")]
    batch = client.enqueue_many("many", items("many"))
    assert [_comparable(b) for b in batch] == [_comparable(s) for s in singles]
    assert [b.connection for b in batch] == ["many"] * 4
    assert [b.after for b in batch] == [(), (firsts["many"],), (), ()]
    assert [b.created for b in batch] == [True, True, True, False] and batch[3].id == batch[2].id
    assert "U+1F600" in batch[1].warnings[0]
    assert [b.id for b in batch[:3]] == sorted(b.id for b in batch[:3])
    assert client.get(batch[1].id).history[0].reason == "enqueued"


def test_a_batch_is_one_transaction(client, add_connection) -> None:
    add_connection()
    with pytest.raises(QbxmlError, match=r"^item 1: the request is not well-formed XML.*\(line 2, column"):
        client.enqueue_many("acme", [QUERY, "<CustomerQueryRq>\n<Oops></CustomerQueryRq>", QUERY])
    with pytest.raises(InvalidInput, match="^item 0: not_before must be timezone-aware"):
        client.enqueue_many("acme", [NewJob(QUERY, not_before=datetime(2026, 12, 1))])
    with pytest.raises(InvalidInput, match="at most 1000 jobs"):
        client.enqueue_many("acme", [QUERY] * 1001)
    with pytest.raises(NotFound, match="no connection named 'nobody'"):
        client.enqueue_many("nobody", [QUERY])
    assert client.list(connection="acme") == []
    assert client.enqueue_many("acme", (q for q in [QUERY, ADD]))[1].request_types == ("CustomerAdd",)
