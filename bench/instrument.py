"""Cross-checks with the shared ``qbwc_load.py`` load generator, when it is on this machine.

That tool is what the targets in the brief were measured with (the PHP DevKit,
qbwc-kit and a bare app); running it against our server and our floor in the
same sitting shows whether ``bench.driver`` agrees with it. It is called as an
external program and never copied here; on a machine without it these checks
are skipped and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from .common import PASSWORD, REPO, Server
from .options import Options


def _run(opts: Options, args: list[str], timeout: float) -> dict[str, Any]:
    if opts.qbwc_load is None:
        return {"skipped": "qbwc_load.py not found (pass --qbwc-load PATH)"}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    try:
        done = subprocess.run([sys.executable, str(opts.qbwc_load), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"error": f"qbwc_load.py did not finish within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"qbwc_load.py exited {done.returncode}: {done.stderr[-500:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return {k: result.get(k) for k in ("sessions", "sessions_per_s", "pairs", "pairs_per_s", "errors",
                                       "error_samples", "server_cpu_ms_per_session", "server_cpu_ms_per_pair",
                                       "session_ms_p50", "pair_ms_p50", "clients", "users") if k in result}


def idle(opts: Options, server: Server, *, users: list[str], duration: float) -> dict[str, Any]:
    return _run(opts, ["--url", server.url, "--mode", "idle", "--clients", str(len(users)), "--duration",
                       str(duration), "--hard-timeout", str(duration + 60), "--users", ",".join(users),
                       "--password", PASSWORD, "--server-pids", str(server.pid), "--label", "bench-check"],
                timeout=duration + 120)


def work(opts: Options, server: Server, *, users: list[str], pairs_per_session: int, rounds: int,
         refill: str | None) -> dict[str, Any]:
    args = ["--url", server.url, "--mode", "work", "--clients", str(len(users)), "--duration", "600",
            "--hard-timeout", "900", "--max-rounds", str(rounds), "--users", ",".join(users), "--password", PASSWORD,
            "--server-pids", str(server.pid), "--label", "bench-check"]
    if refill:
        args += ["--enqueue-cmd", refill, "--expect-pairs", str(pairs_per_session)]
    else:
        args += ["--max-pairs", str(pairs_per_session)]
    return _run(opts, args, timeout=960)
