"""The integrator's HTTP JSON API under ``/api/v1``.

Integrators put qbXML jobs on the queue and read their results over HTTP,
with a bearer token (see ``tokens``). Every answer is JSON, errors included:
``{"error": {"code": "<stable code>", "message": "<for people>"}}``, never an
HTML page or a traceback. The codes are a contract (programs branch on them);
messages may improve.

The queue rules live in ``queue`` and ``QueueClient``; this module only
translates HTTP to those calls and back, and enforces the token's scope. A
token scoped to one connection gets ``404`` for anything of another
connection, with the very message a nonexistent job or connection gets, so it
cannot even learn what exists outside its scope.

``OPENAPI`` describes exactly what is served here; ``tests/test_api.py``
checks the routes, the status codes and the response bodies against it.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import __version__, tokens, webhooks
from .client import JobInfo, QueueClient
from .config import Settings
from .exceptions import InvalidInput, NotFound
from .models import Job, JobState, WebhookDelivery
from .qbxml import QbxmlError
from .queue import MAX_BATCH, NewJob, TransitionRefused
from .tokens import Principal

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

PREFIX = "/api/v1"
#: Largest request body read (a qbXML request is rarely over a few hundred KB).
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500
#: Ids and numbers are 32-bit integers in the database.
MAX_INT = 2**31 - 1

#: Every error code the API answers with, and its HTTP status.
ERROR_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "invalid_qbxml": 422,
    "internal_error": 500,
}

CREATE_FIELDS = ("qbxml", "priority", "after", "key", "replace", "not_before", "page_size", "webhook_url")


class ApiError(Exception):
    """An answer other than success, with its stable code."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        response = _json({"error": {"code": self.code, "message": self.message}}, ERROR_STATUS[self.code])
        response.headers.update(self.headers)
        return response


def _json(data: Any, status: int = 200) -> Response:
    response = Response(json.dumps(data, ensure_ascii=False), status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"  # job data is private to the token holder
    return response


def _engine_of(db: sessionmaker[Session]) -> Any:
    bind = db.kw.get("bind")
    if bind is None:
        raise ValueError("make_api needs a sessionmaker bound to an engine")
    return bind


class Api:
    """The WSGI application; build it with ``make_api``."""

    def __init__(
        self,
        db: sessionmaker[Session],
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.client = QueueClient(engine=_engine_of(db), migrate=False, clock=clock)
        job = "<int(min=1, max=2147483647):job_id>"
        self.url_map = Map(
            [
                Rule(f"{PREFIX}/openapi.json", endpoint="getOpenApi", methods=["GET"]),
                Rule(f"{PREFIX}/connections/<name>/jobs", endpoint="createJob", methods=["POST"]),
                Rule(f"{PREFIX}/connections/<name>/jobs/batch", endpoint="createJobs", methods=["POST"]),
                Rule(f"{PREFIX}/connections/<name>/queue", endpoint="getQueueSummary", methods=["GET"]),
                Rule(f"{PREFIX}/jobs", endpoint="listJobs", methods=["GET"]),
                Rule(f"{PREFIX}/jobs/{job}", endpoint="getJob", methods=["GET"]),
                Rule(f"{PREFIX}/jobs/{job}/cancel", endpoint="cancelJob", methods=["POST"]),
                Rule(f"{PREFIX}/jobs/{job}/retry", endpoint="retryJob", methods=["POST"]),
                Rule(f"{PREFIX}/jobs/{job}/webhooks", endpoint="listJobWebhooks", methods=["GET"]),
            ],
            merge_slashes=False,
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "createJob": self.create_job,
            "createJobs": self.create_jobs,
            "getQueueSummary": self.queue_summary,
            "listJobs": self.list_jobs,
            "getJob": self.get_job,
            "cancelJob": self.cancel_job,
            "retryJob": self.retry_job,
            "listJobWebhooks": self.job_webhooks,
        }
        self._openapi = json.dumps(OPENAPI, ensure_ascii=False).encode("utf-8")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except Exception:  # never a traceback to a client; never the body or token in the log
            log.exception("API: unexpected error answering %s %s", request.method, request.path)
            response = ApiError("internal_error", "Internal error; the server log has the details.").response()
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            return ApiError("method_not_allowed", f"{request.method} is not allowed here; use {allowed}",
                            {"Allow": allowed}).response()
        except HTTPException:
            return ApiError("not_found", f"no such endpoint: {request.path} (see {PREFIX}/openapi.json)").response()
        if endpoint == "getOpenApi":  # public: it describes the API, not anyone's data
            return Response(self._openapi, content_type="application/json")
        try:
            principal = self._authenticate(request)
            return self._handlers[endpoint](request, principal, **args)
        except ApiError as exc:
            return exc.response()
        except QbxmlError as exc:
            return ApiError("invalid_qbxml", str(exc)).response()
        except TransitionRefused as exc:
            return ApiError("conflict", str(exc)).response()
        except NotFound as exc:
            return ApiError("not_found", str(exc)).response()
        except InvalidInput as exc:
            return ApiError("invalid_request", str(exc)).response()

    # -- authentication and scope ------------------------------------------------------

    def _authenticate(self, request: Request) -> Principal:
        header = request.headers.get("Authorization", "")
        challenge = 'Bearer realm="qwc-service"'
        if not header.strip():
            raise ApiError("unauthorized", "this endpoint needs an 'Authorization: Bearer <token>' header",
                           {"WWW-Authenticate": challenge})
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError("unauthorized", "the Authorization header must be 'Bearer <token>'",
                           {"WWW-Authenticate": f'{challenge}, error="invalid_request"'})
        with self.db.begin() as db:
            principal = tokens.verify_token(db, token.strip(), now=self.clock())
        if principal is None:
            raise ApiError("unauthorized", "the bearer token is not valid (unknown or revoked)",
                           {"WWW-Authenticate": f'{challenge}, error="invalid_token"'})
        return principal

    @staticmethod
    def _connection_in_scope(principal: Principal, name: str) -> None:
        if principal.connection_name is not None and name != principal.connection_name:
            raise NotFound(f"no connection named {name!r}")  # what a nonexistent one gets

    def _job_in_scope(self, principal: Principal, job_id: int) -> None:
        with self.db.begin() as db:
            connection_id = db.scalar(select(Job.connection_id).where(Job.id == job_id))
        if connection_id is None or not principal.may_see(connection_id):
            raise NotFound(f"no job with id {job_id}")

    # -- endpoints ---------------------------------------------------------------------

    def create_job(self, request: Request, principal: Principal, name: str) -> Response:
        _only_params(request)
        self._connection_in_scope(principal, name)
        job = _new_job(self._json_body(request))
        info = self.client.enqueue(
            name,
            job.request,
            priority=job.priority,
            after=job.after,
            key=job.key,
            replace=job.replace,
            not_before=job.not_before,
            page_size=job.page_size,
            webhook_url=job.webhook_url,
        )
        response = _json(_job_json(info, enqueued=True), 201 if info.created else 200)
        response.headers["Location"] = f"{PREFIX}/jobs/{info.id}"
        return response

    def create_jobs(self, request: Request, principal: Principal, name: str) -> Response:
        """Many jobs in one request and one transaction: all are queued, or none (the error names the item)."""
        _only_params(request)
        self._connection_in_scope(principal, name)
        body = self._json_body(request)
        unknown = sorted(set(body) - {"jobs"})
        if unknown:
            raise ApiError("invalid_request", f"unknown field {unknown[0]!r}; the body is {{\"jobs\": [...]}}")
        items = body.get("jobs")
        if not isinstance(items, list) or not items:
            raise ApiError("invalid_request", f"jobs: required, a list of 1 to {MAX_BATCH} new jobs")
        if len(items) > MAX_BATCH:
            raise ApiError("invalid_request",
                           f"jobs: a batch holds at most {MAX_BATCH} jobs; this one has {len(items)}: split it")
        jobs = []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise ApiError("invalid_request", "must be a JSON object (the body of POST …/jobs)")
                jobs.append(_new_job(item))
            except ApiError as exc:
                raise ApiError(exc.code, f"item {index}: {exc.message}") from None
        infos = self.client.enqueue_many(name, jobs)
        created = any(info.created for info in infos)
        return _json({"jobs": [_job_json(info, enqueued=True) for info in infos]}, 201 if created else 200)

    def get_job(self, request: Request, principal: Principal, job_id: int) -> Response:
        _only_params(request, "payloads")
        payloads = _bool_param(request, "payloads", False)
        self._job_in_scope(principal, job_id)
        return _json(_job_json(self.client.get(job_id, payloads=payloads, history=True)))

    def list_jobs(self, request: Request, principal: Principal) -> Response:
        _only_params(request, "connection", "state", "limit", "cursor")
        connection = request.args.get("connection") or None
        if principal.connection_name is not None:
            if connection is not None:
                self._connection_in_scope(principal, connection)
            connection = principal.connection_name
        states = [s.strip() for value in request.args.getlist("state") for s in value.split(",") if s.strip()]
        known = [s.value for s in JobState]
        for state in states:
            if state not in known:
                raise ApiError("invalid_request", f"state: {state!r} is not a job state; use {', '.join(known)}")
        limit = _int_param(request, "limit", DEFAULT_LIST_LIMIT, 1, MAX_LIST_LIMIT)
        cursor = request.args.get("cursor")
        before_id = None
        if cursor is not None:
            if not cursor.isdigit() or not 1 <= int(cursor) <= MAX_INT:
                raise ApiError("invalid_request", "cursor: not a cursor from this API (pass next_cursor back as is)")
            before_id = int(cursor)
        infos = self.client.list(connection=connection, states=states, limit=limit + 1, before_id=before_id)
        page = infos[:limit]
        return _json({
            "jobs": [_job_json(info) for info in page],
            "next_cursor": str(page[-1].id) if len(infos) > limit else None,
        })

    def cancel_job(self, request: Request, principal: Principal, job_id: int) -> Response:
        _only_params(request)
        self._job_in_scope(principal, job_id)
        return _json(_job_json(self.client.cancel(job_id)))

    def retry_job(self, request: Request, principal: Principal, job_id: int) -> Response:
        _only_params(request)
        self._job_in_scope(principal, job_id)
        return _json(_job_json(self.client.retry(job_id)))

    def queue_summary(self, request: Request, principal: Principal, name: str) -> Response:
        _only_params(request)
        self._connection_in_scope(principal, name)
        return _json(self.client.summary(name))

    def job_webhooks(self, request: Request, principal: Principal, job_id: int) -> Response:
        _only_params(request)
        self._job_in_scope(principal, job_id)
        with self.db.begin() as db:
            rows = [_delivery_json(d) for d in webhooks.deliveries_of(db, job_id)]
        return _json({"deliveries": rows})

    # -- request bodies ----------------------------------------------------------------

    def _json_body(self, request: Request) -> dict[str, Any]:
        cap = self.max_body_bytes
        too_large = ApiError("payload_too_large", f"the request body is larger than this server accepts ({cap} bytes)")
        if request.content_length is not None and request.content_length > cap:
            raise too_large  # refused before reading a byte
        data = request.stream.read(cap + 1)
        if len(data) > cap:
            raise too_large
        if not data.strip():
            raise ApiError("invalid_request", "the request body is empty; send a JSON object")
        try:
            body = json.loads(data, parse_constant=_no_constants)
        except json.JSONDecodeError as exc:
            raise ApiError("invalid_request",
                           f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        except (ValueError, RecursionError) as exc:  # not UTF-8, NaN, absurd nesting
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ApiError("invalid_request", f"the body is not valid JSON: {reason}") from None
        if not isinstance(body, dict):
            raise ApiError("invalid_request", "the body must be a JSON object")
        return body


def make_api(
    db: sessionmaker[Session],
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Api:
    """The ``/api/v1`` WSGI app; it answers every path under ``/api/v1`` (mount it there unchanged)."""
    return Api(db, settings, clock, max_body_bytes=max_body_bytes)


# -- JSON out ------------------------------------------------------------------------------


def _job_json(info: JobInfo, *, enqueued: bool = False) -> dict[str, Any]:
    data = info.to_dict()
    if not enqueued:  # only meaningful in the answer to an enqueue
        data.pop("created", None)
        data.pop("warnings", None)
    return data


def _delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "job_id": delivery.job_id,
        "url": delivery.url,
        "event": f"job.{delivery.event}",
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat(),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at.isoformat(),
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
        "payload": json.loads(delivery.payload),
    }


# -- JSON and query parameters in ----------------------------------------------------------------


def _new_job(body: dict[str, Any]) -> NewJob:
    """A createJob body (or one item of a batch), checked field by field."""
    unknown = sorted(set(body) - set(CREATE_FIELDS))
    if unknown:
        raise ApiError("invalid_request", f"unknown field {unknown[0]!r}; the fields are {', '.join(CREATE_FIELDS)}")
    qbxml = body.get("qbxml")
    if not isinstance(qbxml, str):
        raise ApiError("invalid_request", "qbxml: required, a string holding the qbXML request")
    key = _optional_str(body, "key")
    replace = body.get("replace", False)
    if not isinstance(replace, bool):
        raise ApiError("invalid_request", "replace: must be true or false")
    if replace and key is None:
        raise ApiError("invalid_request", "replace: needs a key (it replaces the queued job with that key)")
    after = body.get("after")
    if after is None:
        after = []
    if not isinstance(after, list) or not all(_is_int(v) and 1 <= v <= MAX_INT for v in after):
        raise ApiError("invalid_request", "after: must be a list of job ids")
    webhook_url = _optional_str(body, "webhook_url")
    if webhook_url is not None:
        _check_url(webhook_url)
    return NewJob(
        request=qbxml,
        priority=_int_field(body, "priority", 0, -MAX_INT - 1, MAX_INT),
        after=tuple(after),
        key=key,
        replace=replace,
        not_before=_time_field(body, "not_before"),
        page_size=_optional_int(body, "page_size"),
        webhook_url=webhook_url,
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value) or not low <= value <= high:
        raise ApiError("invalid_request", f"{name}: must be an integer from {low} to {high}")
    return int(value)


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or not -MAX_INT <= value <= MAX_INT:
        raise ApiError("invalid_request", f"{name}: must be an integer")
    return int(value)


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError("invalid_request", f"{name}: must be a string")
    return value


def _time_field(body: dict[str, Any], name: str) -> datetime | None:
    value = _optional_str(body, name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ApiError("invalid_request",
                       f"{name}: {value[:60]!r} is not an ISO 8601 time such as 2026-12-01T09:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000 or any(
            c.isspace() or ord(c) < 32 for c in url):
        raise ApiError("invalid_request", "webhook_url: must be an http:// or https:// URL of at most 2000 characters")


def _only_params(request: Request, *allowed: str) -> None:
    """Refuse unknown query parameters: a typo must not silently widen a listing."""
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        known = f"; this endpoint takes {', '.join(allowed)}" if allowed else "; this endpoint takes none"
        raise ApiError("invalid_request", f"unknown query parameter {unknown[0]!r}{known}")


def _bool_param(request: Request, name: str, default: bool) -> bool:
    value = request.args.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ApiError("invalid_request", f"{name}: must be true or false")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ApiError("invalid_request", f"{name}: must be an integer from {low} to {high}")
    return int(value)


# -- the OpenAPI document --------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema_type: str, **extra: Any) -> dict[str, Any]:
    return {"type": [schema_type, "null"], **extra}


_TIME = {"type": "string", "format": "date-time"}
_STATES = [s.value for s in JobState]
_SETTLED_EVENTS = sorted(f"job.{s}" for s in webhooks.SETTLED)


def _error_response(description: str, *, auth: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": _ref("Error")}}}
    if auth:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                     "description": 'Bearer realm="qwc-service"'}}
    return response


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_R = {
    "400": {"$ref": "#/components/responses/InvalidRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "404": {"$ref": "#/components/responses/NotFound"},
    "409": {"$ref": "#/components/responses/Conflict"},
    "413": {"$ref": "#/components/responses/PayloadTooLarge"},
    "422": {"$ref": "#/components/responses/InvalidQbxml"},
    "default": {"$ref": "#/components/responses/UnexpectedError"},
}


def _responses(ok: dict[str, dict[str, Any]], *errors: str) -> dict[str, Any]:
    return {**ok, **{code: _R[code] for code in errors}, "default": _R["default"]}


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_CONNECTION = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "The connection's name."}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "qwc-service API",
        "version": __version__,
        "description": (
            "Queue qbXML jobs for the QuickBooks Web Connector and read their results. Authenticate with "
            "'Authorization: Bearer <token>' (make one with 'qwc-service token create'). A token limited to one "
            "connection gets 404 for everything else. Every error is JSON with a stable code; unknown paths "
            "answer 404 not_found and a wrong method 405 method_not_allowed (with an Allow header), in the "
            "same Error shape."
        ),
    },
    "security": [{"bearer": []}],
    "paths": {
        f"{PREFIX}/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document (no token needed)",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI 3.1 document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        },
        f"{PREFIX}/connections/{{name}}/jobs": {
            "post": {
                "operationId": "createJob",
                "summary": "Queue a qbXML request for a connection",
                "parameters": [_CONNECTION],
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ref("NewJob")}}},
                "responses": _responses(
                    {"201": _ok("Queued; Location names the job", "EnqueuedJob"),
                     "200": _ok("A queued job with the same key exists and is returned (with replace: true, "
                                "it now carries this request); no job was added", "EnqueuedJob")},
                    "400", "401", "404", "413", "422"),
            },
        },
        f"{PREFIX}/connections/{{name}}/jobs/batch": {
            "post": {
                "operationId": "createJobs",
                "summary": "Queue many qbXML requests for a connection at once: all of them, or none",
                "description": (
                    f"Each item is what POST /connections/{{name}}/jobs takes, with the same rules; at most "
                    f"{MAX_BATCH} items. One transaction: a bad item refuses the whole batch, and the error "
                    "message starts with 'item N:', its 0-based index. The answer lists the jobs in the order "
                    "given, each with created and warnings as createJob answers them; a job that a later item "
                    "replaced (same key, replace: true) is shown as it stands after the batch."
                ),
                "parameters": [_CONNECTION],
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ref("NewJobBatch")}}},
                "responses": _responses(
                    {"201": _ok("Queued; the jobs in the order given", "EnqueuedJobList"),
                     "200": _ok("Every item's key matched a queued job, which is returned (with replace: true, it "
                                "now carries that item's request); no job was added", "EnqueuedJobList")},
                    "400", "401", "404", "413", "422"),
            },
        },
        f"{PREFIX}/connections/{{name}}/queue": {
            "get": {
                "operationId": "getQueueSummary",
                "summary": "A connection's queue at a glance",
                "parameters": [_CONNECTION],
                "responses": _responses({"200": _ok("Jobs by state, and the oldest queued job's age",
                                                    "QueueSummary")}, "400", "401", "404"),
            },
        },
        f"{PREFIX}/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "List jobs, newest first",
                "parameters": [
                    {"name": "connection", "in": "query", "schema": {"type": "string"},
                     "description": "Only this connection's jobs (a scoped token sees only its own anyway)."},
                    {"name": "state", "in": "query", "style": "form", "explode": True,
                     "schema": {"type": "array", "items": {"type": "string", "enum": _STATES}},
                     "description": "Only jobs in these states; repeat it or separate with commas."},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT,
                                "default": DEFAULT_LIST_LIMIT}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"},
                     "description": "The next_cursor of the previous page, as is."},
                ],
                "responses": _responses({"200": _ok("A page of jobs", "JobPage")}, "400", "401", "404"),
            },
        },
        f"{PREFIX}/jobs/{{job_id}}": {
            "get": {
                "operationId": "getJob",
                "summary": "One job, with its history",
                "parameters": [_JOB_ID, {"name": "payloads", "in": "query", "schema": {"type": "boolean",
                                                                                        "default": False},
                                         "description": "Add the request and QuickBooks' response."}],
                "responses": _responses({"200": _ok("The job", "JobDetail")}, "400", "401", "404"),
            },
        },
        f"{PREFIX}/jobs/{{job_id}}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Withdraw a queued job, or settle an in-doubt write that QuickBooks already has",
                "parameters": [_JOB_ID],
                "responses": _responses({"200": _ok("The cancelled job", "Job")}, "400", "401", "404", "409"),
            },
        },
        f"{PREFIX}/jobs/{{job_id}}/retry": {
            "post": {
                "operationId": "retryJob",
                "summary": "Queue a failed job again, or resend an in-doubt write QuickBooks does not have",
                "parameters": [_JOB_ID],
                "responses": _responses({"200": _ok("The queued job", "Job")}, "400", "401", "404", "409"),
            },
        },
        f"{PREFIX}/jobs/{{job_id}}/webhooks": {
            "get": {
                "operationId": "listJobWebhooks",
                "summary": "The webhook deliveries owed for a job, and how their attempts went",
                "parameters": [_JOB_ID],
                "responses": _responses({"200": _ok("Deliveries, oldest first", "DeliveryList")},
                                        "400", "401", "404"),
            },
        },
    },
    "webhooks": {
        "jobSettled": {
            "post": {
                "summary": "A job reached done, failed, in_doubt or cancelled",
                "description": (
                    "POSTed to the job's webhook_url, else its connection's. X-QWC-Signature is "
                    "sha256=HMAC-SHA256(connection's webhook secret, raw body) in hex; X-QWC-Delivery is the "
                    "delivery id (the same on every retry: de-duplicate by it); any 2xx answer is success, "
                    "anything else is retried with backoff. Redirects are not followed."
                ),
                "parameters": [
                    {"name": "X-QWC-Signature", "in": "header", "required": True, "schema": {"type": "string"}},
                    {"name": "X-QWC-Event", "in": "header", "required": True,
                     "schema": {"type": "string", "enum": _SETTLED_EVENTS}},
                    {"name": "X-QWC-Delivery", "in": "header", "required": True, "schema": {"type": "string"}},
                ],
                "requestBody": {"content": {"application/json": {"schema": _ref("WebhookPayload")}}},
                "responses": {"200": {"description": "Any 2xx: delivered"}},
            },
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "A token from 'qwc-service token create'."}},
        "responses": {
            "InvalidRequest": _error_response("invalid_request: a malformed body, field or query parameter"),
            "Unauthorized": _error_response("unauthorized: no bearer token, or an unknown or revoked one",
                                            auth=True),
            "NotFound": _error_response("not_found: no such connection or job (or not visible to this token)"),
            "Conflict": _error_response("conflict: the job's state does not allow this"),
            "PayloadTooLarge": _error_response("payload_too_large: the body is over the server's limit"),
            "InvalidQbxml": _error_response("invalid_qbxml: the qbXML request is unusable; the message says "
                                            "what and where"),
            "UnexpectedError": _error_response("internal_error (500), or another error code"),
        },
        "schemas": {
            "Error": {
                "type": "object", "required": ["error"], "additionalProperties": False,
                "properties": {"error": {
                    "type": "object", "required": ["code", "message"], "additionalProperties": False,
                    "properties": {"code": {"type": "string", "enum": sorted(ERROR_STATUS)},
                                   "message": {"type": "string"}},
                }},
            },
            "NewJob": {
                "type": "object", "required": ["qbxml"], "additionalProperties": False,
                "properties": {
                    "qbxml": {"type": "string", "description": "A whole qbXML document, or one or more …Rq "
                                                               "elements (wrapped in onError=\"stopOnError\")."},
                    "priority": {"type": "integer", "default": 0, "description": "Higher goes first."},
                    "after": {"type": "array", "items": {"type": "integer", "minimum": 1},
                              "description": "Jobs of the same connection that must be done first."},
                    "key": _nullable("string", description="Dedupe key: while a queued job has it, that job "
                                                           "is returned instead of a new one."),
                    "replace": {"type": "boolean", "default": False,
                                "description": "With key: give the queued job this request."},
                    "not_before": _nullable("string", format="date-time",
                                            description="Not sent before this time (UTC if no zone is given)."),
                    "page_size": _nullable("integer", minimum=1, maximum=100000,
                                           description="Page a single …QueryRq with an iterator."),
                    "webhook_url": _nullable("string", format="uri",
                                             description="Called when this job settles (instead of the "
                                                         "connection's webhook)."),
                },
            },
            "NewJobBatch": {
                "type": "object", "required": ["jobs"], "additionalProperties": False,
                "properties": {"jobs": {"type": "array", "items": _ref("NewJob"), "minItems": 1,
                                        "maxItems": MAX_BATCH}},
            },
            "JobState": {"type": "string", "enum": _STATES},
            "ResponseStatus": {
                "type": "object", "additionalProperties": False,
                "required": ["request_type", "request_id", "code", "severity", "message"],
                "properties": {"request_type": {"type": "string"}, "request_id": _nullable("string"),
                               "code": {"type": "integer"}, "severity": {"type": "string"},
                               "message": {"type": "string"}},
            },
            "JobEvent": {
                "type": "object", "additionalProperties": False,
                "required": ["at", "from_state", "to_state", "reason"],
                "properties": {"at": _TIME, "from_state": {"type": "string"}, "to_state": {"type": "string"},
                               "reason": {"type": "string"}},
            },
            "Job": {
                "type": "object", "additionalProperties": False,
                "required": ["id", "connection", "state", "priority", "request_types", "is_write", "status_code",
                             "status_severity", "status_message", "hresult", "error", "attempts", "dedupe_key",
                             "after", "not_before", "created_at", "sent_at", "finished_at", "statuses"],
                "properties": {
                    "id": {"type": "integer"},
                    "connection": {"type": "string"},
                    "state": _ref("JobState"),
                    "priority": {"type": "integer"},
                    "request_types": {"type": "array", "items": {"type": "string"}},
                    "is_write": {"type": "boolean"},
                    "status_code": _nullable("integer"),
                    "status_severity": _nullable("string"),
                    "status_message": _nullable("string"),
                    "hresult": _nullable("string"),
                    "error": _nullable("string"),
                    "attempts": {"type": "integer"},
                    "dedupe_key": _nullable("string"),
                    "after": {"type": "array", "items": {"type": "integer"}},
                    "not_before": _nullable("string", format="date-time"),
                    "created_at": _TIME,
                    "sent_at": _nullable("string", format="date-time"),
                    "finished_at": _nullable("string", format="date-time"),
                    "statuses": {"type": "array", "items": _ref("ResponseStatus")},
                    "request": _nullable("string", description="With ?payloads=true; \"\" once pruned."),
                    "response": _nullable("string", description="With ?payloads=true."),
                    "history": {"type": "array", "items": _ref("JobEvent"),
                                "description": "Every state change (GET /jobs/{job_id} only)."},
                    "created": {"type": "boolean", "description": "Enqueue only: false when a queued job with "
                                                                  "the same key was returned."},
                    "warnings": {"type": "array", "items": {"type": "string"},
                                 "description": "Enqueue only: text QuickBooks may reject, and where."},
                },
            },
            "EnqueuedJob": {"allOf": [_ref("Job")], "required": ["created", "warnings"]},
            "EnqueuedJobList": {
                "type": "object", "additionalProperties": False, "required": ["jobs"],
                "properties": {"jobs": {"type": "array", "items": _ref("EnqueuedJob")}},
            },
            "JobDetail": {"allOf": [_ref("Job")], "required": ["history"]},
            "JobPage": {
                "type": "object", "additionalProperties": False, "required": ["jobs", "next_cursor"],
                "properties": {"jobs": {"type": "array", "items": _ref("Job")},
                               "next_cursor": _nullable("string", description="null on the last page.")},
            },
            "QueueSummary": {
                "type": "object", "additionalProperties": False,
                "required": ["connection", "jobs", "oldest_queued_age_seconds"],
                "properties": {
                    "connection": {"type": "string"},
                    "jobs": {"type": "object", "additionalProperties": False, "required": _STATES,
                             "properties": {state: {"type": "integer"} for state in _STATES}},
                    "oldest_queued_age_seconds": _nullable("number"),
                },
            },
            "WebhookPayload": {
                "type": "object", "additionalProperties": False, "required": ["event", "job", "sent_at"],
                "properties": {
                    "event": {"type": "string", "enum": _SETTLED_EVENTS},
                    "job": {
                        "type": "object", "additionalProperties": False,
                        "required": ["id", "connection", "state", "request_types", "status_code",
                                     "status_severity", "status_message", "hresult", "error", "finished_at"],
                        "properties": {
                            "id": {"type": "integer"}, "connection": {"type": "string"}, "state": _ref("JobState"),
                            "request_types": {"type": "array", "items": {"type": "string"}},
                            "status_code": _nullable("integer"), "status_severity": _nullable("string"),
                            "status_message": _nullable("string"), "hresult": _nullable("string"),
                            "error": _nullable("string"), "finished_at": _nullable("string", format="date-time"),
                        },
                    },
                    "sent_at": {**_TIME, "description": "When the job settled and the delivery was written."},
                },
            },
            "Delivery": {
                "type": "object", "additionalProperties": False,
                "required": ["id", "job_id", "url", "event", "state", "attempts", "next_attempt_at", "last_status",
                             "last_error", "created_at", "delivered_at", "payload"],
                "properties": {
                    "id": {"type": "integer", "description": "Sent as X-QWC-Delivery."},
                    "job_id": {"type": "integer"},
                    "url": {"type": "string"},
                    "event": {"type": "string", "enum": _SETTLED_EVENTS},
                    "state": {"type": "string", "enum": ["pending", "delivered", "failed"],
                              "description": "failed = gave up after the last attempt."},
                    "attempts": {"type": "integer"},
                    "next_attempt_at": _TIME,
                    "last_status": _nullable("integer", description="The receiver's last HTTP status; null when "
                                                                    "it did not answer."),
                    "last_error": {"type": "string"},
                    "created_at": _TIME,
                    "delivered_at": _nullable("string", format="date-time"),
                    "payload": _ref("WebhookPayload"),
                },
            },
            "DeliveryList": {
                "type": "object", "additionalProperties": False, "required": ["deliveries"],
                "properties": {"deliveries": {"type": "array", "items": _ref("Delivery")}},
            },
        },
    },
}
