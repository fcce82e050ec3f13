"""Case 6: 1, 2 and 4 server processes on PostgreSQL, 50 simulated Web Connectors.

Four ``qwc-service serve`` processes are started once and warmed (each checks
every sync user's password once, filling its credential cache); each phase
uses the first 1, 2 or 4 of them. Every connection gets its own queue of
CustomerAddRq jobs with unique names, and its own ``FakeWebConnector`` +
``FakeQuickBooks`` (the simulator), which runs sessions of up to five
requests back to back, each session on the next server process in turn (a
session stays on one process, as one keep-alive connection does; the next
one lands elsewhere, as behind a load balancer). The connectors run as
threads in four client processes.

After each phase the database and every FakeQuickBooks are checked: no job
may be lost (done without QuickBooks having processed it, processed but not
done, or left ``sent``/``in_doubt``) and none may be processed twice (by
requestID, and by customer name in each company file).
"""

from __future__ import annotations

import multiprocessing as mp
import re
import threading
import time
from collections import Counter
from typing import Any

from sqlalchemy import text

from qwc_service.simulator import FakeQuickBooks, FakeWebConnector, Outcome, QuickBooksProfile

from . import dbsetup, driver
from .common import PASSWORD, Result, Server, postgres_cpu_seconds, process_cpu_seconds, start_qwc_server
from .options import Options

CASE = "6 scale-out"
CONNECTORS = 50
PER_SESSION = 5
JOB_ID = re.compile(r'requestID="(\d+)\.')


def run(opts: Options) -> list[Result]:
    if opts.pg_skip:
        return [Result(CASE, "scale-out on PostgreSQL", None, "", note=f"skipped: {opts.pg_skip}")]
    processes = [1, 2, 4]
    duration = 6.0 if opts.quick else 20.0
    jobs_per_connection = 100 if opts.quick else 200
    db = dbsetup.fresh_postgresql(opts.pg_url)
    servers: list[Server] = []
    results: list[Result] = []
    try:
        conns = dbsetup.add_connections(db, CONNECTORS, prefix="so")
        users = [c[2] for c in conns]
        guids = {c[0]: dbsetup.connection_guids(db, c[0]) for c in conns}
        opts.say(f"case 6: starting {max(processes)} server processes and warming their credential caches")
        servers = [start_qwc_server(f"scaleout-{i}", db.url, threads=opts.threads) for i in range(max(processes))]
        for server in servers:
            warm = driver.run_idle(server.url, users, PASSWORD, clients=opts.clients,
                                   max_sessions_per_client=-(-CONNECTORS // opts.clients), duration=600)
            if warm.errors:
                raise RuntimeError(f"warm-up failed: {warm.errors[:3]}\n{server.log_tail()}")
        base: float | None = None
        for count in processes:
            opts.say(f"case 6: {count} process(es), {CONNECTORS} connectors, {duration:.0f} s")
            _reset(db)
            phase = f"p{count}"
            dbsetup.fill_named_jobs(db, [(cid, _request(phase, cid, k)) for cid, _, _ in conns
                                         for k in range(jobs_per_connection)])
            active = servers[:count]
            plan = [(i, cid, user, *guids[cid]) for i, (cid, _, user) in enumerate(conns)]
            cpu0, pg0 = process_cpu_seconds(*(s.pid for s in active)), postgres_cpu_seconds()
            _STAT.clear()
            _busy(0)
            outs, elapsed = _drive(plan, [s.url for s in active], duration)
            cpu = process_cpu_seconds(*(s.pid for s in active)) - cpu0
            pg1 = postgres_cpu_seconds()
            pg_cpu = pg1 - pg0 if pg0 is not None and pg1 is not None else None
            check = _verify(db, outs)
            outcomes: Counter[str] = Counter()
            for o in outs:
                outcomes.update(o["outcomes"])
            work_sessions = sum(o["work_sessions"] for o in outs)
            pairs = sum(len(o["processed"]) for o in outs)
            rate = work_sessions / elapsed if elapsed else 0.0
            if base is None:
                base = rate
            ok = check["lost"] == 0 and check["twice"] == 0
            details = {"processes": count, "connectors": CONNECTORS, "elapsed_s": round(elapsed, 2),
                       "sessions_with_work": work_sessions, "pairs": pairs,
                       "pairs_per_s": round(pairs / elapsed, 1) if elapsed else None,
                       "outcomes": dict(outcomes), "server_cpu_s": round(cpu, 2),
                       "postgres_cpu_s": round(pg_cpu, 2) if pg_cpu is not None else None,
                       "machine_cpu_busy": _busy(elapsed),
                       "client_cpu_s": round(sum(o["cpu"] for o in outs), 2),
                       "server_cpu_ms_per_pair": round(cpu / pairs * 1e3, 2) if pairs else None, "check": check,
                       "errors": [e for o in outs for e in o["errors"]][:5]}
            results.append(Result(
                CASE, f"{count} process{'es' if count > 1 else ''}: sessions/s (≤{PER_SESSION} jobs each)",
                round(rate, 1), "sessions/s", round(base, 1),
                round(base / rate, 2) if rate else None, "0 lost, 0 twice", ok,
                note=(f"{pairs / elapsed:.0f} pairs/s; lost {check['lost']}, twice {check['twice']}; "
                      f"speed-up ×{rate / base:.2f} vs 1 process" if base else ""), details=details))
    finally:
        for server in servers:
            server.stop()
        db.dispose()
    return results


_STAT: list[tuple[float, list[int]]] = []


def _cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def _busy(elapsed: float) -> float | None:
    """Share of all cores busy since the previous call (the whole machine: servers, PostgreSQL, clients, others)."""
    now = _cpu_times()
    previous = _STAT[-1][1] if _STAT else None
    _STAT.append((elapsed, now))
    if previous is None:
        return None
    delta = [a - b for a, b in zip(now, previous)]
    total = sum(delta)
    idle = delta[3] + delta[4]
    return round(1 - idle / total, 2) if total else None


def _request(phase: str, cid: int, k: int) -> str:
    return (f"<CustomerAddRq><CustomerAdd><Name>SO {phase} {cid}-{k}</Name><CompanyName>Scale-out</CompanyName>"
            "</CustomerAdd></CustomerAddRq>")


def _reset(db: dbsetup.BenchDatabase) -> None:
    with db.engine.begin() as conn:
        for table in ("webhook_deliveries", "job_events", "job_pages", "job_dependencies", "jobs", "qbwc_sessions",
                      "auth_events", "auth_counters"):
            conn.execute(text(f"DELETE FROM {table}"))


def _connector(index: int, cid: int, user: str, owner: str, file_id: str, urls: list[str], deadline: float,
               sink: list[dict[str, Any]]) -> None:
    quickbooks = FakeQuickBooks(QuickBooksProfile(owner_id=owner, file_id=file_id))
    outcomes: Counter[str] = Counter()
    processed: list[int] = []
    errors: list[str] = []
    work_sessions = 0
    attempt = 0
    while time.monotonic() < deadline:
        url = urls[(index + attempt) % len(urls)]
        attempt += 1
        result = FakeWebConnector(url, quickbooks, username=user, password=PASSWORD, max_requests=PER_SESSION,
                                  noop_wait=0.2, max_noops=25).run()
        outcomes[result.outcome.value] += 1
        for exchange in result.exchanges:
            match = JOB_ID.search(exchange.request)
            processed.append(int(match.group(1)) if match else -1)
        if result.exchanges:
            work_sessions += 1
        if result.outcome is Outcome.NONE:
            break
        if result.outcome is Outcome.BUSY:
            time.sleep(0.2)
        elif result.outcome not in (Outcome.OK, Outcome.STOPPED):
            errors.append(f"{user}: {result.outcome.value}: {result.final_status[:200]}")
            time.sleep(0.1)
    names = [record.findtext("Name") or "" for record in quickbooks.company.records("Customer")]
    sink.append({"cid": cid, "outcomes": dict(outcomes), "processed": processed, "errors": errors,
                 "work_sessions": work_sessions, "names": names, "end": time.time()})


def _worker(plan: list[tuple[int, int, str, str, str]], urls: list[str], duration: float, start: Any,
            out: Any) -> None:
    sink: list[dict[str, Any]] = []
    start.wait()
    deadline = time.monotonic() + duration
    threads = [threading.Thread(target=_connector, args=(*item, urls, deadline, sink)) for item in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    import os

    t = os.times()
    out.put({"connectors": sink, "cpu": t.user + t.system})


def _drive(plan: list[tuple[int, int, str, str, str]], urls: list[str], duration: float,
           workers: int = 4) -> tuple[list[dict[str, Any]], float]:
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(plan[i::workers], urls, duration, start, out), daemon=True)
             for i in range(workers)]
    for proc in procs:
        proc.start()
    try:
        time.sleep(0.3)
        t0 = time.time()
        start.set()
        batches = [out.get(timeout=duration + 600) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    outs = [dict(c, cpu=b["cpu"] / max(1, len(b["connectors"]))) for b in batches for c in b["connectors"]]
    elapsed = max(o["end"] for o in outs) - t0
    return outs, elapsed


def _verify(db: dbsetup.BenchDatabase, outs: list[dict[str, Any]]) -> dict[str, Any]:
    processed: Counter[int] = Counter()
    for o in outs:
        processed.update(o["processed"])
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, connection_id, state, request_xml FROM jobs")).all()
    states = {int(r[0]): str(r[2]) for r in rows}
    by_state = Counter(states.values())
    twice = sorted(j for j, n in processed.items() if n > 1)
    unknown = sorted(j for j in processed if j not in states)
    done_not_processed = sorted(j for j, s in states.items() if s == "done" and j not in processed)
    processed_not_done = sorted(j for j in processed if states.get(j) not in ("done", None))
    stuck = sorted(j for j, s in states.items() if s in ("sent", "in_doubt"))
    duplicate_names = sum(n - 1 for o in outs for n in Counter(o["names"]).values() if n > 1)
    lost = len(set(done_not_processed) | set(processed_not_done) | set(stuck) | set(unknown))
    return {"jobs": len(states), "by_state": dict(by_state), "processed_requests": sum(processed.values()),
            "lost": lost, "twice": len(twice) + duplicate_names, "done_not_processed": done_not_processed[:10],
            "processed_not_done": processed_not_done[:10], "stuck": stuck[:10], "processed_twice": twice[:10],
            "duplicate_customer_names": duplicate_names}
