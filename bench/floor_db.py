"""A second floor for case 1: the same durable work, without the framework.

The bare lxml + WSGI app of ``bench.floor``, but answering from the real
schema on SQLite through the ``sqlite3`` module: authenticate opens a session
row and writes the audit row, sendRequestXML claims the next job with the
service's claim query and writes its history row, receiveResponseXML reads
the statuses (``qbxml.read_statuses``), stores the compressed answer and the
statuses, writes history, counts the remaining work with the service's count
query, all in one ``BEGIN IMMEDIATE`` transaction per call, as the service
does. No ORM, no Spyne, no metrics or logging.

So ``ours / floor_db`` is what the framework costs, and ``floor_db / floor``
what the durable writes (and the queries as written) cost.

    python -m bench.floor_db --port 8099 --db sqlite:////tmp/x.db
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import zlib
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from lxml import etree

from qwc_service import qbxml, queue

from .floor import QBWC_NS, SOAP_NS, _parser, envelope

CLAIMABLE = ("connection_id = ? AND state = 'queued' AND (not_before IS NULL OR not_before <= ?) AND NOT EXISTS "
             "(SELECT 1 FROM job_dependencies d JOIN jobs j2 ON j2.id = d.depends_on_id "
             "WHERE d.job_id = jobs.id AND j2.state != 'done') AND held_wall IS NULL")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


class DurableFloor:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON", "synchronous=FULL"):
            self.db.execute(f"PRAGMA {pragma}")
        self.lock = threading.Lock()  # one connection per process, as the service has
        self.secret = secrets.token_bytes(32)
        self.remembered: set[bytes] = set()

    def tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self.db)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return result

    def authenticate(self, user: str, password: str) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            now = _now()
            row = db.execute("SELECT id, password_hash FROM connections WHERE username = ?", (user,)).fetchone()
            if row is None:
                return ["", "nvu"]
            key = hmac.new(self.secret, f"{row[0]}\0{row[1]}\0{password}".encode(), hashlib.sha256).digest()
            if key not in self.remembered:
                from argon2 import PasswordHasher

                PasswordHasher().verify(row[1], password)
                self.remembered.add(key)
            ticket = secrets.token_urlsafe(24)
            work = db.execute(f"SELECT id FROM jobs WHERE {CLAIMABLE} LIMIT 1", (row[0], now)).fetchone()
            result = "ok" if work else "none"
            db.execute("INSERT INTO auth_events (at, connection_id, client_address, result, detail) "
                       "VALUES (?, ?, '127.0.0.1', ?, '')", (now, row[0], result))
            if work is None:
                return [ticket, "none"]
            db.execute("INSERT INTO qbwc_sessions (ticket_hash, connection_id, state, created_at, last_seen_at, "
                       "client_address, last_error, company_file_name, qbxml_country, connection_error_hresult, "
                       "connection_error_message, jobs_done, jobs_failed) VALUES (?, ?, 'open', ?, ?, '127.0.0.1', "
                       "'', '', '', '', '', 0, 0)", (_hash(ticket), row[0], now, now))
            return [ticket, ""]
        return self.tx(run)  # type: ignore[no-any-return]

    def send_request(self, ticket: str) -> str:
        def run(db: sqlite3.Connection) -> str:
            now = _now()
            session = db.execute("SELECT id, connection_id FROM qbwc_sessions WHERE ticket_hash = ? AND state = 'open'",
                                 (_hash(ticket),)).fetchone()
            if session is None:
                return ""
            db.execute("UPDATE qbwc_sessions SET last_seen_at = ? WHERE id = ?", (now, session[0]))
            job = db.execute(f"SELECT id, request_xml FROM jobs WHERE {CLAIMABLE} ORDER BY priority DESC, id LIMIT 1",
                             (session[1], now)).fetchone()
            if job is None:
                return ""
            db.execute("UPDATE jobs SET state = 'sent', session_id = ?, sent_at = ?, updated_at = ? WHERE id = ?",
                       (session[0], now, now, job[0]))
            db.execute("INSERT INTO job_events (job_id, at, from_state, to_state, reason) VALUES (?, ?, 'queued', "
                       "'sent', ?)", (job[0], now, f"sent in session {session[0]}"))
            return qbxml.render_request(job[1], "13.0", job[0])
        return self.tx(run)  # type: ignore[no-any-return]

    def receive_response(self, ticket: str, response: str) -> int:
        def run(db: sqlite3.Connection) -> int:
            now = _now()
            session = db.execute("SELECT id, connection_id FROM qbwc_sessions WHERE ticket_hash = ? AND state = 'open'",
                                 (_hash(ticket),)).fetchone()
            if session is None:
                return -1
            db.execute("UPDATE qbwc_sessions SET last_seen_at = ? WHERE id = ?", (now, session[0]))
            job = db.execute("SELECT id FROM jobs WHERE session_id = ? AND state = 'sent' LIMIT 1",
                             (session[0],)).fetchone()
            if job is None:
                return -1
            statuses = qbxml.read_statuses(response)
            last = statuses[-1]
            db.execute("UPDATE jobs SET state = 'done', response_xml = ?, statuses = ?, status_code = ?, "
                       "status_severity = ?, status_message = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                       (zlib.compress(response.encode(), 1),
                        json.dumps([{"request_type": s.request_type, "request_id": s.request_id, "code": s.code,
                                     "severity": s.severity, "message": s.message} for s in statuses]),
                        last.code, last.severity, last.message, now, now, job[0]))
            db.execute("INSERT INTO job_events (job_id, at, from_state, to_state, reason) VALUES (?, ?, 'sent', "
                       "'done', 'answered')", (job[0], now))
            db.execute("UPDATE qbwc_sessions SET jobs_done = jobs_done + 1 WHERE id = ?", (session[0],))
            remaining = db.execute(f"SELECT count(*) FROM (SELECT id FROM jobs WHERE {CLAIMABLE} LIMIT ?)",
                                   (session[1], now, queue.WORK_COUNT_HORIZON)).fetchone()[0]
            return 100 if remaining == 0 else 50
        return self.tx(run)  # type: ignore[no-any-return]

    def close(self, ticket: str) -> str:
        def run(db: sqlite3.Connection) -> str:
            db.execute("UPDATE qbwc_sessions SET state = 'closed', closed_at = ? WHERE ticket_hash = ?",
                       (_now(), _hash(ticket)))
            return "OK"
        return self.tx(run)  # type: ignore[no-any-return]

    def answer(self, operation: str, params: dict[str, str]) -> str | list[str]:
        if operation == "serverVersion":
            return "floor-db 1.0"
        if operation == "clientVersion":
            return ""
        if operation == "authenticate":
            return self.authenticate(params.get("strUserName", ""), params.get("strPassword", ""))
        if operation == "sendRequestXML":
            return self.send_request(params.get("ticket", ""))
        if operation == "receiveResponseXML":
            return str(self.receive_response(params.get("ticket", ""), params.get("response", "")))
        if operation == "closeConnection":
            return self.close(params.get("ticket", ""))
        if operation == "getLastError":
            return "No error."
        return ""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
            return [b"ok\n"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        call = etree.fromstring(body, _parser()).find(f"{{{SOAP_NS}}}Body")[0]  # type: ignore[index]
        operation = etree.QName(call).localname
        params = {etree.QName(child).localname: child.text or "" for child in call}
        reply = envelope(operation, self.answer(operation, params))
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(reply)))])
        return [reply]


assert QBWC_NS  # re-exported names used above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--db", required=True, help="sqlite:///path of a migrated qwc-service database")
    args = parser.parse_args()
    if not args.db.startswith("sqlite:///"):
        raise SystemExit("floor_db supports SQLite only")
    from waitress.server import create_server

    server = create_server(DurableFloor(args.db[len("sqlite:///"):]), host="127.0.0.1", port=args.port,
                           threads=args.threads, max_request_body_size=384 * 1024 * 1024, channel_timeout=600,
                           ident="floor-db", clear_untrusted_proxy_headers=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
