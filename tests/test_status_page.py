"""/status, the operators' page: protection, escaping, and that planted problems show with their fixes.

The problems are real: simulator sessions against a live server leave a write
in doubt (a dropped connection, then a takeover), a failed job (QuickBooks'
3100 for a duplicate name), a preflight warning (the wrong QuickBooks user),
held jobs (a missing permission), and a connection whose Web Connector never
polled. The same world is then read in-process and by a real headless
Chromium, whose DOM and screenshot are checked.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import struct
import subprocess
import time
import urllib.parse
import zlib
from html.parser import HTMLParser
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from werkzeug.test import Client

from qwc_service import queue
from qwc_service.config import Settings
from qwc_service.models import Connection, Job
from qwc_service.simulator import (
    DropFault,
    FakeQuickBooks,
    FakeWebConnector,
    Faults,
    Outcome,
    build_scenario,
)
from qwc_service.status_page import LIST_LIMIT, make_status_app
from qwc_service.wsgi import QwcApplication

PASSWORD = "correct horse"  # the sync users' password (conftest's add_connection default)
STATUS_USER = "ops"
STATUS_PASSWORD = "s3cret status pw"
CHROMIUM = Path("/usr/bin/chromium")


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(STATUS_USER, STATUS_PASSWORD)


@pytest.fixture
def status_settings(settings: Settings) -> Settings:
    return replace(settings, status_user=STATUS_USER, status_password=STATUS_PASSWORD)


@pytest.fixture
def page(db, status_settings, clock) -> Client:
    return Client(make_status_app(db, status_settings, clock))


def get_html(client: Client) -> str:
    response = client.get("/status", headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def job_article(html: str, job_id: int) -> str:
    """The <article> of one job, so a command is checked next to its own job and nowhere else."""
    match = re.search(rf'<article class="[a-z_]+" id="job-{job_id}">(.*?)</article>', html, re.S)
    assert match, f"job {job_id} is not on the page"
    return match.group(1)


def job_first_line(article: str) -> str:
    match = re.search(r'<p class="first-line">(.*?)</p>', article, re.S)
    assert match, article
    return match.group(1)


def customer_add(name: str) -> str:
    return f"<CustomerAddRq><CustomerAdd><Name>{name}</Name></CustomerAdd></CustomerAddRq>"


# -- protection ---------------------------------------------------------------------------------


def test_off_without_a_password(db, settings, clock) -> None:
    client = Client(make_status_app(db, settings, clock))
    response = client.get("/status", headers=AUTH)
    assert response.status_code == 404
    text = response.get_data(as_text=True)
    assert "QWC_STATUS_PASSWORD" in text and text.count("\n") == 1
    assert "<" not in text


def test_basic_auth(page) -> None:
    missing = page.get("/status")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith('Basic realm="qwc-service status"')
    assert "<html" not in missing.get_data(as_text=True)
    for headers in (basic(STATUS_USER, "wrong"), basic("admin", STATUS_PASSWORD), basic(STATUS_USER, ""),
                    basic(STATUS_USER, STATUS_PASSWORD + "x"), {"Authorization": "Basic !!!not-base64"},
                    {"Authorization": "Bearer " + STATUS_PASSWORD}, {"Authorization": "Basic é=="},
                    {"Authorization": "Basic " + base64.b64encode(b"ops:\xff\xfe").decode()},
                    {"Authorization": "Basic " + base64.b64encode(STATUS_PASSWORD.encode()).decode()}):
        response = page.get("/status", headers=headers)
        assert response.status_code == 401, headers
        assert "WWW-Authenticate" in response.headers
    right = page.get("/status", headers=AUTH)
    assert right.status_code == 200
    assert right.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<h1>qwc-service status</h1>" in right.get_data(as_text=True)


def test_a_password_with_a_colon_and_non_ascii(db, settings, clock) -> None:
    custom = replace(settings, status_user="ops", status_password="pa:ss wörd")
    client = Client(make_status_app(db, custom, clock))
    assert client.get("/status", headers=basic("ops", "pa:ss wörd")).status_code == 200
    assert client.get("/status", headers=basic("ops", "pa:ss")).status_code == 401


@pytest.mark.parametrize("authorized", [True, False])
def test_security_headers_on_every_answer(page, authorized: bool) -> None:
    response = page.get("/status", headers=AUTH if authorized else {})
    assert response.status_code == (200 if authorized else 401)
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_only_get_and_head(page) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = page.open("/status", method=method, headers=AUTH)
        assert response.status_code == 405, method
        assert response.headers["Allow"] == "GET, HEAD"
        assert response.headers["Cache-Control"] == "no-store"
    head = page.head("/status", headers=AUTH)
    assert head.status_code == 200 and head.get_data() == b""
    assert page.head("/status").status_code == 401


def test_mounted_in_the_service(conversation, status_settings, settings) -> None:
    app = Client(QwcApplication(conversation, status_settings))
    assert app.get("/status").status_code == 401
    response = app.get("/status", headers=AUTH)
    assert response.status_code == 200 and "qwc-service status" in response.get_data(as_text=True)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert app.post("/status", headers=AUTH).status_code == 405
    off = Client(QwcApplication(conversation, settings))
    assert off.get("/status", headers=AUTH).status_code == 404
    assert "QWC_STATUS_PASSWORD" in off.get("/status").get_data(as_text=True)
    assert app.get("/healthz").get_data(as_text=True) == "ok\n"  # the neighbours still answer


def test_database_down_is_a_short_text(status_settings, clock) -> None:
    from qwc_service import database

    engine = database.make_engine("sqlite:////nonexistent-dir/qwc.db")
    client = Client(make_status_app(database.make_sessionmaker(engine), status_settings, clock))
    response = client.get("/status", headers=AUTH)
    assert response.status_code == 503
    assert "could not read the database" in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


# -- content -------------------------------------------------------------------------------------


def test_empty_states(page) -> None:
    html = get_html(page)
    assert "No connections yet: <code>qwc-service connection add NAME --user SYNC-USER</code>" in html
    assert "Nothing needs a person: no failed, in-doubt or held jobs." in html
    assert "OVERDUE" not in html
    assert '<meta http-equiv="refresh" content="60">' in html


def test_all_well(page, add_connection, clock, db) -> None:
    conn = add_connection()
    with db.begin() as s:
        s.get(Connection, conn.id).run_every_seconds = 60
    html = get_html(page)
    assert "All 1 connection on schedule; nothing needs a person." in html
    assert 'class="badge ok">on schedule' in html and "OVERDUE" not in html
    clock.advance(minutes=4)  # three schedules with no poll (counted from creation)
    html = get_html(page)
    assert '<span class="badge overdue">OVERDUE</span>' in html
    assert "the Web Connector has never polled (expected every 1 min)" in html
    assert "<title>(1) qwc-service status</title>" in html


def test_refresh_can_be_turned_off(page) -> None:
    assert 'http-equiv="refresh"' not in page.get("/status?refresh=off", headers=AUTH).get_data(as_text=True)


def test_everything_is_escaped(page, add_connection, enqueue, db, clock) -> None:
    conn = add_connection(name="<script>alert('name')</script>", username="x<b>y")
    job = enqueue(conn, customer_add("Escaped"))
    with db.begin() as s:
        queue.fail(s, s.get(Job, job.id), clock(), "<script>alert('error')</script> failed\n<img src=x onerror=alert(2)>")
    html = get_html(page)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in html
    article = job_article(html, job.id)
    assert '<p class="first-line">&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt; failed</p>' in article
    assert "&lt;img src=x onerror=alert(2)&gt;" in article  # the second line, inside <details>
    # The command that names the connection is shell-quoted, then HTML-escaped.
    with db.begin() as s:
        s.get(Connection, conn.id).enabled = False
    html = get_html(page)
    assert "qwc-service connection set &#39;&lt;script&gt;alert(&#39;&#34;&#39;&#34;&#39;name" in html


def test_long_lists_are_cut_with_a_pointer(page, add_connection, enqueue, db, clock) -> None:
    conn = add_connection()
    ids = [enqueue(conn, "<CustomerQueryRq/>").id for _ in range(LIST_LIMIT + 3)]
    with db.begin() as s:
        for job_id in ids:
            queue.fail(s, s.get(Job, job_id), clock(), f"planted failure {job_id}")
    html = get_html(page)
    assert f"Showing the newest {LIST_LIMIT} of {LIST_LIMIT + 3}" in html
    assert "<code>qwc-service jobs --state failed</code>" in html
    assert f'id="job-{ids[-1]}"' in html and f'id="job-{ids[0]}"' not in html


# -- a world with real problems ---------------------------------------------------------------------


@dataclass
class World:
    url: str  # the live server's /status
    in_doubt: int
    failed: int
    failed_first_line: str
    held: list[int]
    overdue_name: str


@pytest.fixture
def world(settings, make_live_server, add_connection, enqueue, get_job, clock, db) -> World:
    """Real sessions through the simulator leave real problems behind (about two seconds)."""
    server = make_live_server(replace(settings, session_takeover_seconds=1, status_user=STATUS_USER,
                                      status_password=STATUS_PASSWORD))
    real_now = datetime.now(timezone.utc)
    clock.now = real_now - timedelta(days=1)  # everything planted by hand happened yesterday

    # acme: a write left in doubt, a duplicate that fails, the wrong QuickBooks user.
    acme = add_connection("acme", "acme-sync")
    initech = add_connection("initech", "initech-sync")  # never polls: overdue
    globex = add_connection("globex", "globex-sync")  # a missing permission: held jobs
    with db.begin() as s:
        s.get(Connection, acme.id).run_every_seconds = 3600
        s.get(Connection, initech.id).run_every_seconds = 300
    write = enqueue(acme, customer_add("Delta"))
    dropped = FakeWebConnector(server.url, FakeQuickBooks(), faults=Faults(DropFault(call=1)),
                               username="acme-sync", password=PASSWORD, noop_wait=0.01).run()
    assert dropped.outcome is Outcome.DROPPED
    time.sleep(1.1)  # the next run takes the silent session over
    enqueue(acme, customer_add("Alpha"))
    duplicate = enqueue(acme, customer_add("Alpha"))
    quickbooks, faults = build_scenario("wrong-login-user")
    second = FakeWebConnector(server.url, quickbooks, faults=faults, username="acme-sync", password=PASSWORD,
                              noop_wait=0.01).run()
    assert second.outcome is Outcome.OK and "logged in as 'Admin'" in second.close_message
    assert get_job(write.id).state == "in_doubt"
    failed = get_job(duplicate.id)
    assert failed.state == "failed" and failed.status_code == 3100

    held = [enqueue(globex, customer_add(f"Held {n}")).id for n in range(2)]
    quickbooks, faults = build_scenario("permission-denied")
    refused = FakeWebConnector(server.url, quickbooks, faults=faults, username="globex-sync", password=PASSWORD,
                               noop_wait=0.01).run()
    assert refused.outcome is Outcome.ERROR
    assert all(get_job(job_id).state == "queued" and get_job(job_id).held_wall for job_id in held)

    enqueue(initech, "<CustomerQueryRq/>")
    clock.now = datetime.now(timezone.utc)  # the in-process page reads at the real time, like the server
    return World(url=server.url.replace("/qbwc", "/status"), in_doubt=write.id, failed=duplicate.id,
                 failed_first_line=failed.error.splitlines()[0], held=held, overdue_name="initech")


def test_planted_problems_with_their_fixes(world: World, page) -> None:
    html = get_html(page)

    # The banner names every connection that needs a person.
    assert "3 connections need attention" in html
    assert re.search(r"<li><strong>initech</strong>: <span class=\"badge overdue\">OVERDUE</span> the Web "
                     r"Connector has never polled</li>", html)

    # Connections: overdue, on schedule, schedule unknown; queue depth and oldest age.
    rows = {m.group(1): m.group(0) for m in re.finditer(
        r'<tr class="[a-z -]*"><td><strong>([a-z]+)</strong>.*?</tr>'
        r'(?:<tr class="[a-z ]*"><td></td><td colspan="8" class="session-error">.*?</tr>)?', html, re.S)}
    assert set(rows) == {"acme", "globex", "initech"}
    assert rows["initech"].startswith('<tr class="overdue">') and "OVERDUE" in rows["initech"]
    assert "(expected every 5 min)" in rows["initech"] and "Auto-Run" in rows["initech"]
    assert "<td>1</td><td>1 d</td>" in rows["initech"]  # one queued job, waiting since yesterday
    assert 'class="badge ok">on schedule' in rows["acme"] and "OVERDUE" not in rows["acme"]
    assert "just now" in rows["acme"]  # the last poll and the last successful session
    assert "schedule unknown" in rows["globex"]
    assert "qwc-service connection set globex --run-every-seconds N" in rows["globex"]
    assert "<td>2</td><td>1 d</td>" in rows["globex"]  # two held jobs are queued
    assert "<strong>Last session ended with:</strong> Job %d: QuickBooks error 3260" % world.held[0] in rows["globex"]
    assert "session-error" not in rows["acme"] + rows["initech"]

    # The preflight warning from the wrong QuickBooks user, with its fix.
    warnings = html.split('<section id="warnings">')[1].split("</section>")[0]
    assert "wrong-login-user" in warnings
    assert "QuickBooks logged in as &#39;Admin&#39;, not the dedicated sync user &#39;acme-sync&#39;" in warnings
    assert "<strong>Fix:</strong> As Admin in single-user mode:" in warnings and "Login as" in warnings

    # In doubt: check QuickBooks, then retry or cancel.
    article = job_article(html, world.in_doubt)
    assert "check in QuickBooks whether this CustomerAdd was recorded" in article
    assert "Not there: <code>qwc-service job retry %d</code> sends it again." % world.in_doubt in article
    assert "Already there: <code>qwc-service job cancel %d</code>" % world.in_doubt in article

    # Failed: QuickBooks' reason first, details collapsed, the retry command.
    article = job_article(html, world.failed)
    assert "QuickBooks error 3100 (CustomerAdd)" in world.failed_first_line
    first_line = re.search(r'<p class="first-line">(.*?)</p>', article).group(1)
    assert first_line == str(escape_text(world.failed_first_line))
    assert "<details><summary>Details</summary>" in article and "3100 (Error)" in article
    assert "then <code>qwc-service job retry %d</code> sends it again" % world.failed in article
    assert "<code>qwc-service job cancel %d</code> dismisses it" % world.failed in article

    # Held: fix the cause; the next run tries again; cancel to withdraw.
    for job_id in world.held:
        article = job_article(html, job_id)
        assert "3260" in job_first_line(article) and "permission:CustomerAdd" in article
        assert "the next Web Connector run tries again by itself" in article
        assert "<code>qwc-service job cancel %d</code>" % job_id in article
        assert "job retry" not in article

    # Sections in the order an operator acts on them.
    assert html.index('id="in-doubt"') < html.index('id="failed"') < html.index('id="held"')


def escape_text(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


# -- a real browser -------------------------------------------------------------------------------------


@pytest.fixture
def chromium_binary() -> Path:
    """Skips (never passes silently) where Debian's chromium is missing; asked for before the world is built."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed: apt-get install chromium")
    return CHROMIUM


def chromium(*args: str, profile: Path, timeout: float = 60) -> str:
    """Run Debian's chromium headless (nothing beyond 127.0.0.1 is asked for); its stdout.

    It runs in a process group of its own, so that on a timeout the browser's
    helper processes are killed with it rather than left behind.
    """
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-extensions", "--disable-default-apps", "--mute-audio",
               f"--user-data-dir={profile}", *args]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(profile), "XDG_CONFIG_HOME": str(profile / "config"),
           "XDG_CACHE_HOME": str(profile / "cache"), "LANG": "C.UTF-8"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {timeout} s: {' '.join(args)}")
    assert process.returncode == 0, f"chromium exited {process.returncode}:\n{stderr[-3000:]}"
    return stdout


def test_chromium_renders_the_planted_problems(chromium_binary: Path, world: World, tmp_path: Path) -> None:
    parts = urllib.parse.urlsplit(world.url)
    assert parts.hostname == "127.0.0.1"
    credentials = f"{urllib.parse.quote(STATUS_USER, safe='')}:{urllib.parse.quote(STATUS_PASSWORD, safe='')}"
    url = f"http://{credentials}@{parts.netloc}{parts.path}"

    dom = chromium("--dump-dom", url, profile=tmp_path / "profile")
    assert "<h1>qwc-service status</h1>" in dom, dom[:2000]  # authenticated: not the 401 text
    # Chromium serialises its own DOM (quotes in text are not escaped), so compare the text it holds.
    banner = text_of(re.search(r'<div class="banner bad">.*?</div>', dom, re.S).group(0))
    assert "initech: OVERDUE the Web Connector has never polled" in banner
    assert '<tr class="overdue"><td><strong>initech</strong>' in dom
    assert text_of(job_first_line(job_article(dom, world.failed))) == world.failed_first_line
    in_doubt = text_of(job_article(dom, world.in_doubt))
    assert f"Not there: qwc-service job retry {world.in_doubt} sends it again." in in_doubt
    assert f"Already there: qwc-service job cancel {world.in_doubt} marks it settled" in in_doubt
    assert "wrong-login-user" in text_of(dom)

    shot = tmp_path / "status.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,900", url, profile=tmp_path / "profile")
    width, height, pixels = decode_png(shot.read_bytes())
    assert (width, height) == (1280, 900)
    counts = Counter(pixels)
    background, background_count = counts.most_common(1)[0]
    assert len(counts) > 50, f"only {len(counts)} colours: the page looks blank"
    assert len(pixels) - background_count > 0.03 * len(pixels), "almost every pixel is the background colour"
    # The flags are visible, not only in the DOM: the attention banner's red, and the pink that only
    # an overdue connection's row has.
    red = sum(n for colour, n in counts.items() if _near(colour, (0xB0, 0x00, 0x20)))
    overdue_pink = sum(n for colour, n in counts.items() if _near(colour, (0xFD, 0xE7, 0xEA)))
    assert red > 20_000, f"{red} pixels of the attention banner's red"
    assert overdue_pink > 20_000, f"{overdue_pink} pixels of the overdue row's pink"


def text_of(markup: str) -> str:
    """The text a browser shows for some HTML, whitespace collapsed."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    return " ".join("".join(parser.parts).split())


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "li", "p", "div", "td", "th", "dd", "dt"):
            self.parts.append(" ")


def _near(colour: tuple[int, ...], target: tuple[int, int, int], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, target))


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """8-bit RGB/RGBA PNG → (width, height, pixels), with the stdlib only (no Pillow needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + chunk) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0], kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None, "no IHDR"
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(bytes(idat))
    assert len(raw) == height * (stride + 1)
    previous = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        _unfilter(kind, line, previous, channels)
        pixels.extend(tuple(line[i:i + 3]) for i in range(0, stride, channels))
        previous = line
    return width, height, pixels


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
        elif kind == 4:
            upper_left = previous[i - bpp] if i >= bpp else 0
            p = left + up - upper_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
            predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
            line[i] = (line[i] + predictor) & 0xFF
        else:
            raise AssertionError(f"bad PNG filter {kind}")


def test_png_decoder_tells_blank_from_drawn() -> None:
    """The screenshot check itself must be able to fail: a blank PNG has one colour."""
    def png(rows: list[bytes], width: int, height: int) -> bytes:
        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        raw = b"".join(b"\x00" + row for row in rows)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

    blank = png([b"\xff" * 30] * 4, 10, 4)
    assert set(decode_png(blank)[2]) == {(255, 255, 255)}
    drawn = png([bytes(range(i, i + 30)) for i in range(4)], 10, 4)
    assert len(set(decode_png(drawn)[2])) > 10

