"""Run options shared by the cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Options:
    quick: bool = False
    pg_url: str = ""
    #: Why PostgreSQL cases are skipped ("" when PostgreSQL is usable).
    pg_skip: str = ""
    profile: bool = False
    #: The external load generator, when present (see bench.instrument).
    qbwc_load: Path | None = None
    clients: int = 4
    threads: int = 8
    log: list[str] = field(default_factory=list)

    def say(self, message: str) -> None:
        import sys
        import time

        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        self.log.append(line)
        print(line, file=sys.stderr, flush=True)
