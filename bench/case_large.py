"""Case 4: receiveResponseXML carrying 10, 50 and 100 MB of qbXML.

A fresh ``qwc-service serve`` process per size (SQLite): authenticate, one
sendRequestXML, then the large answer. Wall time is the client's (sending the
envelope to reading the reply); memory is the server's peak RSS growth during
that call (VmHWM from /proc, reset to the current RSS just before the call
through /proc/<pid>/clear_refs, so the 64 MiB argon2 used at login does not
hide anything). The floor is lxml parsing the same envelope in a fresh process
(``bench.large_floor``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qwc_service.simulator import FakeQuickBooks, QuickBooksProfile
from qwc_service.simulator.soap import request_envelope

from . import dbsetup, driver
from .common import PASSWORD, Result, Server, cost_ratio, server_env, start_qwc_server
from .options import Options

CASE = "4 large"
MB = 1024 * 1024


def big_response(rq_name: str, request_id: str, size: int) -> str:
    """A CustomerQueryRs of ``size`` bytes or a little more, made of ordinary CustomerRet records."""
    head = (f'<?xml version="1.0" ?><QBXML><QBXMLMsgsRs><{rq_name}Rs requestID="{request_id}" statusCode="0" '
            'statusSeverity="Info" statusMessage="Status OK">')
    tail = f"</{rq_name}Rs></QBXMLMsgsRs></QBXML>"
    parts = [head]
    total = len(head) + len(tail)
    n = 0
    while total < size:
        n += 1
        record = (
            f"<CustomerRet><ListID>{80000000 + n:X}-1400000000</ListID><TimeCreated>2024-01-02T10:00:00-05:00"
            f"</TimeCreated><TimeModified>2024-01-02T10:00:00-05:00</TimeModified><EditSequence>1400000000"
            f"</EditSequence><Name>Customer {n} &amp; Sons</Name><FullName>Customer {n} &amp; Sons</FullName>"
            "<IsActive>true</IsActive><Sublevel>0</Sublevel><CompanyName>Example Trading Company</CompanyName>"
            "<BillAddress><Addr1>1 Main Street</Addr1><City>Mountain View</City><State>CA</State>"
            "<PostalCode>94043</PostalCode><Country>US</Country></BillAddress><Phone>555-0100</Phone>"
            f"<Email>customer{n}@example.com</Email><Balance>{n % 1000}.00</Balance><TotalBalance>{n % 1000}.00"
            "</TotalBalance><JobStatus>None</JobStatus></CustomerRet>"
        )
        parts.append(record)
        total += len(record)
    parts.append(tail)
    return "".join(parts)


def reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run(opts: Options) -> list[Result]:
    sizes = [10] if opts.quick else [10, 50, 100]
    results: list[Result] = []
    db = dbsetup.fresh_sqlite("large")
    try:
        (cid, _, user), = dbsetup.add_connections(db, 1, prefix="big")
        owner, file_id = dbsetup.connection_guids(db, cid)
        hcp = FakeQuickBooks(QuickBooksProfile(owner_id=owner, file_id=file_id)).first_call_response()
        for mb in sizes:
            results.extend(_one(opts, db, cid, user, hcp, mb))
    finally:
        db.dispose()
    return results


def _one(opts: Options, db: dbsetup.BenchDatabase, cid: int, user: str, hcp: str, mb: int) -> list[Result]:
    opts.say(f"case 4: {mb} MB answer")
    server = start_qwc_server(f"large-{mb}mb", db.url, threads=opts.threads)
    attempts: list[dict[str, float]] = []
    try:
        # Twice in the same fresh process: memory from the first (nothing allocated
        # before it), wall time the better of the two (the machine is shared).
        for attempt in range(2):
            attempts.append(_exchange(server, db, cid, user, hcp, mb))
    finally:
        server.stop()
    first = attempts[0]
    wall = min(a["wall_s"] for a in attempts)
    body = first.pop("body")  # type: ignore[arg-type]
    for a in attempts[1:]:
        a.pop("body", None)
    floor = _floor(opts, body)  # type: ignore[arg-type]
    del body
    floor_s = floor.get("parse_s")
    floor_mem = floor.get("peak_growth_bytes")
    growth, payload_bytes = first["peak_growth_bytes"], first["payload_bytes"]
    ok = all(a["ok"] for a in attempts)
    details = {"attempts": attempts, "floor": floor, "wall_s_by_attempt": [round(a["wall_s"], 3) for a in attempts]}
    note = "" if ok else f"job not done: {[a.get('job_state') for a in attempts]}"
    return [
        Result(CASE, f"receiveResponseXML {mb} MB, wall time", round(wall, 2), "s",
               round(floor_s, 2) if floor_s else None, cost_ratio(wall, floor_s, higher_is_better=False),
               "≤ 3× floor", (floor_s is not None and wall <= 3 * floor_s) and ok,
               note=(note or f"best of 2; server CPU {first['server_cpu_s']:.2f} s for the call"), details=details),
        Result(CASE, f"receiveResponseXML {mb} MB, peak RSS growth", round(growth / MB, 1), "MB",
               round(floor_mem / MB, 1) if floor_mem else None,
               cost_ratio(growth, floor_mem, higher_is_better=False),
               f"≤ 4× payload ({4 * payload_bytes / MB:.0f} MB)", growth <= 4 * payload_bytes and ok,
               note=f"{growth / payload_bytes:.1f}× the payload; absolute peak {first['peak_rss_bytes'] / MB:.0f} MB"),
    ]


def _exchange(server: Server, db: dbsetup.BenchDatabase, cid: int, user: str, hcp: str, mb: int) -> dict[str, object]:
    dbsetup.fill_jobs(db, [cid], 1)
    wire = driver.Wire(server.url, timeout=900)
    try:
        ticket, status = driver._begin(wire, user, PASSWORD)
        if status in ("none", "nvu", "busy"):
            raise RuntimeError(f"authenticate answered {status!r}")
        request = wire.call("sendRequestXML", [
            ("ticket", ticket), ("strHCPResponse", hcp), ("strCompanyFileName", driver.COMPANY_FILE),
            ("qbXMLCountry", "US"), ("qbXMLMajorVers", "13"), ("qbXMLMinorVers", "0")]).text or ""
        match = driver.REQUEST_ID.search(request)
        if match is None:
            raise RuntimeError(f"no request handed out: {request[:200]!r}")
        payload = big_response(match.group(1), match.group(2), mb * MB)
        body = request_envelope("receiveResponseXML", [("ticket", ticket), ("response", payload), ("hresult", ""),
                                                       ("message", "")])
        payload_bytes = len(payload.encode("utf-8"))
        del payload
        reset = reset_peak(server.pid)
        rss0, hwm0 = server.vm_rss_bytes(), server.vm_hwm_bytes()
        cpu0 = server.cpu_seconds()
        started = time.perf_counter()
        reply = wire.post("receiveResponseXML", body)
        wall = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu0
        hwm1 = server.vm_hwm_bytes()
        percent = reply.split(b"receiveResponseXMLResult>")[1].split(b"<")[0].decode() if b"Result>" in reply else "?"
        wire.call("closeConnection", [("ticket", ticket)])
    finally:
        wire.close()
    with db.engine.connect() as conn:
        from sqlalchemy import text

        state, stored = conn.execute(text("SELECT state, length(response_xml) FROM jobs WHERE connection_id = :c "
                                          "ORDER BY id DESC LIMIT 1"), {"c": cid}).one()
    return {"body": body, "wall_s": wall, "server_cpu_s": cpu, "payload_bytes": payload_bytes,
            "envelope_bytes": len(body), "rss_before_bytes": rss0, "peak_rss_bytes": hwm1,
            "peak_growth_bytes": hwm1 - (rss0 if reset else hwm0), "peak_reset_via_clear_refs": reset,
            "answer": percent, "job_state": state, "stored_compressed_bytes": stored,
            "ok": state == "done" and percent == "100"}


def _floor(opts: Options, body: bytes) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(prefix="qwc-bench-envelope-", suffix=".xml") as f:
        f.write(body)
        f.flush()
        done = subprocess.run([sys.executable, "-m", "bench.large_floor", f.name], capture_output=True, text=True,
                              timeout=600, env=server_env("sqlite://"), cwd=str(Path(__file__).parent.parent))
    if done.returncode != 0:
        raise RuntimeError(f"large_floor failed: {done.stderr[-1000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
