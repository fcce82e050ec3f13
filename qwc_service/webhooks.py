"""Webhooks: telling an integrator's system that a job is settled.

When a job reaches done, failed, in_doubt or cancelled, ``on_settled``
writes a ``WebhookDelivery`` row in the same transaction (an outbox), so a
delivery is never lost even if the process dies a moment later. Sending
happens elsewhere, later, with retries, and never inside a Web Connector call:
``deliver_due`` does one round of sending and ``WebhookWorker`` runs rounds
on a daemon thread.

Each attempt is three steps, so that a slow receiver holds no database lock:

1. **claim** (one short transaction): pick a due ``pending`` row with
   ``FOR UPDATE SKIP LOCKED`` (several server processes may run workers),
   count the attempt and push ``next_attempt_at`` forward by a lease
   (``CLAIM_LEASE``). A worker that dies after this leaves the row due again
   once the lease runs out.
2. **send**, with no transaction open: POST the stored payload, signed.
3. **record** (another short transaction): delivered, or the next attempt
   with exponential backoff, or ``failed`` after ``MAX_ATTEMPTS``. The
   record applies only if the row is still the one this worker claimed.

Delivery is at least once: a receiver should de-duplicate by the
``X-QWC-Delivery`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from . import __version__
from .models import Connection, Job, WebhookDelivery

if TYPE_CHECKING:
    from .server import Service

log = logging.getLogger(__name__)

#: The job states that trigger a webhook.
SETTLED = frozenset({"done", "failed", "in_doubt", "cancelled"})
SIGNATURE_HEADER = "X-QWC-Signature"
EVENT_HEADER = "X-QWC-Event"
DELIVERY_HEADER = "X-QWC-Delivery"

#: Attempts before a delivery is given up (state ``failed``): with the backoff
#: below, about five hours of trying (long enough to outlast a receiver's
#: deploy or short outage, short enough that "failed" still means something).
MAX_ATTEMPTS = 12
#: The first retry waits this long; each one after waits twice as long ...
BACKOFF_BASE_SECONDS = 30
#: ... up to this.
BACKOFF_MAX_SECONDS = 3600
#: Socket timeout of one POST.
SEND_TIMEOUT_SECONDS = 10.0
#: A claimed delivery is not due again for this long: longer than a send can
#: take, short enough that a worker's death delays the delivery only a little.
CLAIM_LEASE = timedelta(minutes=2)
#: How much of a refusing receiver's answer is kept in last_error.
ERROR_BODY_CHARS = 200

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- the outbox ----------------------------------------------------------------------


_CONNECTION_URL = select(Connection.webhook_url).where(Connection.id == bindparam("connection_id"))


def _connection_url(db: Session, connection_id: int) -> str | None:
    """The connection's webhook URL, from the row this transaction already loaded when it did."""
    loaded = db.identity_map.get(db.identity_key(Connection, connection_id))
    if loaded is not None:
        return loaded.webhook_url  # type: ignore[no-any-return]
    return db.scalar(_CONNECTION_URL, {"connection_id": connection_id})


def on_settled(db: Session, job: Job, now: datetime) -> WebhookDelivery | None:
    """Queue a delivery for a job that has just settled, if anyone asked for one."""
    if job.state not in SETTLED:
        return None
    url = job.webhook_url or _connection_url(db, job.connection_id)
    if not url:
        return None
    delivery = WebhookDelivery(
        job_id=job.id,
        url=url,
        event=job.state,
        payload=json.dumps(payload(db, job, now), separators=(",", ":"), sort_keys=True),
        state=PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    db.add(delivery)
    return delivery


def payload(db: Session, job: Job, now: datetime) -> dict[str, object]:
    """What the receiver gets: enough to act, never the qbXML payloads themselves."""
    name = db.scalar(select(Connection.name).where(Connection.id == job.connection_id))
    return {
        "event": f"job.{job.state}",
        "job": {
            "id": job.id,
            "connection": name,
            "state": job.state,
            "request_types": job.request_types.split(),
            "status_code": job.status_code,
            "status_severity": job.status_severity,
            "status_message": job.status_message,
            "hresult": job.hresult,
            "error": job.error,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        },
        "sent_at": now.isoformat(),
    }


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` of the body, keyed with the connection's webhook secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def deliveries_of(db: Session, job_id: int) -> list[WebhookDelivery]:
    """Every delivery owed for a job, oldest first (what the API shows)."""
    return list(db.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                           .order_by(WebhookDelivery.id)))


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, 60 s, 120 s, … capped at an hour."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS))


# -- sending ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One POST to make, built from a claimed row (no ORM object crosses the transaction)."""

    delivery_id: int
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Result:
    """What a receiver did: ``status`` None when no HTTP answer came at all."""

    ok: bool
    status: int | None = None
    error: str = ""
    #: The URL can never work (e.g. not http/https): do not try again.
    permanent: bool = False


@dataclass(frozen=True)
class _Claim:
    request: Request
    attempt: int


Sender = Callable[[Request, float], Result]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure: following it would re-send the signed body somewhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects())


def post(request: Request, timeout: float) -> Result:
    """POST with urllib; any 2xx is a delivery, anything else (or no answer) is not."""
    scheme = urllib.parse.urlsplit(request.url).scheme.lower()
    if scheme not in ("http", "https"):
        return Result(False, error=f"the URL scheme {scheme!r} is not http or https", permanent=True)
    http_request = urllib.request.Request(request.url, data=request.body, headers=request.headers, method="POST")
    try:
        with _opener.open(http_request, timeout=timeout) as response:
            status = response.status
            return Result(200 <= status < 300, status, "" if 200 <= status < 300 else f"HTTP {status}")
    except urllib.error.HTTPError as exc:
        try:
            text = _snippet(exc)
        finally:
            exc.close()
        reason = f"HTTP {exc.code}"
        if 300 <= exc.code < 400:
            reason += f" (redirects are not followed; Location: {exc.headers.get('Location', '')[:200]})"
        return Result(False, exc.code, f"{reason}: {text}" if text else reason)
    except urllib.error.URLError as exc:
        return Result(False, error=f"no answer: {exc.reason}")
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs, bad status lines
        return Result(False, error=f"no answer: {exc.__class__.__name__}: {exc}")
    except Exception as exc:  # http.client.HTTPException and kin: the receiver spoke no HTTP
        return Result(False, error=f"no answer: {exc.__class__.__name__}: {exc}")


def _snippet(response: Any) -> str:
    try:
        data = response.read(ERROR_BODY_CHARS * 4)
    except Exception:
        return ""
    return " ".join(data.decode("utf-8", "replace").split())[:ERROR_BODY_CHARS]


def deliver_due(
    db: sessionmaker[Session],
    now: datetime,
    *,
    limit: int = 50,
    max_attempts: int = MAX_ATTEMPTS,
    timeout: float = SEND_TIMEOUT_SECONDS,
    send: Sender = post,
) -> int:
    """One round: send up to ``limit`` due deliveries; returns how many were attempted.

    Each is claimed, sent and recorded on its own (see the module docstring),
    so a slow receiver holds no lock and delays only the deliveries after it
    in this worker.
    """
    _give_up_abandoned(db, now, max_attempts)
    attempted = 0
    while attempted < limit:
        claim = _claim(db, now, max_attempts)
        if claim is None:
            break
        attempted += 1
        try:
            result = send(claim.request, timeout)
        except Exception as exc:  # a sender must not kill the worker; count it as a failed attempt
            log.exception("webhook delivery %s: the sender failed", claim.request.delivery_id)
            result = Result(False, error=f"internal error while sending: {exc.__class__.__name__}")
        _record(db, claim, result, now, max_attempts)
    return attempted


def _give_up_abandoned(db: sessionmaker[Session], now: datetime, max_attempts: int) -> None:
    """A row whose last allowed attempt was claimed by a worker that then died."""
    with db.begin() as s:
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.state == PENDING, WebhookDelivery.attempts >= max_attempts,
                   WebhookDelivery.next_attempt_at <= now)
            .values(state=FAILED, last_error="gave up: the worker sending the last attempt stopped before it "
                                             "recorded the result")
        )


def _claim(db: sessionmaker[Session], now: datetime, max_attempts: int) -> _Claim | None:
    """Take the next due delivery for one attempt, leased for ``CLAIM_LEASE``.

    ``FOR UPDATE SKIP LOCKED`` keeps racing workers on different rows; the
    UPDATE counts the attempt in the database and re-checks that the row is
    due, so nothing is sent on a stale read. Leases are read by each worker's
    own clock: servers whose clocks differ by more than the lease could send a
    row twice, so keep them on NTP. (A test once leaked a worker on the real
    clock into tests on a fake one, three days behind: it did exactly that.)
    """
    due = (WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now,
           WebhookDelivery.attempts < max_attempts)
    with db.begin() as s:
        found = s.scalar(
            select(WebhookDelivery.id).where(*due)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if found is None:
            return None
        row = s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == found, *due)
            .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + CLAIM_LEASE)
            .returning(WebhookDelivery.id, WebhookDelivery.url, WebhookDelivery.payload,
                       WebhookDelivery.event, WebhookDelivery.job_id, WebhookDelivery.attempts)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if row is None:
            return None  # no longer due as it stands now: the next round looks again
        connection_id = s.scalar(select(Job.connection_id).where(Job.id == row.job_id))
        secret = _secret(s, connection_id)
        body = row.payload.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body),
            EVENT_HEADER: f"job.{row.event}",
            DELIVERY_HEADER: str(row.id),
            "User-Agent": f"qwc-service/{__version__}",
        }
        return _Claim(Request(row.id, row.url, body, headers), row.attempts)


def _secret(db: Session, connection_id: int | None) -> str:
    """The connection's signing secret, made now if it has none (a job-level URL on a connection without one).

    The conditional UPDATE makes concurrent workers agree on one secret; it
    runs only the first time, so the connection row is normally not locked.
    """
    secret = db.scalar(select(Connection.webhook_secret).where(Connection.id == connection_id))
    if secret:
        return secret
    db.execute(
        update(Connection).where(Connection.id == connection_id, Connection.webhook_secret.is_(None))
        .values(webhook_secret=secrets.token_urlsafe(32))
    )
    secret = db.scalar(select(Connection.webhook_secret).where(Connection.id == connection_id))
    assert secret is not None  # the job's connection exists (foreign key) and now has a secret
    return secret


def _record(db: sessionmaker[Session], claim: _Claim, result: Result, now: datetime, max_attempts: int) -> None:
    delivery_id = claim.request.delivery_id
    values: dict[str, Any] = {"last_status": result.status, "last_error": result.error[:4000]}
    if result.ok:
        values.update(state=DELIVERED, delivered_at=now, last_error="")
    elif result.permanent or claim.attempt >= max_attempts:
        values.update(state=FAILED)
    else:
        values.update(next_attempt_at=now + backoff(claim.attempt))
    with db.begin() as s:
        # Only if nobody reclaimed it meanwhile (our lease ran out): theirs is the newer attempt.
        changed = s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == PENDING,
                   WebhookDelivery.attempts == claim.attempt)
            .values(**values)
        ).rowcount
    host = urllib.parse.urlsplit(claim.request.url).hostname or "?"  # never the full URL: it may hold a secret
    if result.ok:
        log.info("webhook delivery %s to %s: HTTP %s", delivery_id, host, result.status)
    else:
        outcome = "gave up" if values.get("state") == FAILED else "will retry"
        log.warning("webhook delivery %s to %s, attempt %s: %s; %s", delivery_id, host, claim.attempt,
                    result.error, outcome)
    if not changed:
        log.warning("webhook delivery %s: the result of attempt %s came after the claim expired; not recorded",
                    delivery_id, claim.attempt)


# -- the background worker ------------------------------------------------------------


class WebhookWorker:
    """Runs ``deliver_due`` rounds on a daemon thread until ``stop()``.

    Between rounds that found nothing it waits ``interval`` seconds; the
    query it polls with is one indexed lookup, so every server process can run
    a worker.
    """

    def __init__(
        self,
        db: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = _utcnow,
        interval: float = 2.0,
        max_attempts: int = MAX_ATTEMPTS,
        timeout: float = SEND_TIMEOUT_SECONDS,
        send: Sender = post,
    ) -> None:
        self.db = db
        self.clock = clock
        self.interval = interval
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.send = send
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "WebhookWorker":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="qwc-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to finish its current send and wait for it (at most ``timeout`` s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.timeout + 5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # One delivery per round so that stop() waits for at most one send.
                busy = deliver_due(self.db, self.clock(), limit=1, max_attempts=self.max_attempts,
                                   timeout=self.timeout, send=self.send)
            except Exception:  # e.g. the database restarting: keep the thread, try again later
                log.exception("webhook worker: a round failed; trying again in %s s", self.interval)
                busy = 0
            if not busy:
                self._stop.wait(self.interval)


def start_worker(service: "Service", **options: Any) -> WebhookWorker:
    """Start a worker for a built service (``server.build``); call ``.stop()`` on shutdown."""
    return WebhookWorker(service.conversation.db, clock=service.conversation.clock, **options).start()
