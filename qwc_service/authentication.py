"""Who may log in: the dedicated sync user, checked like a bank login.

``authenticate`` is the one call an attacker on the internet can make
without a ticket, so this module keeps it dull and uniform:

* every failure (unknown user, another connection's user, a disabled
  connection, a wrong password) gets the same ``nvu`` after the same work: an
  unknown user is checked against a dummy argon2 hash;
* failures are counted per client address, per address against a
  connection, and per connection; past the limits the address is locked out
  for a cool-down that doubles each time, and attempts are answered ``nvu``
  without checking the password;
* a connection-wide lockout (many addresses failing) never applies to an
  address that has logged in successfully in the last ``known_address_days``,
  so an attacker cannot lock the real Web Connector out;
* the slow argon2 check runs outside any database transaction, so failed
  logins cannot hold SQLite's write lock, and correct logins are remembered
  briefly (``passwords.CredentialCache``) so that polling stays cheap;
* every result is written to ``auth_events``, and failures and lockouts are
  logged as security events on the ``qwc_service.security`` logger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import metrics
from .config import Settings
from .models import AuthCounter, AuthEvent, AuthResultKind, Connection, as_utc
from .passwords import CredentialCache, Passwords

security_log = logging.getLogger("qwc_service.security")

# Statements that run on every poll, built once (building them costs more than running them).
#: What a login needs of its connection, read with Core: the every-minute
#: poll builds no ORM objects at all unless it opens a session.
_LOGIN_COLUMNS = (Connection.id, Connection.name, Connection.password_hash, Connection.enabled,
                  Connection.always_open, Connection.min_run_every_seconds, Connection.company_file)
_CONNECTION_BY_USER = select(*_LOGIN_COLUMNS).where(Connection.username == bindparam("username"))
_CONNECTION_FOR_UPDATE = select(*_LOGIN_COLUMNS).where(Connection.id == bindparam("id")).with_for_update()
_COUNTERS = select(AuthCounter.scope, AuthCounter.locked_until).where(
    AuthCounter.scope.in_(bindparam("scopes", expanding=True)))
_INSERT_EVENT = insert(AuthEvent)

#: Results that prove an address belongs to the real Web Connector.
_SUCCESSES = (AuthResultKind.OK.value, AuthResultKind.NONE.value, AuthResultKind.BUSY.value)


@dataclass(frozen=True)
class Candidate:
    """What the database says about a login attempt before the password is checked."""

    username: str
    client_address: str
    connection_id: int | None
    connection_name: str
    stored_hash: str | None
    enabled: bool
    locked: bool
    #: Failures of this address against this connection are on record (cleared on success).
    has_pair_record: bool = False
    #: The connection's login columns (``_LOGIN_COLUMNS``) as read in the look-up.
    row: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Check:
    """The outcome of the password check (made outside any transaction)."""

    valid: bool
    detail: str
    #: A fresh hash when the stored one was made with outdated parameters.
    new_hash: str | None = None


class Gatekeeper:
    def __init__(self, settings: Settings, passwords: Passwords) -> None:
        self.settings = settings
        self.passwords = passwords
        self.cache = CredentialCache(settings.credential_cache_seconds)

    # -- step 1: look up (short transaction) ---------------------------------

    def look_up(self, db: Session, username: str, client_address: str, now: datetime) -> Candidate:
        connection = db.connection().execute(_CONNECTION_BY_USER, {"username": username}).first() \
            if username else None
        scopes = [_address_scope(client_address)]
        if connection is not None:
            scopes += [_pair_scope(connection.id, client_address), _connection_scope(connection.id)]
        # Core, not ORM: this runs on every poll and needs no objects.
        counters = db.connection().execute(_COUNTERS, {"scopes": scopes}).all()
        return Candidate(
            username=username,
            client_address=client_address,
            connection_id=connection.id if connection else None,
            connection_name=connection.name if connection else "",
            stored_hash=connection.password_hash if connection else None,
            enabled=bool(connection and connection.enabled),
            locked=self._is_locked(db, connection, client_address, now, counters),
            has_pair_record=any(c.scope == _pair_scope(connection.id, client_address) for c in counters)
            if connection is not None else False,
            row=connection,
        )

    def _is_locked(
        self, db: Session, connection: Connection | None, address: str, now: datetime, counters: Sequence[Any]
    ) -> bool:
        for counter in counters:
            locked_until = as_utc(counter.locked_until)
            if locked_until is None or locked_until <= now:
                continue
            if counter.scope != _connection_scope(getattr(connection, "id", -1)):
                return True
            if connection is not None and not self._is_known_address(db, connection.id, address, now):
                return True
        return False

    def _is_known_address(self, db: Session, connection_id: int, address: str, now: datetime) -> bool:
        since = now - timedelta(days=self.settings.known_address_days)
        return (
            db.scalar(
                select(AuthEvent.id)
                .where(
                    AuthEvent.connection_id == connection_id,
                    AuthEvent.client_address == address,
                    AuthEvent.at >= since,
                    AuthEvent.result.in_(_SUCCESSES),
                )
                .limit(1)
            )
            is not None
        )

    def target(self, db: Session, candidate: Candidate, *, looked_up_here: bool) -> Any:
        """The connection's login columns again, locked for this transaction, or None if it is gone.

        SQLite's transactions already hold the whole database (``BEGIN
        IMMEDIATE``), so a look-up made in this same transaction is current
        and is reused; PostgreSQL re-reads with ``FOR UPDATE`` so that two
        processes cannot both open a session.
        """
        if candidate.connection_id is None:
            return None
        if looked_up_here and candidate.row is not None and db.get_bind().dialect.name == "sqlite":
            return candidate.row
        return db.connection().execute(_CONNECTION_FOR_UPDATE, {"id": candidate.connection_id}).first()

    # -- step 2: the password (no transaction) -------------------------------

    def remembered(self, candidate: Candidate, password: str) -> bool:
        """The fast path: this exact login was verified moments ago (no argon2, no wait)."""
        return (candidate.enabled and candidate.connection_id is not None and candidate.stored_hash is not None
                and (candidate.connection_id, candidate.stored_hash, password) in self.cache)

    def check_password(self, candidate: Candidate, password: str) -> Check:
        """Verify in constant time; the same argon2 work whatever the reason for failing."""
        if candidate.connection_id is None or candidate.stored_hash is None:
            self.passwords.verify(None, password)
            return Check(False, "unknown user")
        key = (candidate.connection_id, candidate.stored_hash, password)
        if candidate.enabled and key in self.cache:
            return Check(True, "")
        if not self.passwords.verify(candidate.stored_hash, password):
            return Check(False, "wrong password")
        if not candidate.enabled:
            return Check(False, "connection disabled")
        new_hash = None
        if self.passwords.needs_rehash(candidate.stored_hash):
            new_hash = self.passwords.hash(password)
            self.cache.remember(candidate.connection_id, new_hash, password)
        else:
            self.cache.remember(*key)
        return Check(True, "", new_hash)

    # -- step 3: record (the transaction that also opens the session) ---------

    def record(
        self, db: Session, candidate: Candidate, result: AuthResultKind, now: datetime, detail: str = ""
    ) -> None:
        db.connection().execute(  # Core insert: the unit of work costs more than the row
            _INSERT_EVENT,
            {"at": now, "connection_id": candidate.connection_id, "client_address": candidate.client_address[:64],
             "result": result.value, "detail": detail[:255]},
        )
        if result is AuthResultKind.LOCKED:
            security_log.warning(
                "login refused, locked out: connection=%s address=%s",
                candidate.connection_name or "(unknown user)",
                candidate.client_address or "unknown",
            )

    def fail(self, db: Session, candidate: Candidate, now: datetime, detail: str) -> None:
        """Record a failed login and lock out whatever scope it pushed over its limit."""
        self.record(db, candidate, AuthResultKind.NVU, now, detail)
        security_log.warning(
            "login failed: connection=%s address=%s reason=%s",
            candidate.connection_name or "(unknown user)",
            candidate.client_address or "unknown",
            detail,
        )
        address = candidate.client_address
        scopes = [(_address_scope(address), None, self.settings.lockout_failures)]
        if candidate.connection_id is not None:
            scopes += [
                (_pair_scope(candidate.connection_id, address), candidate.connection_id, self.settings.lockout_failures),
                (_connection_scope(candidate.connection_id), candidate.connection_id,
                 self.settings.lockout_connection_failures),
            ]
        for scope, connection_id, limit in scopes:
            self._count(db, scope, connection_id, address, limit, now, candidate.connection_name)

    def _count(
        self, db: Session, scope: str, connection_id: int | None, address: str, limit: int, now: datetime,
        connection_name: str,
    ) -> None:
        dialect = db.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        db.execute(
            insert(AuthCounter)
            .values(scope=scope, connection_id=connection_id, client_address=address[:64], failures=0,
                    window_started_at=now, level=0, updated_at=now)
            .on_conflict_do_nothing(index_elements=["scope"])
        )
        counter = db.scalar(select(AuthCounter).where(AuthCounter.scope == scope).with_for_update())
        assert counter is not None
        window = timedelta(seconds=self.settings.lockout_window_seconds)
        if now - counter.window_started_at > window:
            counter.failures, counter.window_started_at = 0, now
        counter.failures += 1
        counter.updated_at = now
        if counter.failures < limit:
            return
        recently_locked = counter.locked_until is not None and now - counter.locked_until < timedelta(days=1)
        counter.level = counter.level + 1 if recently_locked else 1
        seconds = min(self.settings.lockout_max_seconds, self.settings.lockout_window_seconds * 2 ** (counter.level - 1))
        counter.locked_until = now + timedelta(seconds=seconds)
        counter.failures, counter.window_started_at = 0, now
        metrics.LOCKOUTS.labels(scope.split(":")[0] if scope.startswith("addr") or ":addr:" not in scope
                                else "conn-addr").inc()
        security_log.warning(
            "lockout: scope=%s connection=%s address=%s for %ss (lockout %d in a row)",
            scope, connection_name or "-", address or "unknown", seconds, counter.level,
        )

    def succeed(self, db: Session, candidate: Candidate, check: Check) -> None:
        """A good login clears that address's own record against this connection."""
        assert candidate.connection_id is not None
        if candidate.has_pair_record:
            db.execute(delete(AuthCounter).where(AuthCounter.scope == _pair_scope(candidate.connection_id,
                                                                                     candidate.client_address)))
        if check.new_hash is not None:
            connection = db.get(Connection, candidate.connection_id)
            if connection is not None and connection.password_hash == candidate.stored_hash:
                connection.password_hash = check.new_hash


def unlock(db: Session, connection: Connection, now: datetime, window_seconds: int) -> int:
    """Lift every lockout touching a connection; returns how many were lifted.

    That is the connection's own counters and those of every address that
    failed against it recently (an address lockout counts all users).
    """
    since = now - timedelta(seconds=window_seconds)
    addresses = set(
        db.scalars(
            select(AuthEvent.client_address).where(
                AuthEvent.connection_id == connection.id,
                AuthEvent.at >= since,
                AuthEvent.result.in_([AuthResultKind.NVU.value, AuthResultKind.LOCKED.value]),
            )
        )
    )
    scopes = [_address_scope(a) for a in addresses]
    result = db.execute(
        delete(AuthCounter).where((AuthCounter.connection_id == connection.id) | AuthCounter.scope.in_(scopes))
    )
    return int(result.rowcount or 0)


def lockouts(db: Session, connection: Connection, now: datetime) -> list[AuthCounter]:
    """Active lockouts of a connection's scopes."""
    return list(
        db.scalars(
            select(AuthCounter).where(AuthCounter.connection_id == connection.id, AuthCounter.locked_until > now)
        )
    )


def recent_events(db: Session, connection: Connection, limit: int = 20) -> list[AuthEvent]:
    return list(
        db.scalars(
            select(AuthEvent).where(AuthEvent.connection_id == connection.id).order_by(AuthEvent.id.desc()).limit(limit)
        )
    )


def prune_events(db: Session, older_than: datetime) -> int:
    """Drop authentication events from before ``older_than``; returns how many.

    Every poll writes one (30,000 company files polling each minute write 43
    million a day), so the audit trail must be trimmed. Each connection keeps
    its newest success from every address: that row is the memory of the
    real Web Connector's address (which a connection-wide lockout spares)
    and of its last poll (which the status page shows), whatever its age.
    """
    newest_successes = (
        select(func.max(AuthEvent.id))
        .where(AuthEvent.connection_id.is_not(None), AuthEvent.result.in_(_SUCCESSES))
        .group_by(AuthEvent.connection_id, AuthEvent.client_address)
    )
    result = db.execute(
        delete(AuthEvent)
        .where(AuthEvent.at < older_than, AuthEvent.id.not_in(newest_successes.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def _address_scope(address: str) -> str:
    return f"addr:{address}"[:200]


def _pair_scope(connection_id: int, address: str) -> str:
    return f"conn:{connection_id}:addr:{address}"[:200]


def _connection_scope(connection_id: int) -> str:
    return f"conn:{connection_id}"

