"""A load driver that talks to a server the way the Web Connector does.

Each connector is a separate process (so the GIL does not cap the client
side) holding one keep-alive HTTP connection per session, a new one for each
session as QBWC opens per update. Envelopes come from the simulator's
``request_envelope`` (QBWC's exact one-line form) and the headers are .NET's:
``Content-Type: text/xml; charset=utf-8``, the quoted ``SOAPAction``,
``Expect: 100-continue``, and ``Connection: Keep-Alive`` on the first request
of a connection. (Unlike .NET, the body is not held back waiting for the
``100 Continue``: that wait measures the network, not the server.)

Two modes:

* ``idle``: serverVersion, clientVersion, authenticate (must answer ``none``),
  closeConnection; each connector cycles through its share of the users;
* ``work``: one session per connector, sendRequestXML/receiveResponseXML pairs
  until the server says 100 (or ``max_pairs``, for the floor), answering each
  request with a one-customer CustomerQueryRs carrying the right requestID.
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from lxml import etree

from qwc_service.simulator.soap import QBWC_NS, request_envelope, soap_action

USER_AGENT = "Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)"
QBWC_VERSION = "2.3.0.215"
COMPANY_FILE = r"C:\Users\Public\Documents\Intuit\QuickBooks\Company Files\bench.qbw"
REQUEST_ID = re.compile(r"<(\w+)Rq\b[^>]*?requestID=\"([^\"]*)\"")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


class ProtocolError(Exception):
    pass


def customer_query_rs(rq_name: str, request_id: str) -> str:
    """A one-customer answer, as QuickBooks gives to ``<CustomerQueryRq><MaxReturned>1``."""
    rs = rq_name + "Rs"
    return (
        f'<?xml version="1.0" ?><QBXML><QBXMLMsgsRs><{rs} requestID="{request_id}" statusCode="0" '
        'statusSeverity="Info" statusMessage="Status OK"><CustomerRet><ListID>80000001-1400000000</ListID>'
        '<TimeCreated>2024-01-02T10:00:00-05:00</TimeCreated><TimeModified>2024-01-02T10:00:00-05:00</TimeModified>'
        f'<EditSequence>1400000000</EditSequence><Name>Customer {request_id}</Name><FullName>Customer {request_id}'
        '</FullName><IsActive>true</IsActive><Sublevel>0</Sublevel><Balance>0.00</Balance>'
        f'<TotalBalance>0.00</TotalBalance><JobStatus>None</JobStatus></CustomerRet></{rs}></QBXMLMsgsRs></QBXML>')


class Wire:
    """One keep-alive connection to the server, used as .NET's HttpWebRequest uses it."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        rest = url.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        self.host, self.port, self.path = host, int(port or 80), "/" + path
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.calls = 0

    def open(self) -> None:
        self.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, operation: str, body: bytes) -> bytes:
        conn = self.conn
        assert conn is not None
        fresh = conn.sock is None
        conn.putrequest("POST", self.path, skip_accept_encoding=True)
        conn.putheader("User-Agent", USER_AGENT)
        conn.putheader("Content-Type", "text/xml; charset=utf-8")
        conn.putheader("SOAPAction", soap_action(operation))
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Expect", "100-continue")
        if fresh:
            conn.putheader("Connection", "Keep-Alive")
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        self.calls += 1
        if response.status != 200:
            raise ProtocolError(f"{operation}: HTTP {response.status}: {data[:300]!r}")
        if response.will_close:
            self.open()
        return data

    def call(self, operation: str, params: Sequence[tuple[str, str]]) -> etree._Element:
        data = self.post(operation, request_envelope(operation, params))
        root = etree.fromstring(data, _PARSER)
        result = root.find(f".//{{{QBWC_NS}}}{operation}Result")
        if result is None:
            raise ProtocolError(f"{operation}: no {operation}Result in {data[:300]!r}")
        return result


def _strings(result: etree._Element) -> list[str]:
    return [s.text or "" for s in result.iterfind(f"{{{QBWC_NS}}}string")]


def _begin(wire: Wire, user: str, password: str) -> tuple[str, str]:
    wire.open()
    wire.call("serverVersion", [])
    version = wire.call("clientVersion", [("strVersion", QBWC_VERSION)]).text or ""
    if version.startswith(("E:", "O:")):
        raise ProtocolError(f"clientVersion refused: {version}")
    answer = _strings(wire.call("authenticate", [("strUserName", user), ("strPassword", password)]))
    if len(answer) < 2:
        raise ProtocolError(f"authenticate returned {answer}")
    return answer[0], answer[1]


def idle_session(wire: Wire, user: str, password: str) -> None:
    try:
        ticket, status = _begin(wire, user, password)
        if status.lower() != "none":
            raise ProtocolError(f"idle: authenticate answered {status!r} for {user}, expected 'none'")
        wire.call("closeConnection", [("ticket", ticket)])
    finally:
        wire.close()


def work_session(wire: Wire, user: str, password: str, hcp: str, max_pairs: int, pair_latencies: list[float],
                 pair_cap: int = 1_000_000) -> int:
    try:
        ticket, status = _begin(wire, user, password)
        if status.lower() in ("none", "nvu", "busy"):
            raise ProtocolError(f"work: authenticate answered {status!r} for {user}")
        pairs, first = 0, True
        while True:
            started = time.perf_counter()
            request = wire.call("sendRequestXML", [
                ("ticket", ticket), ("strHCPResponse", hcp if first else ""), ("strCompanyFileName", COMPANY_FILE),
                ("qbXMLCountry", "US"), ("qbXMLMajorVers", "13"), ("qbXMLMinorVers", "0")]).text or ""
            first = False
            if not request:
                error = wire.call("getLastError", [("ticket", ticket)]).text
                raise ProtocolError(f"sendRequestXML returned '' after {pairs} pairs; getLastError={error!r}")
            match = REQUEST_ID.search(request)
            if match is None:
                raise ProtocolError(f"no requestID in {request[:200]!r}")
            percent = int((wire.call("receiveResponseXML", [
                ("ticket", ticket), ("response", customer_query_rs(match.group(1), match.group(2))),
                ("hresult", ""), ("message", "")]).text or "0").strip())
            pair_latencies.append(time.perf_counter() - started)
            pairs += 1
            if percent < 0:
                error = wire.call("getLastError", [("ticket", ticket)]).text
                raise ProtocolError(f"receiveResponseXML returned {percent}; getLastError={error!r}")
            if percent >= 100 or (max_pairs and pairs >= max_pairs) or pairs >= pair_cap:
                break
        wire.call("closeConnection", [("ticket", ticket)])
        return pairs
    finally:
        wire.close()


# -- connectors in processes ---------------------------------------------------


@dataclass
class Run:
    """What a set of connectors did between the start signal and the last one finishing."""

    elapsed: float
    sessions: int
    pairs: int
    errors: list[str]
    session_latencies: list[float] = field(default_factory=list)
    pair_latencies: list[float] = field(default_factory=list)
    server_cpu: float | None = None
    client_cpu: float = 0.0
    calls: int = 0

    @property
    def sessions_per_s(self) -> float:
        return self.sessions / self.elapsed if self.elapsed else 0.0

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.elapsed if self.elapsed else 0.0


def _idle_worker(users: list[str], password: str, url: str, duration: float, max_sessions: int, start: Any,
                 out: Any) -> None:
    wire = Wire(url)
    latencies: list[float] = []
    errors: list[str] = []
    sessions = 0
    start.wait()
    deadline = time.monotonic() + duration
    index = 0
    while time.monotonic() < deadline and sessions < max_sessions:
        user = users[index % len(users)]
        index += 1
        began = time.perf_counter()
        try:
            idle_session(wire, user, password)
            sessions += 1
            latencies.append(time.perf_counter() - began)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")
            if len(errors) >= 20:
                break
    t = _cpu()
    out.put({"sessions": sessions, "pairs": 0, "lat": latencies, "pair_lat": [], "errors": errors,
             "end": time.time(), "calls": wire.calls, "cpu": t})


def _work_worker(user: str, password: str, url: str, hcp: str, max_pairs: int, sessions: int, start: Any,
                 out: Any) -> None:
    wire = Wire(url)
    pair_latencies: list[float] = []
    latencies: list[float] = []
    errors: list[str] = []
    pairs = done = 0
    start.wait()
    for _ in range(sessions):
        began = time.perf_counter()
        try:
            pairs += work_session(wire, user, password, hcp, max_pairs, pair_latencies)
            done += 1
            latencies.append(time.perf_counter() - began)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")
            break
    out.put({"sessions": done, "pairs": pairs, "lat": latencies, "pair_lat": pair_latencies, "errors": errors,
             "end": time.time(), "calls": wire.calls, "cpu": _cpu()})


def _cpu() -> float:
    import os

    t = os.times()
    return t.user + t.system


def _run(targets: list[tuple[Callable[..., None], tuple[Any, ...]]], server_cpu: Callable[[], float] | None,
         timeout: float) -> Run:
    ctx = mp.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=fn, args=(*args, start, out), daemon=True) for fn, args in targets]
    for proc in procs:
        proc.start()
    try:
        time.sleep(0.3)
        cpu0 = server_cpu() if server_cpu else None
        t0 = time.time()
        start.set()
        outs = [out.get(timeout=timeout) for _ in procs]
        t1 = max(o["end"] for o in outs)
        cpu1 = server_cpu() if server_cpu else None
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    return Run(
        elapsed=t1 - t0,
        sessions=sum(o["sessions"] for o in outs),
        pairs=sum(o["pairs"] for o in outs),
        errors=[e for o in outs for e in o["errors"]],
        session_latencies=[x for o in outs for x in o["lat"]],
        pair_latencies=[x for o in outs for x in o["pair_lat"]],
        server_cpu=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
        client_cpu=sum(o["cpu"] for o in outs),
        calls=sum(o["calls"] for o in outs),
    )


def run_idle(url: str, users: list[str], password: str, *, clients: int = 4, duration: float = 10.0,
             max_sessions_per_client: int = 10**9, server_cpu: Callable[[], float] | None = None) -> Run:
    """``clients`` connectors polling; connector i cycles through users[i::clients]."""
    targets = [(_idle_worker, (users[i::clients] or users, password, url, duration, max_sessions_per_client))
               for i in range(clients)]
    return _run(targets, server_cpu, timeout=duration + 600)


def run_work(url: str, users: list[str], password: str, *, hcp: str | dict[str, str], max_pairs: int = 0,
             sessions: int = 1, server_cpu: Callable[[], float] | None = None, timeout: float = 1800) -> Run:
    """One connector per user, each holding ``sessions`` work sessions one after the other."""
    targets = [(_work_worker, (user, password, url, hcp[user] if isinstance(hcp, dict) else hcp, max_pairs,
                               sessions)) for user in users]
    return _run(targets, server_cpu, timeout=timeout)


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[k]
