"""Case 1: sendRequestXML/receiveResponseXML pairs through the whole stack, against the floor.

Four connectors, each with its own connection, queue and session, answer
queued CustomerQueryRq jobs until the server says 100. The floor is
``bench.floor`` (the same envelopes parsed and answered by bare lxml under
the same waitress settings), driven by the same driver for the same number of
pairs. Server CPU is read from /proc for the measured window only.
"""

from __future__ import annotations

from qwc_service.simulator import FakeQuickBooks, QuickBooksProfile

import sys

from . import dbsetup, driver, instrument, layers
from .common import (PASSWORD, Profiler, Result, cost_ratio, postgres_cpu_seconds, start_floor_db_server,
                     start_floor_server, start_qwc_server)
from .options import Options

CASE = "1 pairs"


def run(opts: Options) -> list[Result]:
    total = 2_000 if opts.quick else 10_000
    per = total // opts.clients
    floor_checks: dict[str, object] = {}
    floors = [_floor(opts, per, floor_checks)]
    results: list[Result] = []
    backends = [("SQLite", None)]
    if not opts.pg_skip and not opts.quick:
        backends.append(("PostgreSQL", opts.pg_url))
    ours = {}
    for label, pg_url in backends:
        ours[label] = _ours(opts, per, label, pg_url)
    if not opts.quick:
        floors.append(_floor(opts, per, {}))  # before and after: the machine is shared
    durable = _durable_floor(opts, per)
    floor_rate = sum(f.pairs_per_s for f in floors) / len(floors)
    floor_cpu = sum(f.server_cpu / f.pairs for f in floors) / len(floors) * 1e3  # type: ignore[operator]
    floor_details = {"runs_pairs_per_s": [round(f.pairs_per_s, 1) for f in floors],
                     "server_cpu_ms_per_pair": [round(f.server_cpu / f.pairs * 1e3, 3) for f in floors],  # type: ignore[operator]
                     "pair_ms_p50": _ms(driver.percentile(floors[0].pair_latencies, 50))}
    for label, (run_, details) in ours.items():
        rate = run_.pairs_per_s
        cpu = run_.server_cpu / run_.pairs * 1e3 if run_.pairs and run_.server_cpu is not None else None
        details.update(floor=floor_details)
        ok = not run_.errors and run_.pairs == total
        results.append(Result(
            CASE, f"pairs/s, {opts.clients} connectors, {label}", round(rate, 1), "pairs/s", round(floor_rate, 1),
            cost_ratio(rate, floor_rate, higher_is_better=True), "≥ 1,000/s", rate >= 1000 and ok,
            note="" if ok else f"{run_.pairs}/{total} pairs; errors: {run_.errors[:2]}", details=details))
        results.append(Result(
            CASE, f"server CPU per pair, {label}", round(cpu, 3) if cpu else None, "ms", round(floor_cpu, 3),
            cost_ratio(cpu, floor_cpu, higher_is_better=False), "≤ 2× floor",
            (cpu is not None and cpu <= 2 * floor_cpu) and ok))
        if label == "SQLite" and durable is not None and durable.pairs and durable.server_cpu:
            d_rate, d_cpu = durable.pairs_per_s, durable.server_cpu / durable.pairs * 1e3
            results.append(Result(
                CASE, "pairs/s vs durable floor (sqlite3, same SQL, no ORM/Spyne)", round(rate, 1), "pairs/s",
                round(d_rate, 1), cost_ratio(rate, d_rate, higher_is_better=True), "(diagnosis)", None,
                details={"durable_floor_pairs_per_s": round(d_rate, 1), "durable_floor_cpu_ms_per_pair": round(d_cpu, 3),
                         "pair_ms_p50": _ms(driver.percentile(durable.pair_latencies, 50))}))
            results.append(Result(
                CASE, "server CPU/pair vs durable floor", round(cpu, 3) if cpu else None, "ms", round(d_cpu, 3),
                cost_ratio(cpu, d_cpu, higher_is_better=False), "(diagnosis)", None,
                note="the durable floor runs the service's own claim query and capped count (at most 100 rows)"))
        check = details.get("qbwc_load_check")
        if isinstance(check, dict) and check.get("pairs_per_s") and isinstance(floor_checks.get("work"), dict):
            floor_check = floor_checks["work"]
            assert isinstance(floor_check, dict)
            if floor_check.get("pairs_per_s"):
                rate_c, floor_c = float(check["pairs_per_s"]), float(floor_check["pairs_per_s"])
                results.append(Result(
                    CASE, f"pairs/s by qbwc_load.py, {label}", rate_c, "pairs/s", floor_c,
                    cost_ratio(rate_c, floor_c, higher_is_better=True), "≥ 1,000/s", rate_c >= 1000 and
                    not check.get("errors"), note="cross-check with the shared instrument", details={
                        "ours": check, "floor": floor_check}))
    opts.say("case 1: layers, in-process CPU per pair")
    split = layers.measure(n=200 if opts.quick else 400, long_queue=per)
    results.append(Result(
        CASE, "in-process CPU/pair: WSGI+Spyne, no database", split["soap"], "ms", split["floor"],
        cost_ratio(split["soap"], split["floor"], higher_is_better=False), "(diagnosis)", None,
        details={"layers_cpu_ms_per_pair": split}))
    results.append(Result(
        CASE, "in-process CPU/pair: core (Conversation+SQLite), short queue", split["core_short_queue"], "ms",
        split["floor"], cost_ratio(split["core_short_queue"], split["floor"], higher_is_better=False),
        "(diagnosis)", None))
    results.append(Result(
        CASE, f"in-process CPU/pair: core, {per:,} queued per connection", split["core_long_queue"], "ms",
        split["core_short_queue"], cost_ratio(split["core_long_queue"], split["core_short_queue"],
                                              higher_is_better=False),
        "flat (≈1×)", None, note="floor here = the same core with a short queue: growth with queue length"))
    return results


def _floor(opts: Options, per: int, checks: dict[str, object]) -> driver.Run:
    opts.say(f"case 1: floor, {opts.clients} connectors × {per} pairs")
    server = start_floor_server("floor-pairs", threads=opts.threads)
    users = [f"work{i}" for i in range(opts.clients)]
    hcp = FakeQuickBooks().first_call_response()
    try:
        driver.run_work(server.url, users, PASSWORD, hcp=hcp, max_pairs=min(per, 200))  # warm-up
        run_ = driver.run_work(server.url, users, PASSWORD, hcp=hcp, max_pairs=per, server_cpu=server.cpu_seconds)
        if opts.qbwc_load is not None and not opts.quick:
            checks["work"] = instrument.work(opts, server, users=users, pairs_per_session=_check_pairs(opts),
                                             rounds=_check_rounds(opts), refill=None)
    finally:
        server.stop()
    if run_.errors:
        raise RuntimeError(f"floor run failed: {run_.errors[:3]}")
    return run_


def _durable_floor(opts: Options, per: int) -> driver.Run | None:
    opts.say(f"case 1: durable floor (sqlite3), {opts.clients} connectors × {per} pairs")
    db = dbsetup.fresh_sqlite("pairs-durable")
    server = None
    try:
        conns = dbsetup.add_connections(db, opts.clients, prefix="work")
        ids, users = [c[0] for c in conns], [c[2] for c in conns]
        hcp = FakeQuickBooks().first_call_response()
        server = start_floor_db_server("floor-db-pairs", db.url, threads=opts.threads)
        driver.run_idle(server.url, users, PASSWORD, clients=opts.clients, max_sessions_per_client=1)
        dbsetup.fill_jobs(db, ids, 50 * len(ids))
        driver.run_work(server.url, users, PASSWORD, hcp=hcp)
        dbsetup.fill_jobs(db, ids, per * len(ids))
        run_ = driver.run_work(server.url, users, PASSWORD, hcp=hcp, server_cpu=server.cpu_seconds)
        if run_.errors:
            raise RuntimeError(f"durable floor failed: {run_.errors[:3]}\n{server.log_tail()}")
        return run_
    finally:
        if server is not None:
            server.stop()
        db.dispose()


def _ours(opts: Options, per: int, label: str, pg_url: str | None) -> tuple[driver.Run, dict[str, object]]:
    opts.say(f"case 1: qwc-service on {label}, {opts.clients} connectors × {per} pairs")
    db = dbsetup.fresh_postgresql(pg_url) if pg_url else dbsetup.fresh_sqlite("pairs")
    server = None
    try:
        conns = dbsetup.add_connections(db, opts.clients, prefix="work")
        ids = [c[0] for c in conns]
        users = [c[2] for c in conns]
        hcp = {}
        for cid, _, user in conns:
            owner, file_id = dbsetup.connection_guids(db, cid)
            hcp[user] = FakeQuickBooks(QuickBooksProfile(owner_id=owner, file_id=file_id)).first_call_response()
        server = start_qwc_server(f"pairs-{label.lower()}", db.url, threads=opts.threads)
        # Warm-up (untimed): one argon2 check per connection fills the credential
        # cache, then a short session each loads every code path.
        driver.run_idle(server.url, users, PASSWORD, clients=opts.clients, max_sessions_per_client=1)
        dbsetup.fill_jobs(db, ids, 50 * len(ids))
        warm = driver.run_work(server.url, users, PASSWORD, hcp=hcp)
        if warm.errors:
            raise RuntimeError(f"warm-up failed: {warm.errors[:3]}\n{server.log_tail()}")
        dbsetup.fill_jobs(db, ids, per * len(ids))
        pg0 = postgres_cpu_seconds() if pg_url else None
        with Profiler(opts.profile, f"pairs-{label.lower()}", [server.pid]) as profiler:
            run_ = driver.run_work(server.url, users, PASSWORD, hcp=hcp, server_cpu=server.cpu_seconds)
        pg1 = postgres_cpu_seconds() if pg_url else None
        counts = dbsetup.job_counts(db)
        check = None
        if opts.qbwc_load is not None and pg_url is None and not opts.quick:
            refill = f"{sys.executable} -m bench.refill --db {db.url} --jobs {_check_pairs(opts)} {{users}}"
            check = instrument.work(opts, server, users=users, pairs_per_session=_check_pairs(opts),
                                    rounds=_check_rounds(opts), refill=refill)
        details: dict[str, object] = {
            "pairs": run_.pairs, "elapsed_s": round(run_.elapsed, 3), "server_cpu_s": round(run_.server_cpu or 0, 2),
            "client_cpu_s": round(run_.client_cpu, 2), "http_calls": run_.calls,
            "pair_ms_p50": _ms(driver.percentile(run_.pair_latencies, 50)),
            "pair_ms_p99": _ms(driver.percentile(run_.pair_latencies, 99)),
            "job_states_after": counts, "credential_cache": "warm", "profile": profiler.outputs,
            "queued_per_connection_at_start": per, "qbwc_load_check": check,
            "postgres_cpu_ms_per_pair": round((pg1 - pg0) / run_.pairs * 1e3, 3)
            if pg0 is not None and pg1 is not None and run_.pairs else None,
        }
        return run_, details
    finally:
        if server is not None:
            server.stop()
        db.dispose()


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1e3, 2) if seconds is not None else None


def _check_pairs(opts: Options) -> int:
    return 100 if opts.quick else 250


def _check_rounds(opts: Options) -> int:
    return 2 if opts.quick else 4
