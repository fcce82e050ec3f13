"""Queue N CustomerQueryRq jobs for each named sync user's connection, in bulk (for qbwc_load's --enqueue-cmd).

    python -m bench.refill --db sqlite:///… --jobs 250 user-a user-b
"""

from __future__ import annotations

import argparse

from sqlalchemy import select

from qwc_service import database
from qwc_service.models import Connection

from . import dbsetup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("users", nargs="+")
    args = parser.parse_args()
    engine = database.make_engine(args.db)
    db = dbsetup.BenchDatabase(args.db, engine, engine.dialect.name)
    with engine.connect() as conn:
        ids = list(conn.scalars(select(Connection.id).where(Connection.username.in_(args.users))))
    if len(ids) != len(set(args.users)):
        raise SystemExit(f"unknown users among {args.users}")
    dbsetup.fill_jobs(db, ids, args.jobs * len(ids))
    engine.dispose()


if __name__ == "__main__":
    main()
