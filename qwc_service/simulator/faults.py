"""Fault injection: rules that make QuickBooks or the Web Connector misbehave on cue.

A :class:`Faults` object is a list of small frozen rules. Each rule says *what*
goes wrong (a qbXML status code, an HRESULT, a slow answer, QuickBooks that
will not open, a dropped connection, a crashed connector) and *when*: for
requests whose type matches ``request`` (shell-style patterns such as
``"CustomerAdd"`` or ``"*Add"``), on request document number ``call`` of the
session (1-based; the N-th qbXML document handed to QuickBooks), and at most
``times`` times (``None``: every time).

Why rules rather than flags: a real failure is usually "the third request of
the night hit a permission problem", and the server's recovery depends on
exactly that position, so the position must be expressible. Why one object for
both QuickBooks and Web Connector faults: a scenario is a single thing to hand
over, and the connector passes the same object to the QuickBooks session it
opens.

The counters of fired rules live in :class:`Faults`, not in the rules, so a
rule stays a plain value that can be printed, compared and reused;
:meth:`Faults.reset` re-arms everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal, TypeVar

Severity = Literal["Info", "Warn", "Error"]

#: Request patterns for everything that changes the company file. Intended for
#: ``request=WRITE_REQUESTS`` ("the first write fails"), matching the rough
#: read/write split QuickBooks' permission areas make.
WRITE_REQUESTS: tuple[str, ...] = ("*Add", "*Mod", "*Del", "*Void")


@dataclass(frozen=True, kw_only=True)
class _Rule:
    #: How often the rule fires; ``None`` means every time it matches.
    times: int | None = 1


@dataclass(frozen=True, kw_only=True)
class _RequestRule(_Rule):
    #: Request type pattern(s) without the ``Rq`` suffix, e.g. ``"CustomerAdd"``,
    #: ``"*Query"`` or :data:`WRITE_REQUESTS`.
    request: str | tuple[str, ...] = "*"
    #: Only on the N-th request document of the session (1-based).
    call: int | None = None

    def matches(self, request_types: tuple[str, ...], call: int) -> bool:
        if self.call is not None and self.call != call:
            return False
        patterns = (self.request,) if isinstance(self.request, str) else self.request
        if patterns == ("*",):
            return True
        return any(fnmatchcase(t, p) for t in request_types for p in patterns)


@dataclass(frozen=True, kw_only=True)
class StatusFault(_RequestRule):
    """Answer one matching ``…Rq`` with this status instead of executing it.

    The request is *not* performed (a 3260 means nothing was written), and an
    Error severity counts as a failure for ``onError``. Message and severity
    default to what QuickBooks says for the code.
    """

    code: int
    message: str | None = None
    severity: Severity | None = None


@dataclass(frozen=True, kw_only=True)
class HresultFault(_RequestRule):
    """ProcessRequest fails for the whole document: empty response, HRESULT set.

    Matches when any request in the document matches ``request``.
    """

    hresult: str
    message: str | None = None


@dataclass(frozen=True, kw_only=True)
class SlowFault(_RequestRule):
    """QuickBooks takes ``seconds`` before answering (to exercise timeouts)."""

    seconds: float


@dataclass(frozen=True, kw_only=True)
class OpenFault(_Rule):
    """QuickBooks cannot be opened; the connector reports it through connectionError.

    Each open attempt (the first and every retry the server asks for) consumes
    one firing, so ``times=1`` means "the retry works" and ``times=None``
    means "QuickBooks never starts".
    """

    hresult: str = "0x80040408"
    message: str | None = None


@dataclass(frozen=True, kw_only=True)
class DropFault(_RequestRule):
    """The connector closes the socket right after reading the sendRequestXML answer.

    The request never reaches QuickBooks and no receiveResponseXML follows:
    what a network failure or a user pressing Stop looks like to the server.
    """


@dataclass(frozen=True, kw_only=True)
class CrashFault(_RequestRule):
    """The connector dies after QuickBooks performed the request.

    Unlike :class:`DropFault`, the company file *has* changed, but the server
    never hears about it: no receiveResponseXML, no further calls. This is the
    case that duplicates writes when a server retries blindly.
    """


Fault = StatusFault | HresultFault | SlowFault | OpenFault | DropFault | CrashFault
F = TypeVar("F", StatusFault, HresultFault, SlowFault, OpenFault, DropFault, CrashFault)


class Faults:
    """An ordered set of fault rules plus how often each has fired.

    ``Faults()`` is "nothing goes wrong". Rules are checked in the order given;
    the first unexhausted match wins.
    """

    def __init__(self, *rules: Fault) -> None:
        self.rules: tuple[Fault, ...] = rules
        self._fired: list[int] = [0] * len(rules)

    def __repr__(self) -> str:
        return f"Faults{self.rules!r}"

    def __bool__(self) -> bool:
        return bool(self.rules)

    def reset(self) -> None:
        """Re-arm every rule, e.g. before running the same scenario again."""
        self._fired = [0] * len(self.rules)

    def take(self, kind: type[F], request_types: tuple[str, ...] = (), call: int = 0) -> F | None:
        """Return and consume the first rule of ``kind`` that applies now, if any.

        ``request_types`` are the request names without ``Rq`` (one for a
        per-request rule, all of the document's for a per-document rule);
        ``call`` is the request document number within the session.
        """
        for index, rule in enumerate(self.rules):
            if not isinstance(rule, kind):
                continue
            if rule.times is not None and self._fired[index] >= rule.times:
                continue
            if isinstance(rule, _RequestRule) and not rule.matches(request_types, call):
                continue
            self._fired[index] += 1
            return rule
        return None
