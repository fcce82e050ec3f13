"""Where a pair's CPU goes: the layers measured one at a time, in-process, on one thread.

No sockets and no threads, so the figures are CPU time per pair
(``time.process_time``) and barely move on a noisy machine:

* ``floor``: ``bench.floor.app`` called as WSGI (lxml parse + lxml answer);
* ``soap``: the service's WSGI application (routing, limits, metrics, Spyne)
  over a conversation that answers without touching the database;
* ``core``: ``Conversation.send_request_xml`` + ``receive_response_xml``
  called directly on SQLite (no SOAP), with a short queue and with a long one;
* ``stack``: the service's WSGI application over the real conversation.

The difference between ``stack`` and ``floor`` is what the HTTP server does
not explain; ``soap`` + ``core`` ≈ ``stack``.
"""

from __future__ import annotations

import io
import logging
import re
import time
from typing import Any, Callable

from qwc_service import database
from qwc_service.config import Settings
from qwc_service.conversation import Conversation
from qwc_service.simulator import FakeQuickBooks, QuickBooksProfile
from qwc_service.simulator.soap import request_envelope, soap_action
from qwc_service.wsgi import QwcApplication

from . import dbsetup, driver, floor
from .common import PASSWORD

REQUEST_ID = re.compile(rb"(?:<|&lt;)(\w+)Rq\b[^>]*?requestID=\"([^\"]*)\"")
REQUEST_ID_TEXT = re.compile(r"<(\w+)Rq\b[^>]*?requestID=\"([^\"]*)\"")
TICKET = re.compile(rb"<(?:\w+:)?string>([^<]*)</(?:\w+:)?string>")


def _environ(operation: str, body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/qbwc", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "CONTENT_TYPE": "text/xml; charset=utf-8", "CONTENT_LENGTH": str(len(body)),
        "HTTP_SOAPACTION": soap_action(operation), "HTTP_HOST": "127.0.0.1", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0),
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def _call(app: Callable[..., Any], operation: str, params: list[tuple[str, str]]) -> bytes:
    status: list[str] = []

    def start_response(code: str, headers: list[tuple[str, str]], *exc: Any) -> None:
        status.append(code)

    result = app(_environ(operation, request_envelope(operation, params)), start_response)
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close:
            close()
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"{operation}: {status} {data[:300]!r}")
    return data


def _wsgi_pairs(app: Callable[..., Any], ticket: str, n: int, hcp: str = "") -> None:
    for i in range(n):
        data = _call(app, "sendRequestXML", [
            ("ticket", ticket), ("strHCPResponse", hcp if i == 0 else ""), ("strCompanyFileName", driver.COMPANY_FILE),
            ("qbXMLCountry", "US"), ("qbXMLMajorVers", "13"), ("qbXMLMinorVers", "0")])
        match = REQUEST_ID.search(data)
        if match is None:
            raise RuntimeError(f"no request in {data[:300]!r}")
        _call(app, "receiveResponseXML", [
            ("ticket", ticket),
            ("response", driver.customer_query_rs(match.group(1).decode(), match.group(2).decode())),
            ("hresult", ""), ("message", "")])


def _wsgi_polls(app: Callable[..., Any], users: list[str], n: int) -> None:
    for i in range(n):
        _call(app, "serverVersion", [])
        _call(app, "clientVersion", [("strVersion", driver.QBWC_VERSION)])
        data = _call(app, "authenticate", [("strUserName", users[i % len(users)]), ("strPassword", PASSWORD)])
        ticket = TICKET.findall(data)[0].decode()
        _call(app, "closeConnection", [("ticket", ticket)])


def measure_idle(n: int = 400, connections: int = 20) -> dict[str, float]:
    """CPU ms per idle poll (four calls) for the floor app, WSGI+Spyne alone, the core alone, and the stack."""
    logging.getLogger("qwc_service").setLevel(logging.WARNING)
    out: dict[str, float] = {}
    out["floor"] = _cpu_per_pair(lambda k: _wsgi_polls(floor.app, ["idle-user"], k), n)
    db = dbsetup.fresh_sqlite("layers-idle")
    try:
        settings = Settings(database_url=db.url)
        stub = _NoDatabaseConversation(database.make_sessionmaker(db.engine), settings)
        out["soap"] = _cpu_per_pair(lambda k: _wsgi_polls(QwcApplication(stub, settings), ["u"], k), n)
        users = [c[2] for c in dbsetup.add_connections(db, connections, prefix="layeridle")]
        conversation = Conversation(database.make_sessionmaker(db.engine), settings)
        for user in users:  # fill the credential cache (one argon2 check each)
            conversation.authenticate(user, PASSWORD, "127.0.0.1")

        def core(k: int) -> None:
            for i in range(k):
                conversation.server_version()
                conversation.client_version(driver.QBWC_VERSION)
                result = conversation.authenticate(users[i % len(users)], PASSWORD, "127.0.0.1")
                conversation.close_connection(result.ticket)

        out["core"] = _cpu_per_pair(core, n)
        out["stack"] = _cpu_per_pair(lambda k: _wsgi_polls(QwcApplication(conversation, settings), users, k), n)
    finally:
        db.dispose()
    logging.getLogger("qwc_service").setLevel(logging.NOTSET)
    return {k: round(v, 3) for k, v in out.items()}


def _cpu_per_pair(fn: Callable[[int], None], n: int, warm: int = 20) -> float:
    fn(warm)
    start = time.process_time()
    fn(n)
    return (time.process_time() - start) / n * 1e3


class _NoDatabaseConversation(Conversation):
    """Answers with fixed values: what Spyne and the WSGI layer cost on their own."""

    def authenticate(self, username: str, password: str, client_address: str = "") -> Any:
        from qwc_service.conversation import AuthResult

        return AuthResult("ticket-" + username, AuthResult.NONE)

    def close_connection(self, ticket: str) -> str:
        return "OK"

    def send_request_xml(self, ticket: str, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        return floor.FIXED_REQUEST

    def receive_response_xml(self, ticket: str, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        return 50


def measure(n: int = 400, long_queue: int = 2_500) -> dict[str, float]:
    """CPU ms per pair for each layer (see the module docstring)."""
    logging.getLogger("qwc_service").setLevel(logging.WARNING)  # as in-process callers see it; serve logs INFO
    out: dict[str, float] = {}
    out["floor"] = _cpu_per_pair(lambda k: _wsgi_pairs(floor.app, "t", k), n)

    scratch = dbsetup.fresh_sqlite("layers-soap")
    try:
        settings = Settings(database_url=scratch.url)
        stub = _NoDatabaseConversation(database.make_sessionmaker(scratch.engine), settings)
        out["soap"] = _cpu_per_pair(lambda k: _wsgi_pairs(QwcApplication(stub, settings), "t", k), n)
    finally:
        scratch.dispose()

    for label, queued in (("core_short_queue", n + 50), ("core_long_queue", long_queue)):
        db = dbsetup.fresh_sqlite("layers-core")
        try:
            (cid, _, user), = dbsetup.add_connections(db, 1, prefix="layer")
            dbsetup.fill_jobs(db, [cid], queued)
            conversation = Conversation(database.make_sessionmaker(db.engine), Settings(database_url=db.url))
            ticket = conversation.authenticate(user, PASSWORD, "127.0.0.1").ticket

            def core(k: int) -> None:
                for _ in range(k):
                    request = conversation.send_request_xml(ticket, "", driver.COMPANY_FILE, "US", 13, 0)
                    match = REQUEST_ID_TEXT.search(request)
                    assert match is not None, request
                    conversation.receive_response_xml(ticket, driver.customer_query_rs(match.group(1), match.group(2)))

            out[label] = _cpu_per_pair(core, min(n, queued - 40))
        finally:
            db.dispose()

    db = dbsetup.fresh_sqlite("layers-stack")
    try:
        (cid, _, user), = dbsetup.add_connections(db, 1, prefix="layer")
        owner, file_id = dbsetup.connection_guids(db, cid)
        hcp = FakeQuickBooks(QuickBooksProfile(owner_id=owner, file_id=file_id)).first_call_response()
        dbsetup.fill_jobs(db, [cid], n + 50)
        settings = Settings(database_url=db.url)
        conversation = Conversation(database.make_sessionmaker(db.engine), settings)
        app = QwcApplication(conversation, settings)
        data = _call(app, "authenticate", [("strUserName", user), ("strPassword", PASSWORD)])
        ticket = TICKET.findall(data)[0].decode()
        out["stack_short_queue"] = _cpu_per_pair(lambda k: _wsgi_pairs(app, ticket, k, hcp), n)
    finally:
        db.dispose()
    logging.getLogger("qwc_service").setLevel(logging.NOTSET)
    return {k: round(v, 3) for k, v in out.items()}


if __name__ == "__main__":
    print("pairs", measure())
    print("idle polls", measure_idle())
