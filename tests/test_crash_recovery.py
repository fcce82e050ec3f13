"""SIGKILL the server at every step of a session: no job is lost, no write reaches QuickBooks twice.

A small TCP proxy sits between the simulated Web Connector and a real server
process. For step k of the session it either kills the server (SIGKILL) as
call k arrives, before the server sees it, or lets the server answer call k
and kills it before the answer reaches the Web Connector (the server has
committed, the Web Connector never learns it). Then the server is restarted
and the Web Connector runs again until the queue is settled.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from qwc_service.simulator import FakeQuickBooks, FakeWebConnector, Outcome, QuickBooksProfile

CALLS_PER_SESSION = 10  # serverVersion, clientVersion, authenticate, 3 × (send, receive), closeConnection
REQUEST_LINE = b"POST /qbwc HTTP/1.1"


class KillingProxy:
    """Forwards 127.0.0.1:port to the server; kills it around the k-th SOAP call."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target_port = 0
        self.kill = None  # (k, "before" | "after")
        self.victim = None  # the server process
        self.calls = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _strike(self) -> None:
        if self.victim is not None and self.victim.poll() is None:
            self.victim.send_signal(signal.SIGKILL)
            self.victim.wait()
        self.kill = None

    def _pipe(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        pending = {"after": False}
        threading.Thread(target=self._downstream, args=(server, client, pending), daemon=True).start()
        try:
            while data := client.recv(65536):
                with self.lock:
                    if data.startswith(REQUEST_LINE):
                        self.calls += 1
                        if self.kill == (self.calls, "before"):
                            self._strike()
                            break
                        if self.kill == (self.calls, "after"):
                            pending["after"] = True
                server.sendall(data)
        except OSError:
            pass
        finally:
            _hang_up(client, server)

    def _downstream(self, server: socket.socket, client: socket.socket, pending: dict) -> None:
        try:
            while data := server.recv(65536):
                with self.lock:
                    final = data
                    while final.startswith(b"HTTP/1.1 100"):  # interim 100 Continue is not the answer
                        final = final.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in final else b""
                    if pending["after"] and final:
                        self._strike()  # the server answered (and committed); the answer is lost
                        break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _hang_up(client, server)

    def close(self) -> None:
        self.listener.close()


def _hang_up(*sockets: socket.socket) -> None:
    """shutdown() first: close() alone would not wake a recv() blocked in the other thread."""
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


@pytest.fixture
def proxy():
    proxy = KillingProxy()
    yield proxy
    proxy.close()


def test_sigkill_at_every_step_loses_nothing_and_sends_no_write_twice(
    spawn_server, proxy, add_connection, enqueue, get_job
) -> None:
    conn = add_connection()
    profile = QuickBooksProfile(owner_id=conn.owner_id, file_id=conn.file_id)
    quickbooks = FakeQuickBooks(profile)
    env = {"QWC_SESSION_TAKEOVER_SECONDS": "1"}

    def start_server() -> None:
        url = spawn_server(**env)
        proxy.target_port = int(url.split(":")[2].split("/")[0])
        proxy.victim = spawn_server.processes[-1]

    def run() -> tuple[Outcome, list[str]]:
        result = FakeWebConnector(f"http://127.0.0.1:{proxy.port}/qbwc", quickbooks, username=conn.username,
                                  password="correct horse", noop_wait=0.01, timeout=20).run()
        return result.outcome, [e.request for e in result.exchanges]

    start_server()
    for step in range(1, CALLS_PER_SESSION + 1):
        for when in ("before", "after"):
            tag = f"{step}{when}"
            jobs = [enqueue(conn, f"<CustomerAddRq><CustomerAdd><Name>{tag} A</Name></CustomerAdd></CustomerAddRq>"),
                    enqueue(conn, "<CustomerQueryRq><MaxReturned>1</MaxReturned></CustomerQueryRq>"),
                    enqueue(conn, f"<CustomerAddRq><CustomerAdd><Name>{tag} B</Name></CustomerAdd></CustomerAddRq>")]
            proxy.calls, proxy.kill = 0, (step, when)
            sent: list[str] = []
            outcome, requests = run()
            sent += requests
            assert proxy.victim.wait(timeout=10) == -signal.SIGKILL, f"step {tag}: the server was not killed"
            start_server()
            for _ in range(8):  # runs until nothing is left to do
                outcome, requests = run()
                sent += requests
                if outcome is Outcome.NONE:
                    break
                if outcome is Outcome.BUSY:
                    time.sleep(1.05)  # the killed session is taken over once silent for a second
            assert outcome is Outcome.NONE, f"step {tag}: the queue never settled ({outcome})"
            states = [get_job(j.id).state for j in jobs]
            assert states[1] == "done", f"step {tag}: the query was lost: {states}"
            for job, name in ((jobs[0], f"{tag} A"), (jobs[2], f"{tag} B")):
                sent_count = sum(f"<Name>{name}</Name>" in r for r in sent)
                state = get_job(job.id).state
                assert sent_count <= 1, f"step {tag}: {name} reached QuickBooks {sent_count} times"
                assert state in ("done", "in_doubt"), f"step {tag}: {name} is {state}"
                if state == "done":
                    assert sent_count == 1
