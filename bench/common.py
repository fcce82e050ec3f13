"""What every benchmark case shares: results, server processes, databases, machine facts.

Servers are started as separate processes bound to 127.0.0.1 and recorded in
``PROCESSES``; ``stop_all`` (called from a ``finally`` in ``bench.run``, and
at exit) stops every one of them, so a Ctrl-C or an exception never leaves a
server behind.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PASSWORD = "bench-password"


# -- results -----------------------------------------------------------------


@dataclass
class Result:
    """One row of the table: a figure, the floor it is compared with, and the target."""

    case: str
    name: str
    figure: float | None
    unit: str
    floor: float | None = None
    #: figure relative to the floor, oriented so that 1.0 is "as fast as the floor"
    #: and larger is worse (a cost ratio): floor throughput / our throughput, our
    #: time / floor time, our CPU / floor CPU.
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost_ratio(ours: float | None, floor: float | None, *, higher_is_better: bool) -> float | None:
    if not ours or not floor:
        return None
    return round(floor / ours if higher_is_better else ours / floor, 2)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def print_table(results: Sequence[Result], out: Any = None) -> None:
    out = out or sys.stdout
    headers = ("case", "measure", "figure", "floor", "ratio", "target", "")
    rows = []
    for r in results:
        verdict = {True: "PASS", False: "FAIL", None: ""}[r.passed]
        rows.append((r.case, r.name, fmt(r.figure, r.unit), fmt(r.floor, r.unit if r.floor is not None else ""),
                     f"{r.ratio:.2f}x" if r.ratio is not None else "-", r.target, verdict))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line, file=out)
    print("-" * len(line), file=out)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)), file=out)
    notes = [(r.case, r.name, r.note) for r in results if r.note]
    if notes:
        print(file=out)
        for case, name, note in notes:
            print(f"  [{case}] {name}: {note}", file=out)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    import lxml.etree
    import sqlalchemy

    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "lxml": ".".join(map(str, lxml.etree.LXML_VERSION)),
        "sqlalchemy": sqlalchemy.__version__,
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and whether product files had uncommitted changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()
               if line[3:].startswith(("qwc_service/", "migrations/"))]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_product_changes": changed}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- processes ---------------------------------------------------------------

PROCESSES: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A server process on 127.0.0.1 (ours or the floor)."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/qbwc"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def vm_hwm_bytes(self) -> int:
        return proc_status_bytes(self.pid, "VmHWM")

    def vm_rss_bytes(self) -> int:
        return proc_status_bytes(self.pid, "VmRSS")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc)


def start_process(name: str, argv: list[str], env: dict[str, str], ready_url: str, log_path: Path,
                  timeout: float = 60.0) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(log_path.parent),
                            start_new_session=True)
    log.close()
    PROCESSES.append(proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
            raise RuntimeError(f"{name} did not start (exit {proc.poll()}):\n{tail}")
        time.sleep(0.1)


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWC_")}
    env.update(QWC_DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def start_qwc_server(name: str, database_url: str, *, threads: int = 8, **extra_env: str) -> Server:
    """``qwc-service serve`` exactly as an operator runs it (production argon2, INFO logs)."""
    port = free_port()
    log_path = RESULTS / "logs" / f"{name}-{port}.log"
    argv = [sys.executable, "-m", "qwc_service", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--threads", str(threads)]
    proc = start_process(name, argv, server_env(database_url, **extra_env), f"http://127.0.0.1:{port}/healthz",
                         log_path)
    return Server(name, proc, port, log_path)


def start_floor_server(name: str = "floor", *, threads: int = 8) -> Server:
    """The bare lxml + WSGI app of ``bench.floor`` under the same waitress settings."""
    port = free_port()
    log_path = RESULTS / "logs" / f"{name}-{port}.log"
    argv = [sys.executable, "-m", "bench.floor", "--port", str(port), "--threads", str(threads)]
    env = server_env("sqlite://")
    proc = start_process(name, argv, env, f"http://127.0.0.1:{port}/healthz", log_path)
    return Server(name, proc, port, log_path)


def start_floor_db_server(name: str, database_url: str, *, threads: int = 8) -> Server:
    """``bench.floor_db``: the floor app doing the service's durable writes with sqlite3, no framework."""
    port = free_port()
    log_path = RESULTS / "logs" / f"{name}-{port}.log"
    argv = [sys.executable, "-m", "bench.floor_db", "--port", str(port), "--threads", str(threads), "--db",
            database_url]
    proc = start_process(name, argv, server_env(database_url), f"http://127.0.0.1:{port}/healthz", log_path)
    return Server(name, proc, port, log_path)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=timeout if sig != signal.SIGKILL else 30)
                break
            except subprocess.TimeoutExpired:
                continue
    if proc in PROCESSES:
        PROCESSES.remove(proc)


def stop_all() -> None:
    for proc in list(PROCESSES):
        try:
            stop_process(proc, timeout=5)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass


atexit.register(stop_all)


def _proc_table() -> dict[int, tuple[int, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return table


def process_cpu_seconds(*roots: int) -> float:
    """utime+stime(+children) of the process trees under ``roots``, from /proc/<pid>/stat."""
    table = _proc_table()
    keep: set[int] = set()
    frontier = [r for r in roots if r in table]
    while frontier:
        pid = frontier.pop()
        if pid in keep:
            continue
        keep.add(pid)
        frontier.extend(child for child, (parent, _) in table.items() if parent == pid)
    return sum(table[p][1] for p in keep) / CLK_TCK


def postgres_cpu_seconds() -> float | None:
    """CPU of the local PostgreSQL server (postmaster tree), or None if it is not visible from here."""
    table = _proc_table()
    names = {}
    for pid in table:
        try:
            with open(f"/proc/{pid}/comm") as f:
                names[pid] = f.read().strip()
        except OSError:
            continue
    roots = [pid for pid, name in names.items()
             if name in ("postgres", "postmaster") and names.get(table[pid][0]) not in ("postgres", "postmaster")]
    return process_cpu_seconds(*roots) if roots else None


def proc_status_bytes(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# -- profiling (optional) -----------------------------------------------------


def find_py_spy() -> str | None:
    import shutil

    candidate = Path(sys.executable).with_name("py-spy")
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


class Profiler:
    """``py-spy record --pid`` on a running server for the measured window, if asked and available."""

    def __init__(self, enabled: bool, label: str, pids: Iterable[int]) -> None:
        self.enabled = enabled and find_py_spy() is not None
        self.label = label
        self.pids = list(pids)
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.outputs: list[str] = []

    def __enter__(self) -> "Profiler":
        if not self.enabled:
            return self
        py_spy = find_py_spy()
        assert py_spy is not None
        for pid in self.pids:
            out = RESULTS / "profiles" / f"{self.label}-{pid}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                                     "--nonblocking", "--gil", "-o", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            PROCESSES.append(proc)
            self.procs.append((proc, out))
        time.sleep(1.0)  # py-spy needs a moment to attach
        return self

    def __exit__(self, *exc: object) -> None:
        for proc, out in self.procs:
            stop_process(proc, timeout=30)
            if out.exists():
                self.outputs.append(str(out.relative_to(REPO)))


def summarize_profile(path: Path, top: int = 25, include_idle: bool = False) -> list[tuple[str, float, float]]:
    """(function, self %, inclusive %) from py-spy's collapsed stacks, busiest first."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = stack.split(";")
        if not include_idle and frames and any(f.startswith(("select (", "wait (", "poll (")) for f in frames[-1:]):
            continue
        total += count
        seen = set()
        for frame in frames:
            if frame not in seen:
                incl_counts[frame] = incl_counts.get(frame, 0) + count
                seen.add(frame)
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
    if not total:
        return []
    ranked = sorted(incl_counts, key=lambda f: self_counts.get(f, 0), reverse=True)[:top]
    return [(f, 100 * self_counts.get(f, 0) / total, 100 * incl_counts[f] / total) for f in ranked]
