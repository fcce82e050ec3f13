"""Run the benchmarks: ``python -m bench`` (full, ~20 min) or ``python -m bench --quick`` (~3 min).

Prints one table (figure, floor, ratio, target, pass/fail) and writes it as
JSON to ``bench/results/latest.json`` (and a time-stamped copy). The
benchmarks report figures; they are not tests and assert nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import common, dbsetup  # noqa: E402
from bench.common import RESULTS, Result  # noqa: E402
from bench.options import Options  # noqa: E402

CASES = ("pairs", "idle", "queue", "large", "enqueue", "scaleout")
#: Where the shared load generator lives on the machine the targets were measured on.
QBWC_LOAD_DEFAULT = Path("/work/shared/tools/qbwc_load.py")


def _case(name: str) -> Callable[[Options], list[Result]]:
    from bench import case_enqueue, case_idle, case_large, case_pairs, case_queue, case_scaleout

    return {"pairs": case_pairs.run, "idle": case_idle.run, "queue": case_queue.run, "large": case_large.run,
            "enqueue": case_enqueue.run, "scaleout": case_scaleout.run}[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run (~3 min): smaller counts, 100k jobs, 10 MB")
    parser.add_argument("--only", default="", help=f"comma list of cases to run ({', '.join(CASES)})")
    parser.add_argument("--pg-url", default=os.environ.get("QWC_BENCH_PG_URL", dbsetup.DEFAULT_PG_URL),
                        help="PostgreSQL database the benchmark may wipe (default %(default)s; "
                             "create it with: createdb -h 127.0.0.1 -U postgres qwc_bench)")
    parser.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL cases")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy profiles of the servers (if py-spy is installed) into bench/results/profiles")
    parser.add_argument("--qbwc-load", default=os.environ.get("QWC_BENCH_QBWC_LOAD", str(QBWC_LOAD_DEFAULT)),
                        help="path of the external qbwc_load.py load generator, used for a cross-check if present")
    parser.add_argument("--json", default=str(RESULTS / "latest.json"), help="where to write the results")
    args = parser.parse_args(argv)

    cases = [c.strip() for c in args.only.split(",") if c.strip()] or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    opts = Options(quick=args.quick, pg_url=args.pg_url, profile=args.profile)
    qbwc_load = Path(args.qbwc_load)
    opts.qbwc_load = qbwc_load if qbwc_load.is_file() else None
    opts.pg_skip = "--no-pg given" if args.no_pg else (dbsetup.postgresql_available(args.pg_url) or "")
    if opts.pg_skip:
        opts.say(f"PostgreSQL cases skipped: {opts.pg_skip}")
    if args.profile and common.find_py_spy() is None:
        opts.say("--profile: py-spy is not installed (pip install py-spy); running without profiles")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    RESULTS.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.rmtree(RESULTS / "logs", ignore_errors=True)  # server logs of this run only
    started = time.time()
    payload = {
        "mode": "quick" if args.quick else "full",
        "command": "python -m bench" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else ""),
        "started_at": common.utcnow().isoformat(timespec="seconds"),
        "machine": common.machine(),
        "git": common.git_state(),
        "postgresql": "skipped: " + opts.pg_skip if opts.pg_skip else dbsetup.database.describe(args.pg_url),
        "qbwc_load": str(opts.qbwc_load) if opts.qbwc_load else None,
        "results": [],
    }
    results: list[Result] = []
    json_path = Path(args.json)
    interrupted = False
    try:
        for name in cases:
            case_started = time.time()
            load_before = [round(x, 2) for x in os.getloadavg()]
            try:
                results.extend(_case(name)(opts))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
                opts.say(f"case {name} failed: {exc}")
                traceback.print_exc()
                results.append(Result(name, "error", None, "", passed=False, note=f"{type(exc).__name__}: {exc}"[:500]))
            finally:
                common.stop_all()
            opts.say(f"case {name} took {time.time() - case_started:.0f} s")
            payload.setdefault("cases", []).append({  # type: ignore[union-attr]
                "case": name, "seconds": round(time.time() - case_started, 1),
                "loadavg_before": load_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()]})
            payload["results"] = [r.to_dict() for r in results]
            common.write_json(json_path, payload)
    except KeyboardInterrupt:
        interrupted = True
        opts.say("interrupted; stopping servers")
    finally:
        common.stop_all()
    payload["elapsed_s"] = round(time.time() - started, 1)
    payload["interrupted"] = interrupted
    payload["results"] = [r.to_dict() for r in results]
    payload["log"] = opts.log
    common.write_json(json_path, payload)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    common.write_json(RESULTS / f"run-{stamp}-{payload['mode']}.json", payload)
    m = payload["machine"]
    print()
    print(f"qwc-service benchmarks ({payload['mode']}) on {m['cores']} cores, {m['cpu']}, Python {m['python']}, "
          f"load average at start {m['loadavg_at_start'][0]}; {payload['elapsed_s']:.0f} s")
    common.print_table(results)
    print(f"\nJSON: {json_path}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
