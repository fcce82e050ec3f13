"""Session reports: a transcript people can read, and the same as JSON-able data.

The human form answers the questions one has after a sync went wrong: what
did QBWC ask, what did the server answer, what did QuickBooks say to each
request, how far did it get, and what would the user see in QBWC's status
column. The data form carries everything, unshortened, for tools.
"""

from __future__ import annotations

from typing import Any

from .connector import Call, Exchange, SessionResult
from .documents import QbxmlSyntaxError, read_responses, summarize_request

_AUTH_MEANING = {
    "": "use the company file open in QuickBooks",
    "none": "nothing to do",
    "nvu": "not a valid user",
    "busy": "busy, try later",
}


def format_transcript(result: SessionResult) -> str:
    """A numbered, one-line-per-call account of the session, ending with the status QBWC shows."""
    exchanges = {exchange.call_index: exchange for exchange in result.exchanges}
    lines: list[str] = []
    for index, call in enumerate(result.transcript):
        asked = f"{call.operation}{_parameters(call)}"
        timing = f"HTTP {call.http_status}, {call.duration * 1000:.0f} ms" if call.http_status else "no answer"
        lines.append(f"{index + 1:>3}  {asked:<44} → {_answer(call)}  ({timing})")
        if index in exchanges:
            lines.append(f"     QuickBooks: {_quickbooks(exchanges[index])}")
    lines.append(f"Outcome: {result.outcome.value}")
    lines.append(f"QBWC shows: {result.final_status}")
    return "\n".join(lines)


def result_to_dict(result: SessionResult) -> dict[str, Any]:
    """Everything in the result as plain lists, dicts, strings and numbers (for ``json.dumps``)."""
    return {
        "outcome": result.outcome.value,
        "final_status": result.final_status,
        "ticket": result.ticket,
        "close_message": result.close_message,
        "calls": [
            {
                "operation": call.operation,
                "parameters": dict(call.parameters),
                "answer": list(call.answer) if isinstance(call.answer, tuple) else call.answer,
                "fault": {"code": call.fault.code, "message": call.fault.message} if call.fault else None,
                "error": call.error,
                "http_status": call.http_status,
                "duration_ms": round(call.duration * 1000, 1),
                "local_port": call.local_port,
            }
            for call in result.transcript
        ],
        "exchanges": [
            {
                "number": exchange.number,
                "call_index": exchange.call_index,
                "request": exchange.request,
                "response": exchange.result.response,
                "hresult": exchange.result.hresult,
                "message": exchange.result.message,
                "detail": exchange.result.detail,
            }
            for exchange in result.exchanges
        ],
    }


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parameters(call: Call) -> str:
    p = call.parameters
    if call.operation == "clientVersion":
        return f" {p.get('strVersion', '')}"
    if call.operation == "authenticate":
        return f" {p.get('strUserName', '')} / {p.get('strPassword', '')}"
    if call.operation == "sendRequestXML":
        return " (with first-call response)" if p.get("strHCPResponse") else ""
    if call.operation in ("receiveResponseXML", "connectionError") and p.get("hresult"):
        return f" {p['hresult']} {_short(p.get('message', ''), 30)!r}"
    return ""


def _answer(call: Call) -> str:
    if call.fault is not None:
        return f"SOAP fault {call.fault.code}: {_short(call.fault.message)!r}"
    if call.error is not None:
        return f"failed: {_short(call.error)}"
    answer = call.answer
    if isinstance(answer, tuple):
        ticket, status = (*answer, "", "")[:2]
        meaning = _AUTH_MEANING.get(status.lower(), "open this company file")
        extra = f", postpone {answer[2]} s" if len(answer) > 2 and answer[2] else ""
        return f"ticket {_short(ticket, 13)!r}, status {status!r} ({meaning}){extra}"
    if isinstance(answer, int):
        return f"{answer}%" if answer >= 0 else f"{answer} (error: QBWC asks getLastError)"
    if call.operation == "sendRequestXML":
        return _requests(answer or "")
    if call.operation == "getLastError" and answer == "NoOp":
        return "'NoOp' (wait, then ask again)"
    return repr(_short(answer or ""))


def _requests(request: str) -> str:
    if not request:
        return "'' (nothing to send: QBWC asks getLastError)"
    try:
        summary = summarize_request(request)
    except QbxmlSyntaxError as exc:
        return f"unreadable qbXML ({_short(str(exc), 50)})"
    names = ", ".join(f"{name}#{rid}" if rid else name for name, rid in summary.requests)
    return f"{names} ({summary.on_error or 'no onError'})"


def _quickbooks(exchange: Exchange) -> str:
    result = exchange.result
    if not result.ok:
        detail = f" [{_short(result.detail, 60)}]" if result.detail else ""
        return f"HRESULT {result.hresult} {_short(result.message, 60)!r}{detail}"
    parts = []
    for rs in read_responses(result.response):
        label = f"{rs.type}#{rs.request_id}" if rs.request_id else rs.type
        rows = f", {len(rs.records)} record(s)" if rs.records else ""
        more = f", {rs.iterator_remaining_count} more" if rs.iterator_remaining_count else ""
        parts.append(f"{label} {rs.status_code} {rs.status_severity} {_short(rs.status_message, 70)!r}{rows}{more}")
    return "; ".join(parts)
