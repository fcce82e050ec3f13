"""Password hashing for the sync users, with argon2id.

Every verification costs the same whether or not the user exists: unknown
users are checked against a dummy hash made with the same parameters, so the
answer time does not reveal which user names are real.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .config import Settings


@dataclass
class Passwords:
    time_cost: int = 3
    memory_cost: int = 65536
    parallelism: int = 4
    _hasher: PasswordHasher = field(init=False, repr=False)
    _dummy_hash: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._hasher = PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_cost,
            parallelism=self.parallelism,
            type=Type.ID,
        )
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def from_settings(cls, settings: Settings) -> "Passwords":
        return cls(settings.argon2_time_cost, settings.argon2_memory_cost, settings.argon2_parallelism)

    def hash(self, password: str) -> str:
        if not password:
            raise ValueError("the password is empty")
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check a password in constant time; ``None`` means "no such user"."""
        try:
            self._hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True


class CredentialCache:
    """Remembers, for a few minutes, that a user name and password were right.

    The Web Connector logs in on every scheduled run, often every minute, and
    argon2 is deliberately slow. A correct login is remembered only as an
    HMAC (keyed with a random per-process secret) of the connection, its
    current hash and the password, so a memory dump reveals no password and a
    changed password or hash invalidates the entry. Wrong passwords are never
    remembered: they always take the slow path and count toward lockout.
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 50_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._secret = secrets.token_bytes(32)
        self._entries: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def _key(self, connection_id: int, stored_hash: str, password: str) -> bytes:
        message = f"{connection_id}\0{stored_hash}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def __contains__(self, item: tuple[int, str, str]) -> bool:
        if self.ttl <= 0:
            return False
        key = self._key(*item)
        with self._lock:
            expires = self._entries.get(key)
            if expires is None:
                return False
            if expires < time.monotonic():
                del self._entries[key]
                return False
            return True

    def remember(self, connection_id: int, stored_hash: str, password: str) -> None:
        if self.ttl <= 0:
            return
        key = self._key(connection_id, stored_hash, password)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v >= now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = time.monotonic() + self.ttl

    def forget_all(self) -> None:
        with self._lock:
            self._entries.clear()
