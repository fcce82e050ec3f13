"""qwc-service doctor finds each planted problem and names its fix."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from qwc_service import doctor
from qwc_service.cli import main
from qwc_service.models import AuthCounter, Connection, Job, WebhookDelivery


@pytest.fixture
def env(settings) -> dict[str, str]:
    return {"QWC_DATABASE_URL": settings.database_url, "QWC_PUBLIC_URL": "https://qbwc.example.com/qbwc",
            "QWC_STATUS_PASSWORD": "pw", "QWC_METRICS_TOKEN": "t"}


def problems(findings) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in findings:
        if f.problem:
            found.setdefault(f.check, []).append(f"{f.message} | {f.fix}")
    return found


def test_a_healthy_installation_passes(env, add_connection, db, clock) -> None:
    conn = add_connection()
    with db.begin() as s:
        s.get(Connection, conn.id).run_every_seconds = 10**9  # never overdue in this test
    assert problems(doctor.examine(env)) == {}


def test_each_planted_problem_is_found_with_its_fix(env, add_connection, enqueue, db, clock) -> None:
    now = clock()
    conn = add_connection()
    sent, doubtful = enqueue(conn, "<CustomerQueryRq/>"), enqueue(conn, "<CustomerAddRq/>")
    with db.begin() as s:
        row = s.get(Connection, conn.id)
        row.run_every_seconds = 60
        row.created_at = now - timedelta(hours=2)
        job = s.get(Job, sent.id)
        job.state, job.sent_at = "sent", now - timedelta(hours=3)
        s.get(Job, doubtful.id).state = "in_doubt"
        s.add(AuthCounter(scope=f"conn:{conn.id}:addr:203.0.113.4", connection_id=conn.id,
                          client_address="203.0.113.4", failures=0, window_started_at=now,
                          locked_until=now + timedelta(hours=1), level=1, updated_at=now))
        s.add(WebhookDelivery(job_id=doubtful.id, url="https://hooks.example/x", event="in_doubt", payload="{}",
                              state="failed", attempts=12, next_attempt_at=now, created_at=now))
    found = problems(doctor.examine(env, now=now))
    text = json.dumps(found)
    assert "overdue" in text and "Web Connector is running" in text
    assert f"qwc-service connection unlock {conn.name}" in text
    assert "1 write(s) in doubt" in text and "qwc-service job retry ID" in text
    assert "sent more than 30 min ago" in text
    assert "gave up" in found["webhooks"][0]


@pytest.mark.parametrize("override,fragment", [
    ({"QWC_PUBLIC_URL": "http://qbwc.example.com/qbwc"}, "QBWC1010"),
    ({"QWC_PUBLIC_URL": "https://203.0.113.8/qbwc"}, "QBWC1001"),
    ({"QWC_PORT": "eighty"}, "QWC_PORT must be a whole number"),
])
def test_configuration_problems(env, override, fragment) -> None:
    assert fragment in json.dumps(problems(doctor.examine({**env, **override})))


def test_database_problems(env, tmp_path) -> None:
    unmigrated = doctor.examine({**env, "QWC_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"})
    assert "qwc-service db upgrade" in json.dumps(problems(unmigrated))
    gone = doctor.examine({**env, "QWC_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert "cannot reach" in json.dumps(problems(gone))


def test_cli_exit_status_and_json(env, add_connection, monkeypatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    empty = runner.invoke(main, ["doctor"])
    assert empty.exit_code == 1 and "no connections yet" in empty.output
    add_connection()
    result = runner.invoke(main, ["doctor", "--json"])
    data = json.loads(result.output)
    assert set(data) == {"ok", "findings"} and all({"check", "status", "message", "fix"} <= set(f)
                                                  for f in data["findings"])
