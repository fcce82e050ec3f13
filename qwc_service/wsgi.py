"""The WSGI application: routes, limits and the guarantee of no tracebacks.

Spyne answers the SOAP calls; this layer decides what reaches it. It refuses
oversized bodies before reading them, serves the WSDL renamed to Intuit's
names, answers the plain GET that QBWC sends to check the certificate, and
turns anything unexpected into a SOAP fault (for /qbwc) or a short text
error, logging the traceback on the server only. Request bodies are never
logged.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import tempfile
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from lxml import etree
from spyne.server.wsgi import WsgiApplication
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .api import make_api
from . import envelopes, health, metrics
from .config import ConfigError, Settings
from .conversation import Conversation
from .soap import build_wsdl, fault_envelope, make_application
from .status_page import make_status_app

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"
#: Request bodies are read and parsed this much at a time.
READ_CHUNK = 1024 * 1024
#: A request body is kept in memory up to this size, on disk beyond it (only for Spyne's sake).
SPOOL_IN_MEMORY = 4 * 1024 * 1024
#: The fault for a large call of an unusual shape when that copy could not be kept.
TEMP_FULL = ("The server could not store this request temporarily (its temporary directory is full or "
             "read-only); the server log says where. Try again once it has room.")

# Spyne logs whole request documents at DEBUG and offending values in
# validation errors; never let that reach a handler. Our own code logs what
# matters (qwc_service.soap logs unexpected errors with their traceback).
logging.getLogger("spyne").setLevel(logging.CRITICAL + 1)

ABOUT_TEXT = (
    "qwc-service: QuickBooks Web Connector endpoint.\n"
    "Point the Web Connector at this URL with a .qwc file; SOAP tooling can read ?wsdl.\n"
)
SUPPORT_TEXT = (
    "qwc-service connects QuickBooks Desktop to other applications through the "
    "QuickBooks Web Connector.\nAsk the person who gave you the .qwc file for help with this "
    "connection; they can see its jobs and errors with 'qwc-service jobs'.\n"
)


class QwcApplication:
    """The whole HTTP surface of the service as one WSGI callable."""

    def __init__(self, conversation: Conversation, settings: Settings | None = None) -> None:
        self.settings = settings or conversation.settings
        self.conversation = conversation
        bind = conversation.db.kw.get("bind")
        assert bind is not None, "the conversation's sessionmaker must be bound to an engine"
        self.engine = bind
        self.soap = WsgiApplication(
            make_application(conversation),
            max_content_length=self.settings.max_body_bytes,
            block_length=1024 * 1024,
        )
        #: Answer QBWC-shaped calls without Spyne (switched off only to compare the two).
        self.direct_calls = True
        self._trusted_proxies = parse_networks(self.settings.trusted_proxies)
        self._wsdl: dict[str, bytes] = {}
        self._wsdl_lock = threading.Lock()
        self.api = make_api(conversation.db, self.settings, conversation.clock)
        self.status = make_status_app(conversation.db, self.settings, conversation.clock)
        self.url_map = Map(
            [
                Rule("/api/<path:rest>", endpoint="api"),
                Rule("/qbwc", endpoint="qbwc", strict_slashes=False),
                Rule("/support", endpoint="support"),
                Rule("/healthz", endpoint="healthz"),
                Rule("/readyz", endpoint="readyz"),
                Rule("/metrics", endpoint="metrics"),
                Rule("/status", endpoint="status"),
                Rule("/", endpoint="about"),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._dispatch(environ, start_response)
        except Exception:  # the last line of defence: never a traceback to a client
            log.exception("unexpected error answering %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            return self._soap_fault("Server", envelopes.INTERNAL_ERROR, 500)(
                environ, start_response
            )

    def _dispatch(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/qbwc":  # every poll: skip the router
            return self._qbwc(environ, start_response)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            endpoint, _ = adapter.match()
        except NotFound:
            return Response("Not found.\n", status=404, mimetype="text/plain")(environ, start_response)
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return exc(environ, start_response)
        if endpoint == "qbwc":
            return self._qbwc(environ, start_response)
        if endpoint == "api":  # JSON errors of its own, whatever the method
            return self.api(environ, start_response)
        if endpoint == "status":  # its own auth, methods and headers
            return self.status(environ, start_response)
        if endpoint == "metrics":
            return self._metrics(environ, start_response)
        if endpoint == "readyz":
            ready, reason = health.readiness(self.engine)
            return Response(reason + "\n", status=200 if ready else 503, mimetype="text/plain")(
                environ, start_response)
        text = {"support": SUPPORT_TEXT, "about": ABOUT_TEXT, "healthz": "ok\n"}[endpoint]
        return Response(text, mimetype="text/plain")(environ, start_response)

    def _qbwc(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method in ("GET", "HEAD"):
            request = Request(environ)
            if "wsdl" in {k.lower() for k in request.args}:
                url = request.base_url
                return Response(self._wsdl_for(url), content_type=SOAP_CONTENT_TYPE)(environ, start_response)
            # QBWC GETs the AppURL to check the certificate: it must answer 200.
            return Response(ABOUT_TEXT, mimetype="text/plain")(environ, start_response)
        if method != "POST":
            return self._soap_fault("Client", f"{method} is not supported; SOAP calls use POST.", 405)(
                environ, start_response
            )
        length = environ.get("CONTENT_LENGTH") or ""
        if length.strip():
            try:
                declared = int(length)
            except ValueError:
                return self._soap_fault("Client", "Content-Length is not a number.", 400)(environ, start_response)
            if declared > self.settings.max_body_bytes:
                return self._soap_fault(
                    "Client",
                    f"The request body ({declared} bytes) is larger than this server accepts "
                    f"({self.settings.max_body_bytes} bytes; see QWC_MAX_BODY_BYTES).",
                    413,
                )(environ, start_response)
            if declared == 0:
                return self._soap_fault("Client", "The request body is empty.", 400)(environ, start_response)
        if not environ.get("CONTENT_TYPE"):
            # Spyne refuses a missing content type with a bare 405; QBWC always sends one.
            environ["CONTENT_TYPE"] = SOAP_CONTENT_TYPE
        environ["qwc.client_address"] = client_address(environ, self._trusted_proxies)
        return self._timed_soap(environ, start_response)

    def _timed_soap(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer the call, counting it by operation (from QBWC's SOAPAction) and outcome.

        A call in QBWC's own shape is answered directly (``qwc_service.envelopes``);
        anything else goes to Spyne with its body untouched.
        """
        operation = _operation(environ.get("HTTP_SOAPACTION", ""))
        started = time.perf_counter()
        direct = self._direct(environ) if self.direct_calls else None
        if direct is not None:
            code, payload = direct
            start_response(code, [("Content-Type", SOAP_CONTENT_TYPE), ("Content-Length", str(len(payload)))])
            body: Iterable[bytes] = [payload]
            status = [code]
        else:
            status = []

            def recording_start_response(code: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                status.append(code)
                return start_response(code, headers, *exc)

            body = self.soap(environ, recording_start_response)
        seconds, size, ok_calls, faults = _call_metrics(operation)
        seconds.observe(time.perf_counter() - started)
        size.observe(float(environ.get("CONTENT_LENGTH") or 0))
        (ok_calls if status and status[0].startswith("200") else faults).inc()
        return body

    def _direct(self, environ: dict[str, Any]) -> tuple[str, bytes] | None:
        """Answer a QBWC-shaped call without Spyne, or leave it (body intact) for Spyne.

        The body is fed to the parser as it arrives, so a 100 MB answer is never
        held whole as bytes next to its tree; a copy is spooled (to disk past
        ``SPOOL_IN_MEMORY``) only so that Spyne can have it if the shape is not ours.
        """
        try:
            remaining = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        stream = environ["wsgi.input"]
        spool: Any = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        parser: Any = envelopes.new_parser()
        while remaining > 0:
            chunk = stream.read(min(remaining, READ_CHUNK))
            if not chunk:
                break
            remaining -= len(chunk)
            if spool is not None:
                try:
                    spool.write(chunk)
                except OSError as exc:  # the temporary directory is full or read-only: no fallback copy
                    log.error("could not keep a copy of a %s-byte request in %s (%s); only QBWC-shaped "
                              "calls can be answered until it has room", environ.get("CONTENT_LENGTH"),
                              tempfile.gettempdir(), exc)
                    spool.close()
                    spool = None
            if parser is not None:
                try:
                    parser.feed(chunk)
                except etree.XMLSyntaxError:
                    parser = None
        call = None
        if parser is not None and remaining == 0:
            try:
                call = envelopes.read_call(parser.close())
            except etree.XMLSyntaxError:
                pass
        parser = None  # the tree goes now: the call holds plain strings
        if call is None and spool is None:
            return "500 Internal Server Error", envelopes.fault("Server", TEMP_FULL)
        if call is None:
            spool.seek(0)
            environ["wsgi.input"] = spool
            return None
        if spool is not None:
            spool.close()
        try:
            result = envelopes.perform(self.conversation, call, environ["qwc.client_address"])
            return "200 OK", envelopes.answer(call.operation, result)
        except Exception:
            log.exception("error answering %s", call.operation)
            return "500 Internal Server Error", envelopes.fault("Server", envelopes.INTERNAL_ERROR)

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        token = self.settings.metrics_token
        if token:
            given = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {token}".encode()):
                return Response("metrics need 'Authorization: Bearer <QWC_METRICS_TOKEN>'\n", status=401,
                                mimetype="text/plain", headers={"WWW-Authenticate": "Bearer"})(environ, start_response)
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.exposition(self.conversation.db), content_type=CONTENT_TYPE_LATEST)(
            environ, start_response)

    def _wsdl_for(self, url: str) -> bytes:
        with self._wsdl_lock:
            if url not in self._wsdl:
                if len(self._wsdl) > 16:  # bounded: the Host header is client-controlled
                    self._wsdl.clear()
                self._wsdl[url] = build_wsdl(self.soap.app, url)
            return self._wsdl[url]

    @staticmethod
    def _soap_fault(code: str, message: str, status: int) -> Response:
        return Response(fault_envelope(code, message), status=status, content_type=SOAP_CONTENT_TYPE)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


_OPERATIONS = frozenset({"serverVersion", "clientVersion", "authenticate", "sendRequestXML", "receiveResponseXML",
                         "connectionError", "getLastError", "closeConnection", "getInteractiveURL",
                         "interactiveDone", "interactiveRejected"})


@functools.cache
def _call_metrics(operation: str) -> tuple[Any, Any, Any, Any]:
    """The labelled metric children of an operation, looked up once (labels() costs more than observing)."""
    return (metrics.SOAP_SECONDS.labels(operation), metrics.SOAP_BYTES.labels(operation),
            metrics.SOAP_CALLS.labels(operation, "ok"), metrics.SOAP_CALLS.labels(operation, "fault"))


def _operation(soap_action: str) -> str:
    """The operation named by a SOAPAction header, or "other" (labels must stay a small set)."""
    name = soap_action.strip().strip('"').rsplit("/", 1)[-1]
    return name if name in _OPERATIONS else "other"


def parse_networks(text: str) -> list[Network]:
    """``"10.0.0.1, 192.168.0.0/16"`` → networks; a bad entry is a configuration error."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"QWC_TRUSTED_PROXIES: {item!r} is not an address or network") from None
    return networks


def client_address(environ: dict[str, Any], trusted: Sequence[Network]) -> str:
    """The caller's address, believing X-Forwarded-For only from trusted proxies.

    Walks the header from the right (the hop nearest us) and stops at the
    first address that is not a trusted proxy: anything further left was
    written by the client and could be forged to dodge lockouts.
    """
    address = environ.get("REMOTE_ADDR", "") or ""
    if not trusted or not _is_trusted(address, trusted):
        return address
    hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop[:64]
        address = hop
    return address


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
