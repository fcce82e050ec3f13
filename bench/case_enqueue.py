"""Case 5: how fast integrators can queue work.

* ``QueueClient.enqueue``, one job per call (one transaction each);
* batched: ``queue.enqueue_many``, 500 jobs per transaction (the target row),
  and ``QueueClient.enqueue_many``, 500 per call (the same plus the JobInfo
  answers integrators get);
* the HTTP API from four keep-alive clients against ``qwc-service serve``:
  ``POST /api/v1/connections/{name}/jobs``, one job per request, and
  ``POST …/jobs/batch``, 500 jobs per request.

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
#: Jobs per batch, in the Python rows and per HTTP request in the batched HTTP row.
BATCH = 500


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
    http_batch_n = 8_000 if opts.quick else 40_000  # a few batches per client, not one
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

        opts.say(f"case 5: {label}, queue.enqueue_many × {batch_n}, {BATCH} per transaction")
        client.enqueue_many(name, [request(-100 - n) for n in range(20)])  # warm-up, as for the single row
        started = time.perf_counter()
        for start in range(0, batch_n, BATCH):
            with client.db.begin() as s:
                conn = connections.get_connection(s, name)
                queue.enqueue_many(s, conn, [request(100_000 + n) for n in range(start, min(batch_n, start + BATCH))],
                                   now=utcnow())
        batched = batch_n / (time.perf_counter() - started)
        results.append(Result(CASE, f"batched (queue.enqueue_many, {BATCH} per transaction), {label}", round(batched),
                              "jobs/s", round(floor), cost_ratio(batched, floor, higher_is_better=True), "≥ 5,000/s",
                              batched >= 5000))

        opts.say(f"case 5: {label}, QueueClient.enqueue_many × {batch_n}, {BATCH} per call")
        started = time.perf_counter()
        for start in range(0, batch_n, BATCH):
            client.enqueue_many(name, [request(300_000 + n) for n in range(start, min(batch_n, start + BATCH))])
        answered = batch_n / (time.perf_counter() - started)
        results.append(Result(CASE, f"QueueClient.enqueue_many, {BATCH} per call, {label}", round(answered), "jobs/s",
                              round(floor), cost_ratio(answered, floor, higher_is_better=True), "(reported)", None,
                              note="with the JobInfo answers"))
        results.extend(_http(opts, label, db, name, http_n, http_batch_n, floor))
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


def _http_worker(port: int, token: str, name: str, first: int, count: int, batch: int, start: Any, out: Any) -> None:
    """POST ``count`` jobs: one per request when ``batch`` is 0, else ``batch`` per request to …/jobs/batch."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    errors: list[str] = []
    start.wait()
    step = batch or 1
    for n in range(first, first + count, step):
        if batch:
            path = f"/api/v1/connections/{name}/jobs/batch"
            body = json.dumps({"jobs": [{"qbxml": request(k)} for k in range(n, min(first + count, n + step))]})
        else:
            path, body = f"/api/v1/connections/{name}/jobs", json.dumps({"qbxml": request(n)})
        conn.request("POST", path, body=body.encode(),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status not in (200, 201):
            errors.append(f"HTTP {response.status}: {data[:200]!r}")
            if len(errors) > 5:
                break
    conn.close()
    out.put({"end": time.time(), "errors": errors})


def _http(opts: Options, label: str, db: dbsetup.BenchDatabase, name: str, single_n: int, batch_n: int,
          floor: float) -> list[Result]:
    from qwc_service import tokens
    from qwc_service.database import make_sessionmaker

    with make_sessionmaker(db.engine).begin() as s:
        token, _ = tokens.create_token(s, f"bench-{time.time_ns()}", now=utcnow())
    server = start_qwc_server(f"enqueue-{label.lower()}", db.url, threads=opts.threads)
    results = []
    try:
        _http_worker(server.port, token, name, 900_000, 10, 0, _Set(), _Sink())  # warm-up
        _http_worker(server.port, token, name, 910_000, 20, 10, _Set(), _Sink())
        for n, batch, first, what in ((single_n, 0, 200_000, "POST …/jobs, one job per request"),
                                      (batch_n, BATCH, 400_000, f"POST …/jobs/batch, {BATCH} jobs per request")):
            opts.say(f"case 5: {label}, HTTP API {what} × {n} from {opts.clients} clients")
            rate, errors = _http_run(opts, server.port, token, name, n, batch, first)
            results.append(Result(CASE, f"HTTP API {what}, {opts.clients} clients, {label}", round(rate), "jobs/s",
                                  round(floor), cost_ratio(rate, floor, higher_is_better=True), "(reported)",
                                  None if not errors else False, note=f"errors: {errors[:2]}" if errors else ""))
    finally:
        server.stop()
    return results


def _http_run(opts: Options, port: int, token: str, name: str, n: int, batch: int,
              first: int) -> tuple[float, list[str]]:
    """Jobs per second from ``opts.clients`` processes started together, and their errors."""
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    per = n // opts.clients
    procs = [ctx.Process(target=_http_worker, args=(port, token, name, first + i * per, per, batch, start, out),
                         daemon=True) for i in range(opts.clients)]
    for proc in procs:
        proc.start()
    time.sleep(0.3)
    t0 = time.time()
    start.set()
    outs = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(5)
    errors = [e for o in outs for e in o["errors"]]
    return per * opts.clients / (max(o["end"] for o in outs) - t0), errors


class _Set:
    def wait(self) -> None:
        pass


class _Sink:
    def put(self, item: object) -> None:
        pass
