#!/bin/sh
# qwc-service container entrypoint: wait for the database, migrate it once,
# then exec the server (or whatever command was given) in this process.
#
# All configuration is the environment (QWC_*, see README.md and
# docs/deployment.md). Secrets may be files: QWC_<NAME>_FILE, e.g.
# QWC_DATABASE_URL_FILE=/run/secrets/database_url. qwc-service reads those
# files itself, so a secret never enters this script's environment or the
# environment of the server process.
#
#   QWC_MIGRATE_ON_START  1 (default): wait for the database, then run
#                         `qwc-service db upgrade`; 0: do neither.
#   QWC_DB_WAIT_SECONDS   how long to wait for the database (default 60; 0 = try once).
#
# Arguments: the command to exec; none means gunicorn with
# qwc_service.gunicorn_conf, and arguments starting with "-" are added to
# that gunicorn command (e.g. `--workers 3`).
#
# Exit status before the exec: 1 the database stayed unreachable or a
# migration failed, 2 a configuration error, 143 stopped (SIGTERM/SIGINT)
# while waiting for the database (at once) or migrating (once it finished).
set -eu

log() {
    printf 'qwc-service entrypoint: %s\n' "$*" >&2
}

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- gunicorn --config python:qwc_service.gunicorn_conf "$@"
fi

# Until the exec below this shell may be PID 1, which the kernel shields from
# SIGTERM unless it handles it: stop promptly when the container is stopped.
child=""
trap 'log "stopped before the server started"; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null; exit 143' TERM INT

# Run a command in the background and wait for it, so that the trap above
# runs as soon as a signal arrives rather than when the command ends.
run() {
    "$@" &
    child=$!
    wait "$child"
}

# Connect with the server's own settings until the database answers or the
# time is up. Configuration errors (a bad URL, an unreadable _FILE) fail at
# once; connection errors (the database is still starting, its DNS name does
# not resolve yet, it refuses us) are retried.
WAIT_FOR_DATABASE='
import os
import sys
import time


def say(message):
    print(f"qwc-service entrypoint: {message}", file=sys.stderr, flush=True)


def first_line(exc):
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0] if lines else exc.__class__.__name__}"


raw_wait = os.environ.get("QWC_DB_WAIT_SECONDS", "").strip() or "60"
try:
    wait = int(raw_wait)
    if wait < 0:
        raise ValueError
except ValueError:
    say(f"configuration error: QWC_DB_WAIT_SECONDS must be a whole number of seconds, got {raw_wait!r}")
    sys.exit(2)

from sqlalchemy import text
from sqlalchemy.engine import make_url

from qwc_service import database
from qwc_service.config import ConfigError, Settings

try:
    url = Settings.from_env().database_url
    options = {}
    if make_url(database.normalize_url(url)).get_backend_name() == "postgresql":
        options["connect_args"] = {"connect_timeout": 5}
    engine = database.make_engine(url, **options)
except (ConfigError, database.DatabaseError) as exc:
    say(f"configuration error: {exc}")
    sys.exit(2)
except Exception as exc:  # e.g. SQLAlchemy refusing a malformed URL
    say(f"configuration error: QWC_DATABASE_URL: {first_line(exc)}")
    sys.exit(2)

where = database.describe(url)
deadline = time.monotonic() + wait
attempts = 0
while True:
    attempts += 1
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        break
    except Exception as exc:
        reason = first_line(exc)
        if time.monotonic() >= deadline:
            say(f"the database {where} is unreachable after {wait} s ({attempts} attempts): {reason}")
            sys.exit(1)
        if attempts == 1:
            say(f"waiting up to {wait} s for the database {where}: {reason}")
        elif attempts % 10 == 0:
            say(f"still waiting for the database: {reason}")
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
engine.dispose()
say(f"the database {where} is reachable")
'

case "${QWC_MIGRATE_ON_START:-1}" in
    1 | true | yes | on)
        status=0
        run python -c "$WAIT_FOR_DATABASE" || status=$?
        child=""
        [ "$status" -eq 0 ] || exit "$status"

        # A migration is not interrupted (SQLite's cannot be rolled back as a
        # whole): a stop request waits for it to finish, then stops.
        stop_requested=""
        trap 'stop_requested=1' TERM INT
        qwc-service db upgrade &
        child=$!
        while :; do
            status=0
            wait "$child" || status=$?
            # wait returns early (status > 128) when a trapped signal arrives.
            if [ -n "$stop_requested" ] && kill -0 "$child" 2>/dev/null; then
                continue
            fi
            break
        done
        child=""
        if [ "$status" -ne 0 ]; then
            log "migrations failed (exit status $status); not starting"
            exit 1
        fi
        if [ -n "$stop_requested" ]; then
            log "stopped after the migrations finished; not starting"
            exit 143
        fi
        ;;
    0 | false | no | off)
        log "QWC_MIGRATE_ON_START=${QWC_MIGRATE_ON_START}: not waiting for the database, not migrating"
        ;;
    *)
        log "configuration error: QWC_MIGRATE_ON_START must be 1 or 0, got '${QWC_MIGRATE_ON_START}'"
        exit 2
        ;;
esac

trap - TERM INT
log "starting $1"
exec "$@"
