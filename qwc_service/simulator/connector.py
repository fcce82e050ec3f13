"""A fake QuickBooks Web Connector: one update session over real HTTP, as QBWC runs it.

:class:`FakeWebConnector` plays QBWC 2.3 against a server URL:

``serverVersion`` → ``clientVersion`` → ``authenticate`` → (open QuickBooks;
``connectionError`` loop if that fails) → ``sendRequestXML`` ⇄
``receiveResponseXML`` (with ``getLastError`` when the server returns "" or a
negative percentage) → ``closeConnection``.

It speaks HTTP the way .NET's ``SoapHttpClientProtocol`` does, because servers
break on exactly these details: ``POST`` with ``Content-Type: text/xml;
charset=utf-8``, the quoted ``SOAPAction``, ``Expect: 100-continue`` (the
body is sent once the server says ``100 Continue``, or after .NET's 350 ms
wait), and one keep-alive connection for the whole session.

Every call is recorded in a :class:`Call` (password redacted) and the session
ends in a :class:`SessionResult` with an :class:`Outcome` and the status text
QBWC would show. Where QBWC's behaviour is not documented, the choice made is
stated on the class or method that makes it.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from .documents import QbxmlSyntaxError, summarize_request
from .faults import CrashFault, DropFault, Faults
from .quickbooks import FakeQuickBooks, OpenError, ProcessResult, QuickBooksSession
from .soap import (
    Answer,
    SoapFault,
    SoapReplyError,
    read_answer,
    request_envelope,
    soap_action,
)

QBWC_VERSION = "2.3.0.215"
#: What .NET 4 writes as User-Agent for a SOAP client proxy.
USER_AGENT = "Mozilla/4.0 (compatible; MSIE 6.0; MS Web Services Client Protocol 4.0.30319.42000)"
REDACTED = "********"

#: What QBWC shows when a call fails (qbwc_codes.csv). ``{detail}`` is the
#: fault string, the HTTP status or the transport error.
_FAILURE_TEXT: Mapping[str, str] = {
    "clientVersion": "QBWC1036: Error countered during version check: {detail}.",
    "authenticate": "QBWC1012: Authentication failed due to error message: {detail}.",
    "sendRequestXML": "QBWC1041: SendRequestXML failed due to error message: {detail}.",
    "receiveResponseXML": "QBWC1042: ReceiveResponseXML failed due to error message: {detail}.",
    "getLastError": "QBWC1043: getLastError failed due to error message: {detail}.",
    "closeConnection": "QBWC1044: CloseConnection failed due to error message: {detail}.",
    "connectionError": "QBWC1045: ConnectionError failed due to error message: {detail}.",
}

#: Status texts after authenticate said there is nothing to do. "No data
#: exchange required" is QBWC's own wording; the other two paraphrase it.
_AUTH_STATUS_TEXT: Mapping[str, str] = {
    "none": "No data exchange required",
    "nvu": "Authentication failed: the web service did not accept the user name and password (nvu).",
    "busy": "The web service is busy (busy); QBWC will try again at the next scheduled update.",
}


class Outcome(StrEnum):
    """How an update session ended."""

    #: receiveResponseXML reached 100 and closeConnection answered.
    OK = "ok"
    #: authenticate said "nvu" (not a valid user).
    NVU = "nvu"
    #: authenticate said "none" (nothing to do; QuickBooks is not opened).
    NONE = "none"
    #: authenticate said "busy".
    BUSY = "busy"
    #: clientVersion refused this QBWC ("E:…", "O:<newer>", or "W:…" declined).
    VERSION_REFUSED = "version-refused"
    #: QuickBooks could not be opened; connectionError ended the session.
    CONNECTION_ERROR = "connection-error"
    #: The server reported an error through getLastError (negative percentage,
    #: or "" from sendRequestXML with something other than "NoOp").
    ERROR = "error"
    #: A call failed: SOAP fault, HTTP error, unreadable answer, network error.
    #: QBWC shows a QBWC10xx code and makes no further call.
    FAULT = "fault"
    #: The connector closed the socket after the sendRequestXML answer (DropFault).
    DROPPED = "dropped"
    #: The connector died after QuickBooks performed the request (CrashFault).
    CRASHED = "crashed"
    #: The simulator's own bounds stopped the session (NoOp or request limit).
    STOPPED = "stopped"


@dataclass(frozen=True, kw_only=True)
class Call:
    """One SOAP call and what came back."""

    operation: str
    #: Parameters in wire order; the password is replaced by ``********``.
    parameters: Mapping[str, str]
    #: The deserialized answer: ``str``, ``int`` (receiveResponseXML) or a
    #: tuple of strings (authenticate); ``None`` when the call failed.
    answer: Answer | None = None
    fault: SoapFault | None = None
    #: Transport or deserialization problem, when there was no usable answer.
    error: str | None = None
    http_status: int | None = None
    #: Seconds from sending the request to reading the whole answer.
    duration: float = 0.0
    #: Client port of the TCP connection used: equal across a keep-alive session.
    local_port: int | None = None

    @property
    def ok(self) -> bool:
        return self.fault is None and self.error is None


@dataclass(frozen=True, kw_only=True)
class Exchange:
    """A request document handed to QuickBooks and what ProcessRequest gave back."""

    #: 1-based number of the request document within the session.
    number: int
    request: str
    result: ProcessResult
    #: Index in the transcript of the sendRequestXML call that delivered it.
    call_index: int


@dataclass(frozen=True, kw_only=True)
class SessionResult:
    """The outcome of one update session, with the whole conversation."""

    outcome: Outcome
    #: The text QBWC would show in its status column. An error text (QBWC10xx,
    #: getLastError's answer, QuickBooks' open failure) takes precedence over
    #: closeConnection's answer, which is shown otherwise.
    final_status: str
    transcript: tuple[Call, ...]
    exchanges: tuple[Exchange, ...]
    ticket: str = ""
    #: closeConnection's answer, when it was called and answered.
    close_message: str | None = None

    @property
    def operations(self) -> list[str]:
        """The operation names in call order: the shape of the conversation."""
        return [call.operation for call in self.transcript]

    def calls(self, operation: str) -> list[Call]:
        """Every call of one operation, in order."""
        return [call for call in self.transcript if call.operation == operation]


class FakeWebConnector:
    """Runs QBWC update sessions against ``url`` with a fake QuickBooks behind it.

    ``faults`` is handed to QuickBooks at open time and consulted for
    :class:`~qwc_service.simulator.faults.DropFault` and
    :class:`~qwc_service.simulator.faults.CrashFault`. ``sleep`` is used for
    the NoOp wait only, so tests can record the wait instead of waiting.
    """

    def __init__(
        self,
        url: str,
        quickbooks: FakeQuickBooks | None = None,
        *,
        faults: Faults | None = None,
        username: str = "qbwc",
        password: str = "",
        qbwc_version: str = QBWC_VERSION,
        accept_version_warning: bool = True,
        noop_wait: float = 5.0,
        max_noops: int = 10,
        max_connection_retries: int = 2,
        max_requests: int = 10_000,
        timeout: float = 100.0,
        expect_continue_timeout: float = 0.35,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.quickbooks = quickbooks or FakeQuickBooks()
        self.faults = faults if faults is not None else Faults()
        self.username = username
        self.password = password
        self.qbwc_version = qbwc_version
        #: A "W:" from clientVersion asks the user; True is clicking "OK".
        self.accept_version_warning = accept_version_warning
        #: QBWC waits 5 s after a "NoOp" from getLastError before asking again.
        self.noop_wait = noop_wait
        self.max_noops = max_noops
        #: How many times a company-file path from connectionError is tried.
        self.max_connection_retries = max_connection_retries
        self.max_requests = max_requests
        #: .NET's default HttpWebRequest timeout is 100 s.
        self.timeout = timeout
        #: .NET waits this long for "100 Continue" before sending the body anyway.
        self.expect_continue_timeout = expect_continue_timeout
        self.sleep = sleep

    def run(self) -> SessionResult:
        """Run one update session (one TCP connection, one ticket) and report it."""
        return _Update(self).run()


class _Abort(Exception):
    """Ends the session from deep inside the conversation."""

    def __init__(self, outcome: Outcome, status: str) -> None:
        super().__init__(status)
        self.outcome = outcome
        self.status = status


@dataclass(frozen=True)
class _Reply:
    status: int
    reason: str
    content_type: str
    body: bytes
    local_port: int | None


class _Channel:
    """One keep-alive HTTP connection, used the way .NET's HttpWebRequest uses it."""

    def __init__(self, url: str, timeout: float, expect_continue_timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._connection = connection_class(parts.hostname, parts.port, timeout=timeout)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._expect_continue_timeout = expect_continue_timeout

    def post(self, operation: str, body: bytes) -> _Reply:
        connection = self._connection
        # .NET announces keep-alive on the first request of a connection only.
        fresh = connection.sock is None
        connection.putrequest("POST", self._path, skip_accept_encoding=True)
        connection.putheader("User-Agent", USER_AGENT)
        connection.putheader("Content-Type", "text/xml; charset=utf-8")
        connection.putheader("SOAPAction", soap_action(operation))
        connection.putheader("Content-Length", str(len(body)))
        connection.putheader("Expect", "100-continue")
        if fresh:
            connection.putheader("Connection", "Keep-Alive")
        connection.endheaders()
        sock = connection.sock
        local_port = sock.getsockname()[1] if sock is not None else None
        if sock is not None and self._expect_continue_timeout > 0:
            # Wait for the interim "100 Continue" without consuming it:
            # http.client skips 1xx responses when it reads the final one.
            select.select([sock], [], [], self._expect_continue_timeout)
        connection.send(body)
        response = connection.getresponse()
        data = response.read()
        return _Reply(response.status, response.reason, response.getheader("Content-Type") or "", data, local_port)

    def drop(self) -> None:
        """Close the socket now, as a killed process or a broken network would."""
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already reset by the peer
                sock.shutdown(socket.SHUT_RDWR)
        self._connection.close()

    def close(self) -> None:
        self._connection.close()


class _Update:
    """The state of one running session; :meth:`run` is the whole protocol."""

    def __init__(self, connector: FakeWebConnector) -> None:
        self.connector = connector
        self.quickbooks = connector.quickbooks
        self.faults = connector.faults
        self.channel = _Channel(connector.url, connector.timeout, connector.expect_continue_timeout)
        self.transcript: list[Call] = []
        self.exchanges: list[Exchange] = []
        self.ticket = ""
        self.close_message: str | None = None

    def run(self) -> SessionResult:
        try:
            outcome, status = self._converse()
        except _Abort as abort:
            outcome, status = abort.outcome, abort.status
        finally:
            self.channel.close()
        return SessionResult(
            outcome=outcome,
            final_status=status,
            transcript=tuple(self.transcript),
            exchanges=tuple(self.exchanges),
            ticket=self.ticket,
            close_message=self.close_message,
        )

    # -- the conversation ----------------------------------------------------

    def _converse(self) -> tuple[Outcome, str]:
        self._check_versions()
        answer = self._call(
            "authenticate", [("strUserName", self.connector.username), ("strPassword", self.connector.password)]
        )
        assert isinstance(answer, tuple)
        if len(answer) < 2:
            detail = f"authenticate returned {len(answer)} string(s); QBWC needs the ticket and a status"
            raise _Abort(Outcome.FAULT, _failure_text("authenticate", detail))
        self.ticket, status = answer[0], answer[1]
        if status.lower() in _AUTH_STATUS_TEXT:
            self._close()
            return Outcome(status.lower()), _AUTH_STATUS_TEXT[status.lower()]
        session = self._open_quickbooks(status)
        try:
            return self._exchange(session)
        finally:
            session.end()

    def _check_versions(self) -> None:
        """serverVersion and clientVersion; a fault in either is tolerated.

        QBWC lets services that lack these methods through "for backward
        compatibility", so a SOAP fault here is recorded and ignored; an
        unreachable server is not.
        """
        self._call("serverVersion", [])
        ours = self.connector.qbwc_version
        answer = self._call("clientVersion", [("strVersion", ours)])
        if not isinstance(answer, str):
            return
        kind, text = answer[:2], answer[2:]
        if kind == "E:":
            raise _Abort(
                Outcome.VERSION_REFUSED,
                "QBWC1037: Application sent following error or warning message when checking version "
                f"of QB web connector. Update aborted. {text}",
            )
        if kind == "W:" and not self.connector.accept_version_warning:
            raise _Abort(Outcome.VERSION_REFUSED, text)
        if kind == "O:" and _version_tuple(ours) < _version_tuple(text):
            raise _Abort(
                Outcome.VERSION_REFUSED,
                f"The web service requires QuickBooks Web Connector {text} or later; this is {ours}.",
            )

    def _open_quickbooks(self, status: str) -> QuickBooksSession:
        """Open QuickBooks, reporting failures through connectionError.

        The server answers "done" (any case) to give up or a company-file path
        to retry ("" = the open file). After ``max_connection_retries`` retries
        the connector stops asking. Either way closeConnection follows, so the
        server learns the session is over.
        """
        path = status
        retries = 0
        while True:
            try:
                return self.quickbooks.begin_session(path, self.faults)
            except OpenError as failure:
                answer = self._call(
                    "connectionError",
                    [("ticket", self.ticket), ("hresult", failure.hresult), ("message", failure.message)],
                )
                assert isinstance(answer, str)
                if answer.lower() == "done" or retries >= self.connector.max_connection_retries:
                    self._close()
                    raise _Abort(
                        Outcome.CONNECTION_ERROR,
                        "QBWC1013: Error connecting to QuickBooks. Returning error message to application. "
                        f"{failure.message}",
                    ) from None
                retries += 1
                path = answer

    def _exchange(self, session: QuickBooksSession) -> tuple[Outcome, str]:
        """The sendRequestXML ⇄ receiveResponseXML loop."""
        profile = self.quickbooks.profile
        major, minor = profile.qbxml_version
        first = True
        noops = 0
        number = 0
        while True:
            if number >= self.connector.max_requests:
                return self._stop(f"Stopped by the simulator after {number} requests.")
            request = self._call(
                "sendRequestXML",
                [
                    ("ticket", self.ticket),
                    ("strHCPResponse", self.quickbooks.first_call_response() if first else ""),
                    ("strCompanyFileName", session.company_file),
                    ("qbXMLCountry", profile.country),
                    ("qbXMLMajorVers", str(major)),
                    ("qbXMLMinorVers", str(minor)),
                ],
            )
            assert isinstance(request, str)
            first = False
            if request == "":
                text = self._last_error()
                if text == "NoOp":
                    if noops >= self.connector.max_noops:
                        return self._stop(f"Stopped by the simulator after {noops} NoOp answers.")
                    noops += 1
                    self.connector.sleep(self.connector.noop_wait)
                    continue
                self._close()
                if text == "Interactive mode":
                    return Outcome.STOPPED, "Interactive mode is not simulated."
                return Outcome.ERROR, text
            number += 1
            kinds = _request_kinds(request)
            if self.faults.take(DropFault, kinds, number) is not None:
                self.channel.drop()
                return Outcome.DROPPED, f"Connection dropped after sendRequestXML #{number} (simulated)."
            result = session.process_request(request)
            self.exchanges.append(
                Exchange(number=number, request=request, result=result, call_index=len(self.transcript) - 1)
            )
            if self.faults.take(CrashFault, kinds, number) is not None:
                self.channel.drop()
                return (
                    Outcome.CRASHED,
                    f"Web Connector crashed after QuickBooks answered request #{number} (simulated).",
                )
            percent = self._call(
                "receiveResponseXML",
                [
                    ("ticket", self.ticket),
                    ("response", result.response),
                    ("hresult", result.hresult),
                    ("message", result.message),
                ],
            )
            assert isinstance(percent, int)
            if percent < 0:
                text = self._last_error()
                self._close()
                return Outcome.ERROR, text
            if percent >= 100:
                self._close()
                return Outcome.OK, self.close_message or ""

    def _last_error(self) -> str:
        answer = self._call("getLastError", [("ticket", self.ticket)])
        assert isinstance(answer, str)
        return answer

    def _close(self) -> None:
        answer = self._call("closeConnection", [("ticket", self.ticket)])
        assert isinstance(answer, str)
        self.close_message = answer

    def _stop(self, reason: str) -> tuple[Outcome, str]:
        self._close()
        return Outcome.STOPPED, reason

    # -- one call ----------------------------------------------------------

    def _call(self, operation: str, parameters: Sequence[tuple[str, str]]) -> Answer | None:
        """POST one envelope and deserialize the answer; record it in the transcript.

        Returns None only for a tolerated fault (serverVersion, clientVersion);
        every other failure ends the session with :attr:`Outcome.FAULT`.
        """
        shown = {name: REDACTED if name == "strPassword" else value for name, value in parameters}
        started = time.perf_counter()
        reply: _Reply | None = None
        try:
            reply = self.channel.post(operation, request_envelope(operation, parameters))
            # The checks and their wording are .NET's SoapHttpClientProtocol's.
            if not reply.content_type.startswith("text/xml"):
                raise SoapReplyError(
                    f"Client found response content type of '{reply.content_type}', but expected 'text/xml'"
                )
            answer = read_answer(operation, reply.body)
            if reply.status != 200 and not isinstance(answer, SoapFault):
                raise SoapReplyError(f"The request failed with HTTP status {reply.status}: {reply.reason}")
        except (OSError, http.client.HTTPException, SoapReplyError) as exc:
            detail = str(exc) or type(exc).__name__
            self._record(operation, shown, started, reply, error=detail)
            raise _Abort(Outcome.FAULT, _failure_text(operation, detail)) from None
        if isinstance(answer, SoapFault):
            self._record(operation, shown, started, reply, fault=answer)
            if operation in ("serverVersion", "clientVersion"):
                return None
            raise _Abort(Outcome.FAULT, _failure_text(operation, answer.message))
        self._record(operation, shown, started, reply, answer=answer)
        return answer

    def _record(
        self,
        operation: str,
        parameters: dict[str, str],
        started: float,
        reply: _Reply | None,
        *,
        answer: Answer | None = None,
        fault: SoapFault | None = None,
        error: str | None = None,
    ) -> None:
        self.transcript.append(
            Call(
                operation=operation,
                parameters=parameters,
                answer=answer,
                fault=fault,
                error=error,
                http_status=reply.status if reply is not None else None,
                duration=time.perf_counter() - started,
                local_port=reply.local_port if reply is not None else None,
            )
        )


def _failure_text(operation: str, detail: str) -> str:
    template = _FAILURE_TEXT.get(operation, "{operation} failed: {detail}.")
    return template.format(operation=operation, detail=detail.rstrip("."))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.strip().split(".") if part.isdigit())


def _request_kinds(request: str) -> tuple[str, ...]:
    """Request types in a document, for fault matching; () when it cannot be read."""
    try:
        summary = summarize_request(request)
    except QbxmlSyntaxError:
        return ()
    return tuple(name[:-2] for name, _ in summary.requests if name.endswith("Rq"))
