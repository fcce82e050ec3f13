"""Case 5: how fast integrators can queue work.

* ``QueueClient.enqueue``, one job per call (one transaction each);
* batched: ``QueueClient.enqueue_many`` when the client has it; otherwise the
  nearest thing that exists, ``queue.enqueue`` called for many jobs inside one
  transaction (an internal API: reported as such);
* the HTTP API, ``POST /api/v1/connections/{name}/jobs``, from four keep-alive
  clients against ``qwc-service serve``.

Every job is a distinct CustomerAddRq (validated, normalised, history row
written). The floor is the same number of job rows written with one core
``insert()`` of many rows: the cost of the storage alone.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import time
from typing import Any, Callable

from sqlalchemy import insert

from qwc_service import connections, queue
from qwc_service.client import QueueClient
from qwc_service.models import Job

from . import dbsetup
from .common import Result, cost_ratio, start_qwc_server, utcnow
from .options import Options

CASE = "5 enqueue"


def request(n: int) -> str:
    return f"<CustomerAddRq><CustomerAdd><Name>Bench customer {n}</Name></CustomerAdd></CustomerAddRq>"


def run(opts: Options) -> list[Result]:
    results: list[Result] = []
    backends: list[tuple[str, Callable[[], dbsetup.BenchDatabase]]] = [
        ("SQLite", lambda: dbsetup.fresh_sqlite("enqueue"))]
    if not opts.pg_skip:
        backends.append(("PostgreSQL", lambda: dbsetup.fresh_postgresql(opts.pg_url)))
    for label, make in backends:
        results.extend(_backend(opts, label, make))
    return results


def _backend(opts: Options, label: str, make: Callable[[], dbsetup.BenchDatabase]) -> list[Result]:
    single_n = 500 if opts.quick else 2_000
    batch_n = 2_000 if opts.quick else 10_000
    http_n = 500 if opts.quick else 2_000
    results: list[Result] = []
    db = make()
    try:
        (cid, name, _), = dbsetup.add_connections(db, 1, prefix="enq")
        floor = _floor(db, cid, batch_n)
        client = QueueClient(engine=db.engine, migrate=False)
        opts.say(f"case 5: {label}, QueueClient.enqueue × {single_n}")
        for n in range(20):  # warm-up
            client.enqueue(name, request(-n - 1))
        started = time.perf_counter()
        for n in range(single_n):
            client.enqueue(name, request(n))
        single = single_n / (time.perf_counter() - started)
        results.append(Result(CASE, f"QueueClient.enqueue, one per call, {label}", round(single), "jobs/s",
                              round(floor), cost_ratio(single, floor, higher_is_better=True), "(reported)", None))

        many = getattr(client, "enqueue_many", None)
        opts.say(f"case 5: {label}, batched × {batch_n}")
        started = time.perf_counter()
        if many is not None:
            for start in range(0, batch_n, 500):
                many(name, [request(100_000 + n) for n in range(start, min(batch_n, start + 500))])
            how, note = "QueueClient.enqueue_many", ""
        else:
            for start in range(0, batch_n, 500):
                with client.db.begin() as s:
                    conn = connections.get_connection(s, name)
                    now = utcnow()
                    for n in range(start, min(batch_n, start + 500)):
                        queue.enqueue(s, conn, request(100_000 + n), now=now)
            how = "queue.enqueue ×500 per transaction"
            note = ("QueueClient has no enqueue_many: measured queue.enqueue, 500 per transaction (internal API); "
                    "integrators cannot batch today")
        batched = batch_n / (time.perf_counter() - started)
        results.append(Result(CASE, f"batched ({how}), {label}", round(batched), "jobs/s", round(floor),
                              cost_ratio(batched, floor, higher_is_better=True), "≥ 5,000/s", batched >= 5000,
                              note=note))
        results.append(_http(opts, label, db, name, http_n, floor))
        client.close()
    finally:
        db.dispose()
    return results


def _floor(db: dbsetup.BenchDatabase, cid: int, n: int) -> float:
    """Job rows of the same shape, written with one core insert of many rows."""
    template = dbsetup.job_template(request(0))
    now = utcnow()
    rows = [dict(template, request_xml=template["request_xml"].replace(" 0<", f" {k}<"),  # type: ignore[union-attr]
                 connection_id=cid, state="queued", priority=0, attempts=0, wall_hits=0, created_at=now,
                 updated_at=now) for k in range(n)]
    started = time.perf_counter()
    with db.engine.begin() as conn:
        conn.execute(insert(Job), rows)
    rate = n / (time.perf_counter() - started)
    dbsetup.clear_jobs(db)
    return rate


def _http_worker(port: int, token: str, name: str, first: int, count: int, start: Any, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    errors: list[str] = []
    start.wait()
    for n in range(first, first + count):
        body = json.dumps({"qbxml": request(n)}).encode()
        conn.request("POST", f"/api/v1/connections/{name}/jobs", body=body,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status not in (200, 201):
            errors.append(f"HTTP {response.status}: {data[:200]!r}")
            if len(errors) > 5:
                break
    conn.close()
    out.put({"end": time.time(), "errors": errors})


def _http(opts: Options, label: str, db: dbsetup.BenchDatabase, name: str, n: int, floor: float) -> Result:
    try:
        from qwc_service import api, tokens  # noqa: F401  (being built alongside: skip if absent)
        api.make_api  # noqa: B018
    except (ImportError, AttributeError) as exc:
        return Result(CASE, f"HTTP API POST …/jobs, {label}", None, "jobs/s", note=f"skipped: API not importable ({exc})")
    from qwc_service.database import make_sessionmaker

    with make_sessionmaker(db.engine).begin() as s:
        token, _ = tokens.create_token(s, f"bench-{time.time_ns()}", now=utcnow())
    opts.say(f"case 5: {label}, HTTP API × {n} from {opts.clients} clients")
    server = start_qwc_server(f"enqueue-{label.lower()}", db.url, threads=opts.threads)
    try:
        ctx = mp.get_context("fork")
        start, out = ctx.Event(), ctx.Queue()
        per = n // opts.clients
        # warm-up
        _http_worker(server.port, token, name, 900_000, 10, _Set(), _Sink())
        procs = [ctx.Process(target=_http_worker, args=(server.port, token, name, 200_000 + i * per, per, start, out),
                             daemon=True) for i in range(opts.clients)]
        for proc in procs:
            proc.start()
        time.sleep(0.3)
        t0 = time.time()
        start.set()
        outs = [out.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join(5)
    finally:
        server.stop()
    errors = [e for o in outs for e in o["errors"]]
    rate = per * opts.clients / (max(o["end"] for o in outs) - t0)
    return Result(CASE, f"HTTP API POST …/jobs, {opts.clients} clients, {label}", round(rate), "jobs/s", round(floor),
                  cost_ratio(rate, floor, higher_is_better=True), "(reported)", None if not errors else False,
                  note=("one job per request (the API has no batch endpoint)" if not errors
                        else f"errors: {errors[:2]}"))


class _Set:
    def wait(self) -> None:
        pass


class _Sink:
    def put(self, item: object) -> None:
        pass
