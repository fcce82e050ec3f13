"""The errors qwc-service raises on purpose.

Each carries a message written for the person who caused it (an integrator,
an operator at the CLI); the CLI prints it as one line and exits non-zero.
"""

from __future__ import annotations


class QwcError(Exception):
    """Base of every deliberate qwc-service error."""


class InvalidInput(QwcError, ValueError):
    """Input we refuse: the message says what is wrong and where."""


class NotFound(QwcError, LookupError):
    """A named connection or job does not exist."""
