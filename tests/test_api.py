"""The integrator's HTTP API: tokens and scopes, every endpoint and error code, and the OpenAPI contract.

Every response in this module goes through ``ApiClient``, which checks it
against the served OpenAPI document: the status is documented for the
operation and the body validates against the documented schema. So a field
added to a job, or an error answered with a new status, fails here until the
document says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.test import Client

from qwc_service import api as api_module
from qwc_service import queue, tokens
from qwc_service.api import OPENAPI, PREFIX, make_api
from qwc_service.cli import main
from qwc_service.client import QueueClient
from qwc_service.models import ApiToken, Job
from qwc_service.wsgi import QwcApplication

QUERY = "<CustomerQueryRq><MaxReturned>5</MaxReturned></CustomerQueryRq>"
ADD = "<CustomerAddRq><CustomerAdd><Name>Joe</Name></CustomerAdd></CustomerAddRq>"
SMALL_CAP = 64 * 1024
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


# -- a small JSON Schema checker (jsonschema is not a dependency) ------------------------------------

#: The keywords the document uses; anything else fails loudly rather than being ignored.
SCHEMA_KEYWORDS = {"$ref", "allOf", "type", "enum", "format", "minimum", "maximum", "required", "properties",
                   "additionalProperties", "items", "minItems", "maxItems", "description", "default"}
TYPES: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def schema_errors(value: Any, schema: dict[str, Any], document: dict[str, Any] = OPENAPI, at: str = "$") -> list[str]:
    """Why ``value`` does not match ``schema`` (the subset of JSON Schema 2020-12 the document uses)."""
    unknown = set(schema) - SCHEMA_KEYWORDS
    assert not unknown, f"{at}: the checker does not know {unknown}"
    errors: list[str] = []
    if "$ref" in schema:
        errors += schema_errors(value, resolve(document, schema["$ref"]), document, at)
    for part in schema.get("allOf", ()):
        errors += schema_errors(value, part, document, at)
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[t](value) for t in allowed):
            return errors + [f"{at}: {value!r} is not {' or '.join(allowed)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} is not one of {schema['enum']}")
    if schema.get("format") == "date-time" and isinstance(value, str):
        try:
            if datetime.fromisoformat(value).tzinfo is None:
                errors.append(f"{at}: {value!r} has no time zone")
        except ValueError:
            errors.append(f"{at}: {value!r} is not a date-time")
    if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{at}: {value} < {schema['minimum']}")
    if "maximum" in schema and TYPES["number"](value) and value > schema["maximum"]:
        errors.append(f"{at}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        errors += [f"{at}: {name!r} is missing" for name in schema.get("required", ()) if name not in value]
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], document, f"{at}.{name}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{at}: {name!r} is not documented")
    if isinstance(value, list) and not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
        errors.append(f"{at}: {len(value)} items, not {schema.get('minItems', 0)} to {schema.get('maxItems', 'any')}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], document, f"{at}[{index}]")
    return errors


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")


def find_operation(path: str, method: str) -> tuple[str | None, dict[str, Any] | None]:
    """(documented path, operation) for a request path; (path, None) when only the method is wrong."""
    for template, item in OPENAPI["paths"].items():
        if _template_regex(template).match(path):
            return template, item.get(method.lower())
    return None, None


# -- an API client that holds every answer to the document ----------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any

    @property
    def code(self) -> str:
        return self.body["error"]["code"]

    @property
    def message(self) -> str:
        return self.body["error"]["message"]


@dataclass
class ApiClient:
    app: Any
    #: (operationId, status) of every answer: what the tests have produced.
    observed: set[tuple[str, str]] = field(default_factory=set)

    def call(self, method: str, path: str, *, token: str | None = None, body: Any = None, data: bytes | None = None,
             headers: dict[str, str] | None = None, expect: int | None = None, **options: Any) -> Answer:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        response = Client(self.app).open(path, method=method, data=data, headers=headers, **options)
        answer = Answer(response.status_code, json.loads(response.get_data()) if method != "HEAD" else None,
                        response.headers)
        self._conform(method, path.split("?")[0], answer)
        if expect is not None:
            assert answer.status == expect, answer.body
        return answer

    def _conform(self, method: str, path: str, answer: Answer) -> None:
        if method == "HEAD":
            return
        assert answer.headers["Content-Type"] == "application/json", answer.headers
        template, operation = find_operation(path, method)
        if operation is None:  # outside the document: only the generic errors, in the Error shape
            assert (answer.status, answer.body["error"]["code"]) in (
                (404, "not_found"), (405, "method_not_allowed")), answer.body
            assert template is None or answer.status == 405
            if answer.status == 405:
                assert answer.headers["Allow"]
            assert not schema_errors(answer.body, {"$ref": "#/components/schemas/Error"})
            return
        responses = operation["responses"]
        documented = responses.get(str(answer.status)) or responses.get("default")
        assert documented is not None, f"{method} {template} answered an undocumented {answer.status}"
        if "$ref" in documented:
            documented = resolve(OPENAPI, documented["$ref"])
        schema = documented["content"]["application/json"]["schema"]
        errors = schema_errors(answer.body, schema)
        assert not errors, f"{method} {template} {answer.status}: {errors}"
        if answer.status >= 400 and str(answer.status) in responses:
            # The stable code belongs to the status it is documented with.
            assert api_module.ERROR_STATUS[answer.code] == answer.status
        for header in documented.get("headers", {}):
            assert header in answer.headers, f"{method} {template} {answer.status} lacks {header}"
        self.observed.add((operation["operationId"], str(answer.status) if str(answer.status) in responses
                           else "default"))


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def app(db, settings, clock):
    return make_api(db, settings, clock, max_body_bytes=SMALL_CAP)


@pytest.fixture
def api(app) -> ApiClient:
    return ApiClient(app)


@pytest.fixture
def acme(add_connection):
    return add_connection()


@pytest.fixture
def other(add_connection):
    return add_connection(name="other", username="other-sync")


@pytest.fixture
def make_token(db, clock) -> Callable[..., str]:
    def make(name: str = "integrator", connection: str | None = None) -> str:
        with db.begin() as s:
            token, _ = tokens.create_token(s, name, now=clock(), connection=connection)
        return token

    return make


@pytest.fixture
def admin(make_token) -> str:
    """A token for every connection."""
    return make_token("admin")


def set_state(db, job_id: int, state: str) -> None:
    with db.begin() as s:
        s.get(Job, job_id).state = state


# -- the contract ----------------------------------------------------------------------------------------


def _rule_template(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_the_document_lists_exactly_the_served_routes(app) -> None:
    served = {(_rule_template(rule.rule), method.lower(), rule.endpoint)
              for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method, operation["operationId"])
                  for path, item in OPENAPI["paths"].items() for method, operation in item.items()
                  if method in HTTP_METHODS}
    assert served == documented
    for path, item in OPENAPI["paths"].items():
        for operation in item.values():
            in_path = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            assert in_path == set(re.findall(r"\{([^}]+)\}", path)), path


def test_the_document_is_served_without_a_token_and_every_ref_resolves(api) -> None:
    answer = api.call("GET", f"{PREFIX}/openapi.json", expect=200)
    assert answer.body == json.loads(json.dumps(OPENAPI))
    assert answer.body["openapi"].startswith("3.1")

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(OPENAPI, node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(OPENAPI)


def test_the_schema_checker_can_fail() -> None:
    job = {"$ref": "#/components/schemas/Job"}
    assert schema_errors({"error": {"code": "not_found", "message": "x"}}, {"$ref": "#/components/schemas/Error"}) == []
    assert schema_errors({"error": {"code": "nope", "message": "x"}}, {"$ref": "#/components/schemas/Error"})
    assert any("'id' is missing" in e for e in schema_errors({}, job))
    assert any("not documented" in e for e in schema_errors({"surprise": 1}, job))
    assert any("is not integer" in e for e in schema_errors({"id": True}, job))
    assert any("not a date-time" in e for e in schema_errors({"created_at": "yesterday"}, job))
    assert any("no time zone" in e for e in schema_errors({"created_at": "2026-01-01T00:00:00"}, job))
    assert any("'created' is missing" in e for e in schema_errors({}, {"$ref": "#/components/schemas/EnqueuedJob"}))
    batch = {"$ref": "#/components/schemas/EnqueuedJobList"}
    assert any("'created' is missing" in e for e in schema_errors({"jobs": [{}]}, batch))
    assert any("0 items, not 1 to 1000" in e for e in schema_errors({"jobs": []},
                                                                    {"$ref": "#/components/schemas/NewJobBatch"}))


def test_every_documented_response_is_produced(api, db, acme, other, admin, make_token, enqueue, monkeypatch):
    """Each (operation, status) in the document, produced once; the client checks each body."""
    queued = enqueue(acme, QUERY)
    failed = enqueue(acme, ADD)
    set_state(db, failed.id, "failed")
    done = enqueue(acme, QUERY)
    set_state(db, done.id, "done")
    samples = {"job_id": str(queued.id), "name": "acme"}

    def url(template: str, **values: str) -> str:
        return re.sub(r"\{([^}]+)\}", lambda m: {**samples, **values}[m.group(1)], template)

    operations = [(path, method.upper(), op) for path, item in OPENAPI["paths"].items()
                  for method, op in item.items() if method in HTTP_METHODS]
    for path, method, op in operations:
        body = ({"jobs": [{"qbxml": QUERY}]} if op["operationId"] == "createJobs" else {"qbxml": QUERY}) \
            if "requestBody" in op else None
        if op.get("security") == []:
            continue
        api.call(method, url(path), body=body, expect=401)
        api.call(method, url(path) + "?bogus=1", token=admin, body=body, expect=400)
        missing = f"{url(path, job_id='999999', name='nobody')}"
        if op["operationId"] == "listJobs":
            missing += "?connection=nobody"
        api.call(method, missing, token=admin, body=body, expect=404)

    api.call("GET", f"{PREFIX}/openapi.json", expect=200)
    jobs = f"{PREFIX}/connections/acme/jobs"
    api.call("POST", jobs, token=admin, body={"qbxml": QUERY, "key": "k"}, expect=201)
    api.call("POST", jobs, token=admin, body={"qbxml": QUERY, "key": "k"}, expect=200)
    api.call("POST", jobs, token=admin, data=b"x" * (SMALL_CAP + 1), expect=413)
    api.call("POST", jobs, token=admin, body={"qbxml": "<CustomerQueryRq>"}, expect=422)
    batch = f"{PREFIX}/connections/acme/jobs/batch"
    api.call("POST", batch, token=admin, body={"jobs": [{"qbxml": QUERY}, {"qbxml": ADD, "key": "k"}]}, expect=201)
    api.call("POST", batch, token=admin, body={"jobs": [{"qbxml": ADD, "key": "k"}]}, expect=200)
    api.call("POST", batch, token=admin, data=b"x" * (SMALL_CAP + 1), expect=413)
    api.call("POST", batch, token=admin, body={"jobs": [{"qbxml": QUERY}, {"qbxml": "<CustomerQueryRq>"}]}, expect=422)
    api.call("GET", f"{PREFIX}/connections/acme/queue", token=admin, expect=200)
    api.call("GET", f"{PREFIX}/jobs", token=admin, expect=200)
    api.call("GET", f"{PREFIX}/jobs/{queued.id}", token=admin, expect=200)
    api.call("GET", f"{PREFIX}/jobs/{queued.id}/webhooks", token=admin, expect=200)
    api.call("POST", f"{PREFIX}/jobs/{queued.id}/cancel", token=admin, expect=200)
    api.call("POST", f"{PREFIX}/jobs/{done.id}/cancel", token=admin, expect=409)
    api.call("POST", f"{PREFIX}/jobs/{failed.id}/retry", token=admin, expect=200)
    api.call("POST", f"{PREFIX}/jobs/{done.id}/retry", token=admin, expect=409)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(QueueClient, "summary", broken)
    assert api.call("GET", f"{PREFIX}/connections/acme/queue", token=admin, expect=500).code == "internal_error"

    documented = {(op["operationId"], code) for _, _, op in operations for code in op["responses"]
                  if code != "default"}
    assert api.observed - {(op["operationId"], "default") for _, _, op in operations} == documented
    assert ("getQueueSummary", "default") in api.observed


# -- authentication and scope ------------------------------------------------------------------------------


def test_missing_wrong_and_revoked_tokens_get_401(api, db, acme, make_token, clock) -> None:
    token = make_token("ci")
    url = f"{PREFIX}/jobs"
    missing = api.call("GET", url, expect=401)
    assert missing.code == "unauthorized" and missing.headers["WWW-Authenticate"] == 'Bearer realm="qwc-service"'
    for header in (f"Basic {token}", "Bearer", "Bearer ", f"Token {token}"):
        answer = api.call("GET", url, headers={"Authorization": header}, expect=401)
        assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "qwc_" + "x" * 43, "not-even-ours", "qwc_" * 100):
        answer = api.call("GET", url, token=wrong, expect=401)
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"] and wrong not in json.dumps(answer.body)
    api.call("GET", url, token=token, expect=200)
    api.call("GET", url, headers={"Authorization": f"bearer   {token}  "}, expect=200)  # scheme is case-insensitive
    with db.begin() as s:
        tokens.revoke_token(s, "ci", now=clock())
    assert api.call("GET", url, token=token, expect=401).message == "the bearer token is not valid (unknown or revoked)"


def test_a_connection_scoped_token_sees_and_touches_nothing_else(api, db, acme, other, admin, make_token, enqueue):
    scoped = make_token("acme-only", connection="acme")
    mine, theirs = enqueue(acme, QUERY), enqueue(other, QUERY)
    missing = 999999

    def same_as_missing(method: str, suffix: str) -> None:
        hidden = api.call(method, f"{PREFIX}/jobs/{theirs.id}{suffix}", token=scoped, expect=404)
        absent = api.call(method, f"{PREFIX}/jobs/{missing}{suffix}", token=scoped, expect=404)
        assert hidden.message == absent.message.replace(str(missing), str(theirs.id))

    for method, suffix in (("GET", ""), ("GET", "/webhooks"), ("POST", "/cancel"), ("POST", "/retry")):
        same_as_missing(method, suffix)
    for path in ("/connections/{}/queue",):
        hidden = api.call("GET", PREFIX + path.format("other"), token=scoped, expect=404)
        absent = api.call("GET", PREFIX + path.format("nobody"), token=scoped, expect=404)
        assert hidden.message.replace("other", "nobody") == absent.message
    hidden = api.call("POST", f"{PREFIX}/connections/other/jobs", token=scoped, body={"qbxml": QUERY}, expect=404)
    assert hidden.message == "no connection named 'other'"
    assert api.call("GET", f"{PREFIX}/jobs?connection=other", token=scoped, expect=404).message == \
        "no connection named 'other'"
    depends = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=scoped,
                       body={"qbxml": QUERY, "after": [theirs.id]}, expect=400)
    assert "no such job" in depends.message

    listed = api.call("GET", f"{PREFIX}/jobs", token=scoped, expect=200).body["jobs"]
    assert [j["id"] for j in listed] == [mine.id]
    assert api.call("GET", f"{PREFIX}/jobs?connection=acme", token=scoped, expect=200).body["jobs"] == listed
    assert api.call("GET", f"{PREFIX}/jobs/{theirs.id}", token=admin, expect=200).body["connection"] == "other"
    assert {j["id"] for j in api.call("GET", f"{PREFIX}/jobs", token=admin).body["jobs"]} == {mine.id, theirs.id}
    with db.begin() as s:
        assert s.get(Job, theirs.id).state == "queued"  # the refused cancel did nothing


def test_tokens_are_stored_only_as_hashes_and_last_use_is_written_once_a_minute(api, db, acme, make_token, clock):
    token = make_token("ci")
    assert token.startswith("qwc_") and len(token) >= 4 + 43
    with db.begin() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.name == "ci"))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (row.prefix, row.name) and token.startswith(row.prefix)
        assert row.last_used_at is None
    first = clock()

    def last_used() -> datetime:
        with db.begin() as s:
            return s.scalar(select(ApiToken.last_used_at).where(ApiToken.name == "ci"))

    api.call("GET", f"{PREFIX}/jobs", token=token, expect=200)
    assert last_used() == first
    clock.advance(seconds=59)
    api.call("GET", f"{PREFIX}/jobs", token=token, expect=200)
    assert last_used() == first
    clock.advance(seconds=1)
    api.call("GET", f"{PREFIX}/jobs", token=token, expect=200)
    assert last_used() == first + timedelta(seconds=60)


# -- endpoints ---------------------------------------------------------------------------------------


def test_create_then_get_with_and_without_payloads(api, acme, admin) -> None:
    created = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin,
                       body={"qbxml": "<CustomerAddRq><CustomerAdd><Name>Zoë Ünal 😀</Name></CustomerAdd></CustomerAddRq>"},
                       expect=201)
    job = created.body
    assert created.headers["Location"] == f"{PREFIX}/jobs/{job['id']}"
    assert (job["state"], job["request_types"], job["is_write"], job["created"]) == ("queued", ["CustomerAdd"], True,
                                                                                      True)
    assert len(job["warnings"]) == 1 and "U+1F600" in job["warnings"][0] and "line 1" in job["warnings"][0]
    assert "request" not in job
    plain = api.call("GET", f"{PREFIX}/jobs/{job['id']}", token=admin, expect=200).body
    assert "request" not in plain and "created" not in plain and "warnings" not in plain
    assert [(e["from_state"], e["to_state"]) for e in plain["history"]] == [("", "queued")]
    full = api.call("GET", f"{PREFIX}/jobs/{job['id']}?payloads=true", token=admin, expect=200).body
    assert "<Name>Zoë Ünal 😀</Name>" in full["request"] and full["response"] is None
    assert full["request"].startswith("<QBXML><QBXMLMsgsRq onError=\"stopOnError\">")


def test_create_with_every_option(api, db, acme, admin, enqueue) -> None:
    first = enqueue(acme, ADD)
    body = {"qbxml": "<InvoiceQueryRq/>", "priority": 7, "after": [first.id], "not_before": "2026-12-01T09:00:00Z",
            "page_size": 100, "webhook_url": "https://example.invalid/hook", "key": "nightly", "replace": False}
    job = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin, body=body, expect=201).body
    assert (job["priority"], job["after"], job["dedupe_key"]) == (7, [first.id], "nightly")
    assert datetime.fromisoformat(job["not_before"]) == datetime.fromisoformat("2026-12-01T09:00:00+00:00")
    with db.begin() as s:
        stored = s.get(Job, job["id"])
        assert stored.webhook_url == "https://example.invalid/hook" and stored.page_size == 100
    naive = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin,
                     body={"qbxml": QUERY, "not_before": "2026-12-01T09:00:00"}, expect=201).body
    assert naive["not_before"] == "2026-12-01T09:00:00+00:00"  # no zone means UTC


def test_a_dedupe_key_returns_or_replaces_the_queued_job(api, acme, admin) -> None:
    url = f"{PREFIX}/connections/acme/jobs"
    first = api.call("POST", url, token=admin, body={"qbxml": QUERY, "key": "sync"}, expect=201).body
    again = api.call("POST", url, token=admin, body={"qbxml": ADD, "key": "sync"}, expect=200).body
    assert (again["id"], again["created"], again["request_types"]) == (first["id"], False, ["CustomerQuery"])
    replaced = api.call("POST", url, token=admin, body={"qbxml": ADD, "key": "sync", "replace": True}, expect=200).body
    assert (replaced["id"], replaced["request_types"]) == (first["id"], ["CustomerAdd"])


# -- batches --------------------------------------------------------------------------------------------

BATCH = f"{PREFIX}/connections/acme/jobs/batch"


def job_count(db) -> int:
    with db.begin() as s:
        return s.query(Job).count()


def test_a_batch_answers_every_job_in_the_order_given(api, db, acme, admin, enqueue) -> None:
    first = enqueue(acme, ADD)
    items = [
        {"qbxml": QUERY},
        {"qbxml": "<CustomerAddRq><CustomerAdd><Name>Zoë 😀</Name></CustomerAdd></CustomerAddRq>", "priority": 7},
        {"qbxml": "<InvoiceQueryRq/>", "after": [first.id], "not_before": "2026-12-01T09:00:00", "page_size": 100,
         "webhook_url": "https://example.invalid/hook", "key": "nightly"},
    ]
    answer = api.call("POST", BATCH, token=admin, body={"jobs": items}, expect=201)
    jobs = answer.body["jobs"]
    assert [j["request_types"] for j in jobs] == [["CustomerQuery"], ["CustomerAdd"], ["InvoiceQuery"]]
    ids = [j["id"] for j in jobs]
    assert ids == sorted(ids) and ids[0] > first.id and "Location" not in answer.headers
    assert [(j["created"], j["state"]) for j in jobs] == [(True, "queued")] * 3
    assert jobs[1]["priority"] == 7 and "U+1F600" in jobs[1]["warnings"][0] and jobs[0]["warnings"] == []
    assert (jobs[2]["after"], jobs[2]["dedupe_key"], jobs[2]["not_before"]) == (
        [first.id], "nightly", "2026-12-01T09:00:00+00:00")
    with db.begin() as s:
        stored = s.get(Job, ids[2])
        assert (stored.webhook_url, stored.page_size) == ("https://example.invalid/hook", 100)
        assert 'iterator="Start"' in stored.request_xml
    detail = api.call("GET", f"{PREFIX}/jobs/{ids[0]}", token=admin, expect=200).body
    assert [(e["from_state"], e["to_state"], e["reason"]) for e in detail["history"]] == [("", "queued", "enqueued")]
    # A batch whose every key matches a queued job adds nothing: 200, as createJob answers.
    again = api.call("POST", BATCH, token=admin, body={"jobs": [{"qbxml": ADD, "key": "nightly", "replace": True}]},
                     expect=200).body["jobs"]
    assert (again[0]["id"], again[0]["created"], again[0]["request_types"]) == (ids[2], False, ["CustomerAdd"])
    assert job_count(db) == 4


@pytest.mark.parametrize("body,message", [
    ({}, "jobs: required, a list of 1 to 1000 new jobs"),
    ({"jobs": []}, "jobs: required, a list of 1 to 1000 new jobs"),
    ({"jobs": {"qbxml": QUERY}}, "jobs: required, a list of 1 to 1000 new jobs"),
    ({"jobs": [{"qbxml": QUERY}], "priority": 1}, "unknown field 'priority'; the body is {\"jobs\": [...]}"),
    ({"jobs": [{"qbxml": "<CustomerQueryRq/>"}] * 1001},
     "jobs: a batch holds at most 1000 jobs; this one has 1001: split it"),
    ({"jobs": [{"qbxml": QUERY}, "<CustomerQueryRq/>"]}, "item 1: must be a JSON object"),
    ({"jobs": [{"qbxml": QUERY}, {"qbxml": QUERY, "priorty": 1}]}, "item 1: unknown field 'priorty'"),
    ({"jobs": [{"qbxml": QUERY}, {"qbxml": QUERY, "priority": "high"}]}, "item 1: priority: must be an integer"),
    ({"jobs": [{"qbxml": QUERY}, {"qbxml": QUERY, "replace": True}]}, "item 1: replace: needs a key"),
    ({"jobs": [{"qbxml": QUERY}] * 3 + [{"qbxml": QUERY, "after": [424242]}]},
     "item 3: --after 424242: no such job for connection 'acme'"),
    ({"jobs": [{"qbxml": QUERY, "page_size": 0}]}, "item 0: the page size must be between 1 and 100000"),
    ({"jobs": [{"qbxml": QUERY}, {"qbxml": QUERY, "key": " "}]}, "item 1: the dedupe key must be 1 to 200 characters"),
])
def test_a_bad_batch_is_refused_whole_naming_the_item(api, db, acme, admin, body, message) -> None:
    answer = api.call("POST", BATCH, token=admin, body=body, expect=400)
    assert answer.code == "invalid_request" and message in answer.message
    assert job_count(db) == 0


def test_bad_qbxml_in_a_batch_names_the_item_and_the_line(api, db, acme, admin) -> None:
    body = {"jobs": [{"qbxml": QUERY}, {"qbxml": ADD},
                     {"qbxml": "<CustomerQueryRq><MaxReturned>5</MaxReturned>\n<Oops></CustomerQueryRq>"}]}
    answer = api.call("POST", BATCH, token=admin, body=body, expect=422)
    assert answer.code == "invalid_qbxml"
    assert answer.message.startswith("item 2: the request is not well-formed XML")
    assert "(line 2, column" in answer.message
    assert job_count(db) == 0


def test_a_batch_is_scoped_like_create_job(api, db, acme, other, admin, make_token, enqueue) -> None:
    scoped = make_token("acme-only", connection="acme")
    theirs = enqueue(other, QUERY)
    body = {"jobs": [{"qbxml": QUERY}]}
    assert api.call("POST", f"{PREFIX}/connections/other/jobs/batch", body=body, expect=401).code == "unauthorized"
    hidden = api.call("POST", f"{PREFIX}/connections/other/jobs/batch", token=scoped, body=body, expect=404)
    absent = api.call("POST", f"{PREFIX}/connections/nobody/jobs/batch", token=scoped, body=body, expect=404)
    assert hidden.message == "no connection named 'other'" == absent.message.replace("nobody", "other")
    assert api.call("POST", f"{PREFIX}/connections/nobody/jobs/batch", token=admin, body=body,
                    expect=404).message == "no connection named 'nobody'"
    depends = api.call("POST", BATCH, token=scoped, body={"jobs": [{"qbxml": QUERY, "after": [theirs.id]}]},
                       expect=400)
    assert depends.message == f"item 0: --after {theirs.id}: no such job for connection 'acme'"
    assert job_count(db) == 1
    mine = api.call("POST", BATCH, token=scoped, body=body, expect=201).body["jobs"]
    assert mine[0]["connection"] == "acme"
    assert api.call("POST", f"{PREFIX}/connections/other/jobs/batch", token=admin, body=body,
                    expect=201).body["jobs"][0]["connection"] == "other"


def test_list_is_newest_first_with_cursor_pagination_and_state_filters(api, db, acme, other, admin, enqueue):
    ids = [enqueue(acme if n % 2 else other, QUERY).id for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        answer = api.call("GET", f"{PREFIX}/jobs?limit=2" + (f"&cursor={cursor}" if cursor else ""), token=admin,
                          expect=200).body
        seen += [j["id"] for j in answer["jobs"]]
        pages += 1
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True) and pages == 3
    exact = api.call("GET", f"{PREFIX}/jobs?limit=5", token=admin).body
    assert len(exact["jobs"]) == 5 and exact["next_cursor"] is None  # no empty last page
    acme_only = api.call("GET", f"{PREFIX}/jobs?connection=acme", token=admin).body["jobs"]
    assert [j["id"] for j in acme_only] == [ids[3], ids[1]]
    set_state(db, ids[0], "cancelled")
    set_state(db, ids[1], "done")
    by_state = api.call("GET", f"{PREFIX}/jobs?state=cancelled", token=admin).body["jobs"]
    assert [j["id"] for j in by_state] == [ids[0]]
    for query in ("state=cancelled,done", "state=cancelled&state=done"):
        assert [j["id"] for j in api.call("GET", f"{PREFIX}/jobs?{query}", token=admin).body["jobs"]] == [ids[1], ids[0]]


def test_cancel_and_retry_follow_the_state_machine(api, db, acme, admin, enqueue, clock) -> None:
    job = enqueue(acme, ADD)
    cancelled = api.call("POST", f"{PREFIX}/jobs/{job.id}/cancel", token=admin, expect=200).body
    assert cancelled["state"] == "cancelled"
    again = api.call("POST", f"{PREFIX}/jobs/{job.id}/cancel", token=admin, expect=409)
    assert again.code == "conflict" and again.message == (
        f"job {job.id} is cancelled; only queued, in-doubt or failed jobs can be cancelled")
    assert api.call("POST", f"{PREFIX}/jobs/{job.id}/retry", token=admin, expect=409).code == "conflict"
    write = enqueue(acme, ADD)
    with db.begin() as s:
        queue.fail(s, s.get(Job, write.id), clock(), "QuickBooks said no")
    retried = api.call("POST", f"{PREFIX}/jobs/{write.id}/retry", token=admin, expect=200).body
    assert (retried["state"], retried["error"]) == ("queued", None)


def test_queue_summary(api, db, acme, admin, enqueue, clock) -> None:
    for _ in range(2):
        enqueue(acme, QUERY)
    set_state(db, enqueue(acme, QUERY).id, "done")
    clock.advance(seconds=90)
    summary = api.call("GET", f"{PREFIX}/connections/acme/queue", token=admin, expect=200).body
    assert summary["connection"] == "acme" and summary["jobs"]["queued"] == 2 and summary["jobs"]["done"] == 1
    assert summary["oldest_queued_age_seconds"] == 90


# -- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data,message", [
    (b"not json", "the body is not valid JSON: Expecting value (line 1, column 1)"),
    (b'{"qbxml"\n "<A/>"}', "the body is not valid JSON: Expecting ':' delimiter (line 2, column 2)"),
    (b"", "the request body is empty; send a JSON object"),
    (b"[1]", "the body must be a JSON object"),
    (b"{}", "qbxml: required, a string"),
    (b'{"qbxml": 5}', "qbxml: required, a string"),
    (b'{"qbxml": "<CustomerQueryRq/>", "priorty": 1}', "unknown field 'priorty'"),
    (b'{"qbxml": "<CustomerQueryRq/>", "priority": "high"}', "priority: must be an integer"),
    (b'{"qbxml": "<CustomerQueryRq/>", "priority": true}', "priority: must be an integer"),
    (b'{"qbxml": "<CustomerQueryRq/>", "priority": 1e99}', "priority: must be an integer"),
    (b'{"qbxml": "<CustomerQueryRq/>", "priority": NaN}', "NaN is not a JSON number"),
    (b'{"qbxml": "<CustomerQueryRq/>", "after": "1"}', "after: must be a list of job ids"),
    (b'{"qbxml": "<CustomerQueryRq/>", "after": [0]}', "after: must be a list of job ids"),
    (b'{"qbxml": "<CustomerQueryRq/>", "after": [424242]}', "424242: no such job for connection 'acme'"),
    (b'{"qbxml": "<CustomerQueryRq/>", "replace": true}', "replace: needs a key"),
    (b'{"qbxml": "<CustomerQueryRq/>", "replace": "yes", "key": "k"}', "replace: must be true or false"),
    (b'{"qbxml": "<CustomerQueryRq/>", "key": " "}', "the dedupe key must be 1 to 200 characters"),
    (b'{"qbxml": "<CustomerQueryRq/>", "key": 5}', "key: must be a string"),
    (b'{"qbxml": "<CustomerQueryRq/>", "not_before": "tomorrow"}', "not_before: 'tomorrow' is not an ISO 8601 time"),
    (b'{"qbxml": "<CustomerQueryRq/>", "page_size": 0}', "the page size must be between 1 and 100000"),
    (b'{"qbxml": "<CustomerAddRq/>", "page_size": 10}', "only a job with exactly one"),
    (b'{"qbxml": "<CustomerQueryRq/>", "webhook_url": "file:///etc/passwd"}', "webhook_url: must be an http://"),
    (b'{"qbxml": "<CustomerQueryRq/>", "webhook_url": "https://exa mple.com/"}', "webhook_url: must be an http://"),
    (b'{"qbxml": "\xff"}', "the body is not valid JSON"),
    (b"[" * 20_000 + b"]" * 20_000, "the body is not valid JSON: nested too deeply"),
])
def test_bad_bodies_are_invalid_request_with_a_reason(api, acme, admin, data, message) -> None:
    answer = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin, data=data,
                      headers={"Content-Type": "application/json"}, expect=400)
    assert answer.code == "invalid_request" and message in answer.message
    assert "Traceback" not in answer.message


@pytest.mark.parametrize("query,message", [
    ("jobs?limit=0", "limit: must be an integer from 1 to 500"),
    ("jobs?limit=501", "limit: must be an integer from 1 to 500"),
    ("jobs?limit=ten", "limit: must be an integer from 1 to 500"),
    ("jobs?cursor=abc", "cursor: not a cursor from this API"),
    ("jobs?cursor=99999999999", "cursor: not a cursor from this API"),
    ("jobs?state=finished", "state: 'finished' is not a job state; use queued, sent, done"),
    ("jobs?conection=acme", "unknown query parameter 'conection'; this endpoint takes connection, state"),
    ("jobs/1?payloads=maybe", "payloads: must be true or false"),
])
def test_bad_query_parameters_are_invalid_request(api, acme, admin, enqueue, query, message) -> None:
    enqueue(acme, QUERY)
    answer = api.call("GET", f"{PREFIX}/{query}", token=admin, expect=400)
    assert answer.code == "invalid_request" and message in answer.message


@pytest.mark.parametrize("qbxml,message", [
    ("<CustomerQueryRq>", "the request is not well-formed XML"),
    ("<CustomerQueryRq><MaxReturned>5</MaxReturned>\n<Oops></CustomerQueryRq>", "(line 2, column"),
    ("<Customer/>", "<Customer> (line 1) is not a request"),
    ("", "the request is empty"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><QBXML/>', "DTD or entity declaration"),
])
def test_bad_qbxml_says_what_and_where(api, acme, admin, qbxml, message) -> None:
    answer = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin, body={"qbxml": qbxml}, expect=422)
    assert answer.code == "invalid_qbxml" and message in answer.message


def test_oversize_bodies_are_refused_before_they_are_read(api, acme, admin) -> None:
    class Unreadable:
        def tell(self) -> int:
            return 0

        def seek(self, *args: Any) -> int:
            return 0

        def read(self, *args: Any) -> bytes:
            raise AssertionError("the body was read")

        readline = read

    declared = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin, input_stream=Unreadable(),
                        environ_overrides={"CONTENT_LENGTH": str(SMALL_CAP + 1)}, expect=413)
    assert declared.code == "payload_too_large" and str(SMALL_CAP) in declared.message
    # A body of unknown length (chunked, terminated by the server) is cut off at the cap.
    streamed = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin,
                        input_stream=io.BytesIO(b" " * (SMALL_CAP + 10)), headers={"Transfer-Encoding": "chunked"},
                        environ_overrides={"wsgi.input_terminated": True}, expect=413)
    assert streamed.code == "payload_too_large"
    within = json.dumps({"qbxml": QUERY}).encode() + b" " * (SMALL_CAP - 100)
    api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin, data=within, expect=201)


def test_unknown_paths_and_wrong_methods_answer_json(api, db, settings, clock, acme, admin) -> None:
    for path in (f"{PREFIX}/nope", f"{PREFIX}/jobs/abc", f"{PREFIX}/jobs/0", f"{PREFIX}/jobs/99999999999",
                 f"{PREFIX}/jobs/", f"{PREFIX}//jobs"):
        assert api.call("GET", path, token=admin, expect=404).code == "not_found", path
    wrong = api.call("DELETE", f"{PREFIX}/jobs/1", token=admin, expect=405)
    assert wrong.code == "method_not_allowed" and wrong.headers["Allow"] == "GET, HEAD"
    assert api.call("PUT", f"{PREFIX}/connections/acme/jobs", expect=405).headers["Allow"] == "POST"
    assert api.call("HEAD", f"{PREFIX}/jobs", token=admin, expect=200).body is None
    # Mounted in the whole application, anything under /api/ is the API's.
    from qwc_service.conversation import Conversation

    whole = ApiClient(QwcApplication(Conversation(db, settings, clock=clock), settings))
    assert whole.call("GET", "/api/v2/jobs", expect=404).code == "not_found"
    assert whole.call("GET", f"{PREFIX}/jobs", token=admin, expect=200).body["jobs"] == []


def test_unexpected_errors_are_json_and_logged_without_secrets(api, acme, admin, monkeypatch, caplog) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(QueueClient, "enqueue", broken)
    with caplog.at_level(logging.ERROR, logger="qwc_service.api"):
        answer = api.call("POST", f"{PREFIX}/connections/acme/jobs", token=admin,
                          body={"qbxml": "<CustomerQueryRq><Name>secret body</Name></CustomerQueryRq>"}, expect=500)
    assert answer.body == {"error": {"code": "internal_error",
                                     "message": "Internal error; the server log has the details."}}
    assert "RuntimeError: internal detail" in caplog.text and "Traceback" in caplog.text
    assert admin not in caplog.text and "secret body" not in caplog.text


# -- over real HTTP --------------------------------------------------------------------------------


def test_the_api_over_http_on_the_live_server(live_server, db, clock, acme) -> None:
    with db.begin() as s:
        token, _ = tokens.create_token(s, "live", now=clock(), connection="acme")
    base = live_server.url.rsplit("/qbwc", 1)[0] + PREFIX
    auth = {"Authorization": f"Bearer {token}"}
    with requests.Session() as http:
        assert http.get(f"{base}/openapi.json", timeout=10).json()["paths"]
        refused = http.get(f"{base}/jobs", timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        created = http.post(f"{base}/connections/acme/jobs", json={"qbxml": QUERY}, headers=auth, timeout=10)
        assert created.status_code == 201, created.text
        job = http.get(f"{base}/jobs/{created.json()['id']}?payloads=true", headers=auth, timeout=10).json()
        assert job["state"] == "queued" and "<MaxReturned>5</MaxReturned>" in job["request"]
        missing = http.get(f"{base}/nope", headers=auth, timeout=10)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        big = http.post(f"{base}/connections/acme/jobs", data=b" " * (api_module.DEFAULT_MAX_BODY_BYTES + 1),
                        headers={**auth, "Content-Type": "application/json"}, timeout=30)
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        batch = http.post(f"{base}/connections/acme/jobs/batch", json={"jobs": [{"qbxml": QUERY}, {"qbxml": ADD}]},
                          headers=auth, timeout=10)
        assert batch.status_code == 201 and [j["request_types"] for j in batch.json()["jobs"]] == [
            ["CustomerQuery"], ["CustomerAdd"]]
        broken = http.post(f"{base}/connections/acme/jobs", data=b"{", headers=auth, timeout=10)
        assert broken.status_code == 400 and broken.headers["Content-Type"] == "application/json"


# -- the command line ------------------------------------------------------------------------------


@pytest.fixture
def cli(settings, monkeypatch):
    monkeypatch.setenv("QWC_DATABASE_URL", settings.database_url)
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, ["token", *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def test_token_cli_create_list_and_revoke(cli, api, acme) -> None:
    token = cli("create", "ci").stdout.strip()
    assert token.startswith("qwc_") and "\n" not in token
    scoped = json.loads(cli("create", "acme-only", "--connection", "acme", "--json").stdout)
    assert scoped["connection"] == "acme" and scoped["token"].startswith(scoped["prefix"])
    listed = json.loads(cli("list", "--json").stdout)
    assert [(t["name"], t["connection"], t["revoked_at"]) for t in listed] == [("acme-only", "acme", None),
                                                                             ("ci", None, None)]
    text = cli("list").stdout
    assert token not in text and scoped["token"] not in text and "all connections" in text
    assert token not in json.dumps(listed)
    api.call("GET", f"{PREFIX}/jobs", token=token, expect=200)
    assert "revoked" in cli("revoke", "ci").stdout
    api.call("GET", f"{PREFIX}/jobs", token=token, expect=401)
    assert json.loads(cli("list", "--json").stdout)[1]["revoked_at"] is not None
    cli("revoke", "ci")  # again: nothing changes, no error


@pytest.mark.parametrize("args,message", [
    (("create", "ci"), "a token named 'ci' already exists"),
    (("create", "x", "--connection", "nobody"), "no connection named 'nobody'"),
    (("create", " "), "the token name must be 1 to 100 characters"),
    (("revoke", "nobody"), "no token named 'nobody'"),
])
def test_token_cli_errors_are_one_line(cli, acme, args, message) -> None:
    cli("create", "ci")
    result = cli(*args, ok=False)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
