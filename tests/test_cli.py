"""The qwc-service command line, as an operator or a script uses it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qwc_service.cli import main


@pytest.fixture
def cli(settings, monkeypatch):
    monkeypatch.setenv("QWC_DATABASE_URL", settings.database_url)
    for name in ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST", "ARGON2_PARALLELISM"):
        monkeypatch.setenv(f"QWC_{name}", {"ARGON2_MEMORY_COST": "8"}.get(name, "1"))
    runner = CliRunner()

    def run(*args: str, input: str | None = None, ok: bool = True):
        result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def test_connection_add_list_and_enqueue(cli, tmp_path) -> None:
    out = cli("connection", "add", "acme", "--user", "acme-sync", "--password-stdin", input="s3cret\n").output
    assert "acme-sync" in out and "s3cret" not in out
    rows = json.loads(cli("connection", "list", "--json").output)
    assert rows[0]["name"] == "acme" and rows[0]["owner_id"].startswith("{") and rows[0]["company_file"] == ""
    assert "password" not in json.dumps(rows).lower()

    request = tmp_path / "q.xml"
    request.write_text("<CustomerQueryRq><MaxReturned>5</MaxReturned></CustomerQueryRq>", encoding="utf-8")
    first = int(cli("enqueue", "acme", str(request)).output)
    second = int(cli("enqueue", "acme", "-", "--priority", "3", input="<CustomerAddRq><CustomerAdd/></CustomerAddRq>").output)
    assert second == first + 1

    listed = json.loads(cli("jobs", "--json").output)
    assert [(j["id"], j["state"], j["request_types"], j["is_write"]) for j in listed] == [
        (second, "queued", ["CustomerAdd"], True), (first, "queued", ["CustomerQuery"], False)]
    assert "request" not in listed[0]  # lists stay small; payloads are per job
    shown = json.loads(cli("job", str(first), "--json").output)
    assert "<MaxReturned>5</MaxReturned>" in shown["request"] and shown["response"] is None
    assert "state: queued" in cli("job", str(first)).output
    assert json.loads(cli("jobs", "--state", "done", "--json").output) == []
    assert len(json.loads(cli("jobs", "--connection", "acme", "--state", "queued", "--json").output)) == 2


@pytest.mark.parametrize("args,input,message", [
    (("enqueue", "nobody", "-"), "<CustomerQueryRq/>", "no connection named 'nobody'"),
    (("enqueue", "acme", "-"), "<CustomerQueryRq>", "not well-formed XML"),
    (("enqueue", "acme", "-"), "", "the request is empty"),
    (("job", "999"), None, "no job with id 999"),
    (("jobs", "--connection", "nobody"), None, "no connection named 'nobody'"),
    (("connection", "add", "acme", "--user", "other", "--password-stdin"), "pw\n", "already exists"),
    (("connection", "add", "second", "--user", "acme-sync", "--password-stdin"), "pw\n", "another connection"),
    (("connection", "add", "third", "--user", "u3", "--password-stdin"), "\n", "no password"),
])
def test_bad_input_is_one_clear_line(cli, args, input, message) -> None:
    cli("connection", "add", "acme", "--user", "acme-sync", "--password-stdin", input="pw\n")
    result = cli(*args, input=input, ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_password_is_prompted_not_an_argument(cli) -> None:
    result = cli("connection", "add", "acme", "--user", "u", "--password", "x", ok=False)
    assert result.exit_code != 0 and "No such option" in result.output


def test_bad_setting_is_named(cli, monkeypatch) -> None:
    monkeypatch.setenv("QWC_PORT", "eighty")
    result = cli("jobs", ok=False)
    assert "QWC_PORT" in result.output and result.exit_code == 1


def test_db_upgrade_reports_the_revision(cli) -> None:
    import re

    output = cli("db", "upgrade").output
    assert re.search(r"at revision (\d{4}) \(head \1\)", output), output


def test_serve_answers_on_the_port(spawn_server, tmp_path) -> None:
    """The real console entry point, as a separate process."""
    import requests

    url = spawn_server()
    assert requests.get(url, timeout=5).status_code == 200
    assert url.rsplit(":", 1)[1] in "".join(p.read_text() for p in tmp_path.glob("server-*.log"))


def test_job_controls_and_history(cli, db) -> None:
    cli("connection", "add", "acme", "--user", "acme-sync", "--password-stdin", input="pw\n")
    customer = int(cli("enqueue", "acme", "-", "--key", "cust-1", input="<CustomerAddRq><CustomerAdd/></CustomerAddRq>").output)
    again = cli("enqueue", "acme", "-", "--key", "cust-1", input="<CustomerAddRq><CustomerAdd/></CustomerAddRq>")
    assert int(again.output.splitlines()[-1]) == customer and "no new job was added" in again.output
    invoice = json.loads(cli("enqueue", "acme", "-", "--after", str(customer), "--not-before", "2030-01-01T00:00:00",
                             "--json", input="<InvoiceAddRq><InvoiceAdd/></InvoiceAddRq>").output)
    assert invoice["after"] == [customer] and invoice["not_before"].startswith("2030-01-01T00:00:00+00:00")

    assert "cancelled" in cli("job", "cancel", str(customer)).output
    shown = json.loads(cli("job", str(invoice["id"]), "--json").output)
    assert shown["state"] == "failed" and f"waits for job {customer}" in shown["error"]
    assert [h["to_state"] for h in shown["history"]] == ["queued", "failed"]
    assert "queued again" in cli("retry", str(invoice["id"])).output
    refused = cli("job", "retry", str(invoice["id"]), ok=False)
    assert refused.exit_code == 1 and "only failed or in-doubt jobs can be retried" in refused.output
    assert "history:" in cli("job", str(invoice["id"])).output


def test_warnings_and_bad_options(cli) -> None:
    cli("connection", "add", "acme", "--user", "acme-sync", "--password-stdin", input="pw\n")
    result = cli("enqueue", "acme", "-", input="<CustomerAddRq><CustomerAdd><Name>Tea ☕</Name></CustomerAdd></CustomerAddRq>")
    assert "warning:" in result.output and "U+2615" in result.output
    assert cli("enqueue", "acme", "-", "--replace", input="<CustomerQueryRq/>", ok=False).exit_code == 1
    bad_time = cli("enqueue", "acme", "-", "--not-before", "tomorrow", input="<CustomerQueryRq/>", ok=False)
    assert bad_time.exit_code != 0 and "ISO 8601" in bad_time.output
    bad_after = cli("enqueue", "acme", "-", "--after", "999", input="<CustomerQueryRq/>", ok=False)
    assert "--after 999" in bad_after.output
    paged = cli("enqueue", "acme", "-", "--page-size", "10", input="<CustomerAddRq/>", ok=False)
    assert "only a job with exactly one" in paged.output


def test_prune_and_explain(cli) -> None:
    pruned = cli("prune", "--older-than", "30d").output
    assert "pruned the payloads of 0 finished jobs" in pruned and "removed 0 authentication events" in pruned
    assert cli("prune", "--older-than", "soon", ok=False).exit_code != 0
    explained = cli("explain", "3260").output
    assert "3260" in explained and "permission" in explained.lower()
    assert "0x80040408" in cli("explain", "0x80040408").output


def test_simulate_shows_a_whole_sync_and_cleans_up(cli, live_server) -> None:
    cli("connection", "add", "demo", "--user", "demo-sync", "--password-stdin", input="pw\n")
    happy = cli("simulate", "demo", "--url", live_server.url, "--password-stdin", input="pw\n")
    assert "authenticate demo-sync / ********" in happy.output and "pw" not in happy.output.split("Jobs:")[0]
    assert "Outcome: ok" in happy.output and "QBWC shows: 3 jobs done, 0 failed" in happy.output

    denied = cli("simulate", "demo", "--url", live_server.url, "--password-stdin", "--scenario",
                 "permission-denied", input="pw\n", ok=False)
    assert denied.exit_code == 1
    assert "3260" in denied.output and "withdrawn after the simulation" in denied.output
    assert json.loads(cli("jobs", "--state", "queued", "--json").output) == []  # nothing left behind

    data = json.loads(cli("simulate", "demo", "--url", live_server.url, "--password-stdin", "--json",
                          input="pw\n").output)
    assert data["outcome"] == "ok" and [c["operation"] for c in data["calls"]][-1] == "closeConnection"


def test_simulate_refuses_to_answer_real_jobs(cli, live_server) -> None:
    cli("connection", "add", "acme", "--user", "acme-sync", "--password-stdin", input="pw\n")
    cli("enqueue", "acme", "-", input="<CustomerAddRq><CustomerAdd><Name>Real</Name></CustomerAdd></CustomerAddRq>")
    refused = cli("simulate", "acme", "--url", live_server.url, "--password-stdin", input="pw\n", ok=False)
    assert refused.exit_code == 1 and "--use-queued-jobs" in refused.output


def test_connection_show_reports_the_last_session_and_its_warnings(cli, live_server) -> None:
    cli("connection", "add", "demo", "--user", "demo-sync", "--password-stdin", input="pw\n")
    cli("connection", "set", "demo", "--qb-user", "Sync Bot")
    cli("simulate", "demo", "--url", live_server.url, "--password-stdin", "--scenario", "wrong-login-user",
        input="pw\n")
    shown = json.loads(cli("connection", "show", "demo", "--json").output)
    assert shown["qb_user"] == "Sync Bot"
    assert shown["last_session"]["jobs_done"] == 1
    (warning,) = shown["last_session"]["warnings"]
    assert warning["code"] == "wrong-login-user" and "'Sync Bot'" in warning["summary"]
    assert [e["result"] for e in shown["auth_events"]] == ["ok"]
    text = cli("connection", "show", "demo").output
    assert "warning: QuickBooks logged in as 'Admin'" in text and "fix:" in text
