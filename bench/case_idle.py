"""Case 2: idle polls (serverVersion, clientVersion, authenticate → none, closeConnection).

Many connections with empty queues, production argon2 parameters (the
defaults), four connectors each cycling through its share of the
connections. The first pass over the connections is the cold figure (every
login pays one argon2 check); the measured run follows with the credential
cache warm. The floor is ``bench.floor`` answering the same four calls.

If the shared ``qbwc_load.py`` instrument is present, it is run as well (four
connections, one per client, as it works) as a cross-check of the driver.
"""

from __future__ import annotations

from typing import Any

from . import dbsetup, driver, instrument, layers
from .common import PASSWORD, Profiler, Result, cost_ratio, start_floor_server, start_qwc_server
from .options import Options

CASE = "2 idle"


def run(opts: Options) -> list[Result]:
    n_conn = 100 if opts.quick else 1_000
    duration = 6.0 if opts.quick else 15.0
    results: list[Result] = []

    opts.say(f"case 2: floor, {opts.clients} connectors, {duration:.0f} s")
    floor = start_floor_server("floor-idle", threads=opts.threads)
    floor_users = [f"idle{n:05d}" for n in range(n_conn)]
    try:
        driver.run_idle(floor.url, floor_users, PASSWORD, clients=opts.clients, duration=1.0)
        f = driver.run_idle(floor.url, floor_users, PASSWORD, clients=opts.clients, duration=duration,
                            server_cpu=floor.cpu_seconds)
        floor_check = (instrument.idle(opts, floor, users=floor_users[:opts.clients], duration=6.0)
                       if not opts.quick else None)
    finally:
        floor.stop()
    if f.errors:
        raise RuntimeError(f"floor run failed: {f.errors[:3]}")
    floor_cpu = f.server_cpu / f.sessions * 1e3 if f.sessions and f.server_cpu is not None else None

    for label, make_db, n_conn in _backends(opts, n_conn):
        opts.say(f"case 2: qwc-service on {label}, {n_conn} connections")
        db = make_db()
        server = None
        try:
            conns = dbsetup.add_connections(db, n_conn, prefix="idle")
            users = [c[2] for c in conns]
            server = start_qwc_server(f"idle-{label.lower()}", db.url, threads=opts.threads)
            opts.say(f"case 2: cold pass, one argon2 check per connection ({n_conn} logins)")
            per_client = -(-n_conn // opts.clients)
            cold = driver.run_idle(server.url, users, PASSWORD, clients=opts.clients, duration=900,
                                   max_sessions_per_client=per_client, server_cpu=server.cpu_seconds)
            if cold.errors:
                raise RuntimeError(f"cold pass failed: {cold.errors[:3]}\n{server.log_tail()}")
            opts.say(f"case 2: warm run, {duration:.0f} s")
            with Profiler(opts.profile, f"idle-{label.lower()}", [server.pid]) as profiler:
                warm = driver.run_idle(server.url, users, PASSWORD, clients=opts.clients, duration=duration,
                                       server_cpu=server.cpu_seconds)
            check = instrument.idle(opts, server, users=users[:opts.clients], duration=6.0) if not opts.quick else None
        finally:
            if server is not None:
                server.stop()
            db.dispose()
        ok = not warm.errors
        cpu = warm.server_cpu / warm.sessions * 1e3 if warm.sessions and warm.server_cpu is not None else None
        cold_cpu = cold.server_cpu / cold.sessions * 1e3 if cold.sessions and cold.server_cpu is not None else None
        covered = min(warm.sessions, n_conn)
        details = {
            "connections": n_conn, "credential_cache": "warm", "sessions": warm.sessions,
            "elapsed_s": round(warm.elapsed, 2), "connections_polled": covered,
            "session_ms_p50": _ms(driver.percentile(warm.session_latencies, 50)),
            "session_ms_p99": _ms(driver.percentile(warm.session_latencies, 99)),
            "server_cpu_s": round(warm.server_cpu or 0, 2), "client_cpu_s": round(warm.client_cpu, 2),
            "floor_sessions_per_s": round(f.sessions_per_s, 1), "floor_server_cpu_ms_per_session": _r(floor_cpu),
            "cold_pass": {"sessions": cold.sessions, "sessions_per_s": round(cold.sessions_per_s, 1),
                          "server_cpu_ms_per_session": _r(cold_cpu)},
            "qbwc_load_check": check, "qbwc_load_check_floor": floor_check, "profile": profiler.outputs,
        }
        results.append(Result(
            CASE, f"idle sessions/s, warm cache, {n_conn} conns, {label}", round(warm.sessions_per_s, 1),
            "sessions/s", round(f.sessions_per_s, 1), cost_ratio(warm.sessions_per_s, f.sessions_per_s,
                                                                higher_is_better=True),
            "≥ 500/s", warm.sessions_per_s >= 500 and ok,
            note="" if ok else f"errors: {warm.errors[:2]}", details=details))
        results.append(Result(
            CASE, f"server CPU per idle poll, warm, {label}", _r(cpu), "ms", _r(floor_cpu),
            cost_ratio(cpu, floor_cpu, higher_is_better=False), "(reported)", None))
        results.append(Result(
            CASE, f"idle sessions/s, COLD cache (argon2 each), {label}", round(cold.sessions_per_s, 1), "sessions/s",
            None, None, "(reported)", None,
            note=f"first poll of each connection after a restart: {_r(cold_cpu)} ms server CPU each "
                 "(argon2id t=3, m=64 MiB, p=4)"))
        if check and check.get("sessions_per_s") and floor_check and floor_check.get("sessions_per_s"):
            ours_rate, floor_rate = float(check["sessions_per_s"]), float(floor_check["sessions_per_s"])
            results.append(Result(
                CASE, f"idle sessions/s by qbwc_load.py (4 conns), {label}", ours_rate, "sessions/s", floor_rate,
                cost_ratio(ours_rate, floor_rate, higher_is_better=True), "≥ 500/s", ours_rate >= 500,
                note="cross-check with the shared instrument"))
    if not opts.quick:
        results.extend(_threads(opts))
    opts.say("case 2: layers, in-process CPU per idle poll")
    split = layers.measure_idle(n=300 if opts.quick else 600)
    results.append(Result(
        CASE, "in-process CPU/poll: WSGI+Spyne, no database", split["soap"], "ms", split["floor"],
        cost_ratio(split["soap"], split["floor"], higher_is_better=False), "(diagnosis)", None,
        details={"layers_cpu_ms_per_poll": split}))
    results.append(Result(
        CASE, "in-process CPU/poll: core (Conversation+SQLite)", split["core"], "ms", split["floor"],
        cost_ratio(split["core"], split["floor"], higher_is_better=False), "(diagnosis)", None))
    results.append(Result(
        CASE, "in-process CPU/poll: whole WSGI app", split["stack"], "ms", split["floor"],
        cost_ratio(split["stack"], split["floor"], higher_is_better=False), "(diagnosis)", None,
        note="over HTTP add waitress (floor over HTTP minus floor in-process) and thread hand-offs"))
    return results


def _threads(opts: Options) -> list[Result]:
    """The same warm idle poll under ``serve --threads`` 8 (the default), 2 and 1: what GIL hand-offs cost."""
    db = dbsetup.fresh_sqlite("idle-threads")
    rows: list[Result] = []
    base = None
    try:
        users = [c[2] for c in dbsetup.add_connections(db, 20, prefix="idlet")]
        for threads in (8, 2, 1):
            opts.say(f"case 2: serve --threads {threads}, 20 connections, 6 s")
            server = start_qwc_server(f"idle-threads-{threads}", db.url, threads=threads)
            try:
                driver.run_idle(server.url, users, PASSWORD, clients=opts.clients,
                                max_sessions_per_client=-(-len(users) // opts.clients))
                run_ = driver.run_idle(server.url, users, PASSWORD, clients=opts.clients, duration=6.0,
                                       server_cpu=server.cpu_seconds)
            finally:
                server.stop()
            cpu = run_.server_cpu / run_.sessions * 1e3 if run_.sessions and run_.server_cpu is not None else None
            if base is None:
                base = run_.sessions_per_s
            rows.append(Result(
                CASE, f"idle sessions/s with serve --threads {threads} (20 conns, SQLite)", round(run_.sessions_per_s, 1),
                "sessions/s", round(base, 1), cost_ratio(run_.sessions_per_s, base, higher_is_better=True),
                "(diagnosis)", None, note=f"{_r(cpu)} ms server CPU per poll; floor = --threads 8",
                details={"server_cpu_ms_per_session": _r(cpu), "errors": run_.errors[:3]}))
    finally:
        db.dispose()
    return rows


def _backends(opts: Options, n_conn: int) -> list[tuple[str, Any, int]]:
    """SQLite with every connection; PostgreSQL (full run) with 200, to keep the argon2 warm-up short."""
    backends: list[tuple[str, Any, int]] = [("SQLite", lambda: dbsetup.fresh_sqlite("idle"), n_conn)]
    if not opts.quick and not opts.pg_skip:
        backends.append(("PostgreSQL", lambda: dbsetup.fresh_postgresql(opts.pg_url), min(n_conn, 200)))
    return backends


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1e3, 2) if seconds is not None else None


def _r(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
