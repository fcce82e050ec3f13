"""The Web Connector conversation, without I/O.

One method per SOAP operation, in the order QBWC calls them (see
QBWC-PROTOCOL.md §2). Each takes the call's parameters as plain Python values
and returns the plain answer; each runs in one database transaction. The SOAP
adapter (``qwc_service.soap``) only translates envelopes to and from these
calls, so tests can hold a whole conversation with no HTTP at all.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from sqlalchemy.orm import Session, sessionmaker

from . import diagnosis, logs, metrics, preflight, qbxml, queue, sessions
from .authentication import Candidate, Check, Gatekeeper
from .config import Settings
from .models import AuthResultKind, Connection, Job, JobState, SessionState, WebConnectorSession
from .passwords import Passwords
from .qbxml import HostFacts

log = logging.getLogger(__name__)

#: QBWC's answer to an unusable ticket must not fault (that would show a bare
#: QBWC1041-style code); these texts tell the operator what happens next.
UNKNOWN_SESSION_TEXT = (
    "Session expired or unknown; the Web Connector will start a new one on its next run."
)
CLOSED_SESSION_TEXT = "Session unknown or already closed."
#: getLastError's answer that makes QBWC wait five seconds and ask again.
NOOP = "NoOp"
#: A negative receiveResponseXML answer: QBWC calls getLastError, then closeConnection.
STOP = -1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class AuthResult:
    """authenticate's answer: ``[ticket, status, postpone?, min_run_every?]``."""

    ticket: str
    status: str
    postpone_seconds: int | None = None
    min_run_every_seconds: int | None = None

    #: Not a valid user. The same answer, byte for byte, for every reason.
    NVU = "nvu"
    #: Valid user, nothing to do: QBWC does not even open QuickBooks.
    NONE = "none"
    #: Another run of this connection is in progress: try again after the postpone.
    BUSY = "busy"

    def as_array(self) -> list[str]:
        """Every element emitted, empty ones too (a dropped empty element breaks QBWC)."""
        array = [self.ticket, self.status]
        if self.postpone_seconds is not None or self.min_run_every_seconds is not None:
            # A number QBWC can parse even when only the fourth element matters.
            array.append(str(self.postpone_seconds or 0))
        if self.min_run_every_seconds is not None:
            array.append(str(self.min_run_every_seconds))
        return array


NVU_RESULT = AuthResult(ticket="", status=AuthResult.NVU)


class Conversation:
    """Answers the Web Connector's calls from the database.

    ``clock`` is injectable so tests can expire tickets without sleeping.
    """

    def __init__(
        self,
        db: sessionmaker[Session],
        settings: Settings | None = None,
        passwords: Passwords | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings or Settings()
        self.passwords = passwords or Passwords.from_settings(self.settings)
        self.gate = Gatekeeper(self.settings, self.passwords)
        self.clock = clock

    # -- before a session ---------------------------------------------------

    def server_version(self) -> str:
        return self.settings.server_version

    def client_version(self, version: str) -> str:
        """Apply the clientVersion policy: ``""`` proceed, ``"O:v"`` upgrade, ``"W:text"`` warn."""
        minimum = self.settings.min_client_version
        if minimum and _version_key(version) < _version_key(minimum):
            return f"O:{minimum}"
        if self.settings.client_version_warning:
            return f"W:{self.settings.client_version_warning}"
        return ""

    def authenticate(self, username: str, password: str, client_address: str = "") -> AuthResult:
        """Let in only the connection's dedicated sync user, and say whether there is work.

        Look the user up and check for lockouts; verify the password outside
        any transaction (or, for a login verified moments ago, not at all);
        then record the result and open the session. Every refusal is the
        same ``nvu``.
        """
        username, password = username or "", password or ""
        logs.reset()
        with self.db.begin() as db:
            now = self.clock()
            candidate = self.gate.look_up(db, username, client_address, now)
            if candidate.locked:
                self.gate.record(db, candidate, AuthResultKind.LOCKED, now, "locked out")
                metrics.AUTH_RESULTS.labels(AuthResultKind.LOCKED.value).inc()
                return NVU_RESULT
            if self.gate.remembered(candidate, password):  # the every-minute poll: one transaction
                return self._admit(db, candidate, Check(True, ""), client_address, now, looked_up_here=True)
        check = self.gate.check_password(candidate, password)  # argon2, outside any transaction
        with self.db.begin() as db:
            now = self.clock()
            if not check.valid:
                self.gate.fail(db, candidate, now, check.detail)
                metrics.AUTH_RESULTS.labels(AuthResultKind.NVU.value).inc()
                return NVU_RESULT
            return self._admit(db, candidate, check, client_address, now, looked_up_here=False)

    def _admit(self, db: Session, candidate: Candidate, check: Check, client_address: str, now: datetime, *,
               looked_up_here: bool) -> AuthResult:
        """A verified login: busy, none, or a new session (the connection row is locked meanwhile)."""
        connection = self.gate.target(db, candidate, looked_up_here=looked_up_here)
        if connection is None or not connection.enabled or connection.password_hash != candidate.stored_hash:
            # Changed between the steps: refuse now, the next poll sees the new state.
            self.gate.fail(db, candidate, now, "connection changed during login")
            metrics.AUTH_RESULTS.labels(AuthResultKind.NVU.value).inc()
            return NVU_RESULT
        self.gate.succeed(db, candidate, check)
        result = self._start_session(db, connection, client_address, now)
        kind = {AuthResult.NONE: AuthResultKind.NONE, AuthResult.BUSY: AuthResultKind.BUSY}.get(
            result.status, AuthResultKind.OK
        )
        self.gate.record(db, candidate, kind, now)
        metrics.AUTH_RESULTS.labels(kind.value).inc()
        log.info("authenticate: connection=%s %s", connection.name, kind.value)
        return result

    def _start_session(self, db: Session, connection: Any, client_address: str, now: datetime) -> AuthResult:
        """Busy, none, or a new session; the connection row is locked, so this is atomic.

        ``connection`` is the login's Core row; the ORM object is loaded only
        when a session is opened.
        """
        for other in sessions.open_sessions(db, connection.id):
            silence = (now - other.last_seen_at).total_seconds()
            if sessions.is_expired(other, now, self.settings):
                sessions.end(db, other, now, SessionState.EXPIRED, "the session expired")
            elif silence >= self.settings.session_takeover_seconds:
                sessions.end(
                    db, other, now, SessionState.EXPIRED,
                    f"a new Web Connector run took over after {int(silence)} seconds of silence",
                )
            else:
                wait = max(5, math.ceil(self.settings.session_takeover_seconds - silence))
                return AuthResult(sessions.sessionless_ticket(), AuthResult.BUSY, postpone_seconds=wait)
        run_every = connection.min_run_every_seconds
        if not connection.always_open and not queue.has_work(db, connection.id, now):
            # No session row: closeConnection for this ticket finds nothing,
            # which is the right answer for a run with nothing to do.
            return AuthResult(sessions.sessionless_ticket(), AuthResult.NONE, min_run_every_seconds=run_every)
        ticket, _ = sessions.open_session(db, db.get_one(Connection, connection.id), now, client_address)
        return AuthResult(ticket, connection.company_file, min_run_every_seconds=run_every)

    # -- the exchange -------------------------------------------------------

    @contextmanager
    def _call(self, ticket: str) -> Iterator[tuple[Session, WebConnectorSession | None, datetime]]:
        """One call's transaction: its time, the live session the ticket names (or None), its log tags."""
        now = self.clock()
        logs.reset()
        if not sessions.may_exist(ticket):  # e.g. the ticket of a "none" answer: no database needed
            yield None, None, now  # type: ignore[misc]
            return
        with self.db.begin() as db:
            session = sessions.find_live(db, ticket, now, self.settings)
            self._bind(session)
            yield db, session, now

    def _bind(self, session: WebConnectorSession | None, job: Job | None = None) -> None:
        if session is not None:
            logs.bind(connection=session.connection.name, ticket=session.ticket_hash[:12])
        if job is not None:
            logs.bind(job=job.id)

    def send_request_xml(
        self,
        ticket: str,
        hcp_response: str = "",
        company_file_name: str = "",
        country: str = "",
        major: int | None = None,
        minor: int | None = None,
    ) -> str:
        """Hand out the connection's next job, or ``""`` when there is none.

        The first call of a session carries QuickBooks' own description
        (strHCPResponse); it is stored because it decides the qbXML version
        and, when something is refused, whose permissions applied.
        """
        with self._call(ticket) as (db, session, now):
            if session is None:
                return ""
            if hcp_response and session.host_facts is None:
                self._preflight(db, session, self._read_facts(hcp_response, session.connection))
            session.company_file_name = company_file_name or session.company_file_name
            session.qbxml_country = (country or session.qbxml_country)[:8]
            session.qbxml_major = major if major is not None else session.qbxml_major
            session.qbxml_minor = minor if minor is not None else session.qbxml_minor
            in_flight = queue.in_flight(db, session.id)
            page = next((j for j in in_flight if j.sent_at is None and j.iterator_id is not None), None)
            if any(j.sent_at is not None for j in in_flight):
                # QBWC asked again without answering: the last exchange was lost
                # (and with it any iterator: release_unanswered requeues paged queries too).
                queue.release_unanswered(db, session.id, now, "The Web Connector asked for new work instead of "
                                                              "answering this job")
                page = None
            facts = HostFacts.from_dict(session.host_facts)
            if page is not None:
                queue.send_page(page, now)
                log.info("sendRequestXML: session=%s job=%s next page", session.id, page.id)
                return self._render(db, page, facts, session, now) or ""
            while True:
                job = queue.claim_next(db, session.connection_id, session.id, now) or queue.claim_probe(
                    db, session.connection_id, session.id, now)
                if job is None:
                    break
                self._bind(None, job)
                request = self._render(db, job, facts, session, now)
                if request is not None:
                    log.info("sendRequestXML: session=%s job=%s %s", session.id, job.id, job.request_types)
                    logs.log_payload(self.settings, f"request of job {job.id}", request)
                    return request
                session.jobs_failed += 1
            # Work that exists but could not be claimed (another process holds it
            # for a moment) is worth a NoOp: QBWC waits five seconds and asks again.
            session.last_error = (
                NOOP if queue.has_work(db, session.connection_id, now) else "There is nothing left to send."
            )
            return ""

    def _preflight(self, db: Session, session: WebConnectorSession, facts: HostFacts) -> None:
        """Store the first call's facts and the warnings they predict."""
        connection = session.connection
        session.host_facts = facts.to_dict()
        warnings = preflight.check(facts, connection, preflight.needs_personal_data(db, connection.id))
        session.warnings = [w.to_dict() for w in warnings]
        for warning in warnings:
            log.warning("preflight: connection=%s %s: %s", connection.name, warning.code, warning.summary)
        preflight.remember(connection, facts)

    def _read_facts(self, hcp_response: str, connection: Connection) -> HostFacts:
        try:
            return qbxml.read_host_facts(hcp_response, connection.owner_id)
        except qbxml.QbxmlError as exc:
            log.warning("sendRequestXML: unreadable strHCPResponse for %s: %s", connection.name, exc)
            return HostFacts()

    def _render(
        self, db: Session, job: Job, facts: HostFacts, session: WebConnectorSession, now: datetime
    ) -> str | None:
        """The request text to send, or None after failing a job the host cannot take."""
        version = qbxml.choose_version(job.qbxml_version, facts, session.qbxml_major, session.qbxml_minor)
        if qbxml.version_exceeds(job.qbxml_version, version):
            queue.fail(
                db, job, now,
                f"This job needs qbXML {job.qbxml_version}, but this QuickBooks "
                f"({facts.product_name or 'version unknown'}) supports at most qbXML {version}. "
                "Update QuickBooks, or enqueue the job for an older qbXML version.",
            )
            return None
        return qbxml.render_request(job.request_xml, version, job.id, job.iterator_id)

    def receive_response_xml(self, ticket: str, response: str, hresult: str = "", message: str = "") -> int:
        """Store QuickBooks' answer to the outstanding job and report progress.

        Returns 0–99 while work remains, 100 when none does, and a negative
        number when the session must stop (QBWC then shows getLastError).
        """
        with self._call(ticket) as (db, session, now):
            if session is None:
                return STOP
            job = queue.outstanding(db, session.id)
            self._bind(None, job)
            if job is not None and response:
                logs.log_payload(self.settings, f"response to job {job.id}", response)
            if job is None:
                session.last_error = (
                    "The Web Connector sent an answer, but no request was waiting for one; "
                    "the session stops so that nothing is recorded against the wrong job."
                )
                return STOP
            if hresult or not response:
                found = self._diagnose(session, job, hresult, message or "QuickBooks returned no answer", None)
                outcome = queue.record_rejection(db, job, hresult, message, now, found.text,
                                                 found.wall if found.stops_session else None)
                log.info("receiveResponseXML: session=%s job=%s rejected %s", session.id, job.id, hresult)
                return self._after_failure(db, session, job, outcome, found, now)
            verdicts: list[_Found] = []

            def wall_of(status: qbxml.ResponseStatus) -> str | None:
                verdicts.append(self._diagnose(session, job, str(status.code), status.message, status.request_type))
                return verdicts[-1].wall if verdicts[-1].stops_session else None

            try:
                outcome = queue.record_response(db, job, response, now, wall_of)
            except queue.ResponseMismatch as exc:
                queue.release_unanswered(db, session.id, now, f"The answer did not match the job sent ({exc})")
                session.last_error = (
                    f"QuickBooks' answer does not belong to the request that was sent ({exc}); the session "
                    "stops so that nothing is recorded against the wrong job."
                )
                return STOP
            log.info("receiveResponseXML: session=%s job=%s %s", session.id, job.id, outcome.state.value)
            if outcome.state is JobState.DONE:
                session.jobs_done += 1
                queue.release_walls(db, session.connection_id, job.request_types, now)
            elif outcome.held or outcome.state is JobState.FAILED:
                status = outcome.status
                found = verdicts[-1] if verdicts else (
                    self._diagnose(session, job, str(status.code), status.message, status.request_type)
                    if status is not None else None)
                if found is not None:
                    return self._after_failure(db, session, job, outcome, found, now)
                session.jobs_failed += 1
            return self._progress(db, session, now, page_pending=outcome.continues)

    def _after_failure(
        self, db: Session, session: WebConnectorSession, job: Job, outcome: queue.Outcome, found: "_Found",
        now: datetime,
    ) -> int:
        """Apply the session policy: a wall stops the session, anything else fails just this job."""
        if not outcome.held:
            session.jobs_failed += 1
        job.error = found.text
        if outcome.state is JobState.FAILED and job.wall_hits >= queue.MAX_WALL_HITS:
            job.error = f"{found.text}\n{queue.gave_up_text(job)}"
        if not found.stops_session:
            return self._progress(db, session, now)
        text = found.text
        if outcome.held:
            others = queue.held_count(db, session.connection_id) - 1
            waiting = f" with {others} other job{'s' if others != 1 else ''} that would hit the same problem" \
                if others > 0 else ""
            them = "them" if others > 0 else "it"
            text = (f"{found.first_line} Job {job.id} is held{waiting}; the next run tries again and a success "
                    f"releases {them}.\n{found.rest}").strip()
        session.last_error = text
        log.info("receiveResponseXML: session=%s job=%s stops the session (%s)", session.id, job.id, found.wall)
        return STOP

    def _progress(self, db: Session, session: WebConnectorSession, now: datetime,
                  page_pending: bool | None = None) -> int:
        """Percent done; 100 only when nothing this session could still send remains.

        ``page_pending``: whether a paged query awaits its next page, when the
        caller knows (the answer just recorded says so); else it is looked up.
        """
        remaining = queue.work_count(db, session.connection_id, now)
        if page_pending if page_pending is not None else queue.next_page(db, session.id) is not None:
            remaining += 1
        if remaining == 0:
            return 100
        finished = session.jobs_done + session.jobs_failed
        return min(99, finished * 100 // (finished + remaining))

    def _diagnose(
        self, session: WebConnectorSession, job: Job, code: str, message: str, request_type: str | None
    ) -> "_Found":
        """What went wrong, in words for the person at the Web Connector, and whether to stop."""
        context = self._context(session)
        if request_type is None and job.request_types:
            request_type = job.request_types.split(" ")[0]
        found = diagnosis.diagnose(code or None, message, request_type, context)
        metrics.QUICKBOOKS_ERRORS.labels(str(found.code), str(found.category)).inc()
        summary = f"Job {job.id}: {found.summary}"
        if job.statuses and len(job.statuses) > 1:
            failed = sum(1 for s in job.statuses if s.get("severity") == "Error")
            summary += f" ({failed} of {len(job.statuses)} requests failed)"
        category = str(found.category)
        wall = f"{category}:{request_type}" if category == "permission" and request_type else category
        return _Found(first_line=summary, rest=found.details or "", stops_session=found.stops_session, wall=wall)

    @staticmethod
    def _context(session: WebConnectorSession) -> diagnosis.FailureContext:
        """Who and what a failure concerns, for the texts people read."""
        connection = session.connection
        return diagnosis.FailureContext.from_host_facts(
            session.host_facts,
            connection_name=connection.name,
            sync_user_name=connection.username,
            company_file_path=session.company_file_name or connection.company_file,
        )

    def connection_error(self, ticket: str, hresult: str, message: str) -> str:
        """QuickBooks could not be opened: record why and stop (``"done"``)."""
        with self._call(ticket) as (db, session, now):
            if session is None:
                return "done"
            session.connection_error_hresult = (hresult or "")[:32]
            session.connection_error_message = message or ""
            found = diagnosis.diagnose(hresult or None, message or "", None, self._context(session))
            metrics.QUICKBOOKS_ERRORS.labels(str(found.code), str(found.category)).inc()
            session.last_error = f"{found.summary}\n{found.details}".strip()
            log.info("connectionError: session=%s %s", session.id, hresult)
            return "done"

    def get_last_error(self, ticket: str) -> str:
        with self._call(ticket) as (db, session, now):
            if session is None:
                return UNKNOWN_SESSION_TEXT
            return session.last_error or "No error."

    def close_connection(self, ticket: str) -> str:
        """End the session and return the one-line summary QBWC shows in its status column."""
        now = self.clock()
        logs.reset()
        if not sessions.may_exist(ticket):
            return CLOSED_SESSION_TEXT
        with self.db.begin() as db:
            session = sessions.find(db, ticket)
            self._bind(session)
            if session is None:
                return CLOSED_SESSION_TEXT
            in_doubt = 0
            if session.state == SessionState.OPEN.value:
                _, in_doubt = sessions.end(
                    db, session, now, SessionState.CLOSED, "the Web Connector closed the session"
                )
            log.info("closeConnection: session=%s", session.id)
            text = summary(session.jobs_done, session.jobs_failed, in_doubt,
                           queue.held_count(db, session.connection_id))
            if session.last_error and session.last_error != NOOP:
                text += f". {session.last_error.splitlines()[0]}"
            for warning in session.warnings or ():
                text += f". Warning: {warning['summary']} Fix: {warning['fix']}"
            return text

    # -- interactive mode (not offered) ------------------------------------

    def get_interactive_url(self, ticket: str, session_id: str) -> str:
        return ""

    def interactive_done(self, ticket: str) -> str:
        return "Done"

    def interactive_rejected(self, ticket: str, reason: str) -> str:
        return "qwc-service does not use interactive mode."


@dataclass(frozen=True)
class _Found:
    """A failure as the session policy sees it."""

    first_line: str
    rest: str
    stops_session: bool
    #: What else it would block: "permission:<request type>", "company-file", "connection", …
    wall: str

    @property
    def text(self) -> str:
        return f"{self.first_line}\n{self.rest}".strip()


def _version_key(version: str) -> tuple[int, ...]:
    """"2.3.0.215" → (2, 3, 0, 215); junk sorts lowest, so it is asked to upgrade."""
    parts = []
    for part in (version or "").strip().split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def summary(done: int, failed: int, in_doubt: int = 0, held: int = 0) -> str:
    """E.g. ``"3 jobs done, 1 failed"``: short enough for QBWC's status column."""
    text = f"{done} job{'' if done == 1 else 's'} done, {failed} failed"
    if in_doubt:
        text += f", {in_doubt} in doubt"
    if held:
        text += f", {held} held until a QuickBooks setting is fixed"
    return text
