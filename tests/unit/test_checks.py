"""Local health checks: http, tcp, command; rise/fall; timeouts; the checker thread."""

import http.server
import socket
import threading

import pytest

from app.checks import CheckRunner, CheckState
from app.clock import FakeClock
from app.settings import load_settings
from tests.support.nodes import wait_for
from tests.support.ports import free_port
from tests.unit.test_hooks import gone


def settings(**values):
    return load_settings({"check_interval": "5", "check_timeout": "1", **values}, env={})


class Health:
    """A local HTTP server answering every GET with ``status``."""

    def __init__(self) -> None:
        self.status = 200
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def health():
    server = Health()
    yield server
    server.close()


@pytest.fixture
def listener():
    """A TCP port that accepts connections into its backlog and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


class Recorder:
    def __init__(self) -> None:
        self.changes: list[CheckState] = []

    def __call__(self, state: CheckState) -> None:
        self.changes.append(state)


def test_without_a_check_the_node_is_ok_and_nothing_runs():
    runner = CheckRunner(settings(), FakeClock(5.0))
    assert runner.state == CheckState(False, True, "no local check", 5.0)
    runner.start()
    assert runner.run_once()
    runner.stop(timeout=1)
    assert runner.state.ok


def test_rise_and_fall(health):
    clock, seen = FakeClock(), Recorder()
    runner = CheckRunner(
        settings(check_http=health.url, check_rise="2", check_fall="3"), clock, on_change=seen
    )
    assert runner.state == CheckState(True, False, "waiting for 2 passing checks", 1000.0)

    clock.advance(1)
    assert runner.run_once()
    assert not runner.state.ok
    assert runner.state.detail == "waiting for 2 passing checks (1 so far)"
    clock.advance(1)
    assert runner.run_once()
    assert runner.state == CheckState(True, True, "checks passing", 1002.0)
    assert [s.ok for s in seen.changes] == [True]

    health.status = 500
    for failures in (1, 2):
        clock.advance(1)
        assert not runner.run_once()
        assert runner.state.ok
        assert runner.state.detail == f"http {health.url}: 500 ({failures} of 3 failures)"
        assert runner.state.since == 1002.0
    clock.advance(1)
    assert not runner.run_once()
    assert runner.state == CheckState(True, False, f"http {health.url}: 500", 1005.0)
    assert [s.ok for s in seen.changes] == [True, False]

    health.status = 204
    assert runner.run_once()
    assert not runner.state.ok
    health.status = 503  # a failure resets the count of passes
    assert not runner.run_once()
    health.status = 200
    assert runner.run_once()
    assert not runner.state.ok
    assert runner.run_once()
    assert runner.state.ok
    assert [s.ok for s in seen.changes] == [True, False, True]


@pytest.mark.parametrize("status", [301, 404, 500])
def test_http_passes_only_on_2xx(health, status):
    health.status = status
    runner = CheckRunner(settings(check_http=health.url, check_rise="1"), FakeClock())
    assert not runner.run_once()
    assert runner.state.detail == f"http {health.url}: {status}"


def test_http_connection_refused():
    url = f"http://127.0.0.1:{free_port()}/health"
    runner = CheckRunner(settings(check_http=url), FakeClock())
    assert not runner.run_once()
    assert runner.state.detail == f"http {url}: connection refused"


def test_http_that_never_answers_times_out(listener):
    url = f"http://127.0.0.1:{listener}/health"
    runner = CheckRunner(settings(check_http=url, check_timeout="0.3"), FakeClock())
    assert not runner.run_once()
    assert runner.state.detail.startswith(f"http {url}: timed out after 0.")


def test_tcp(listener):
    refused = f"127.0.0.1:{free_port()}"
    assert CheckRunner(settings(check_tcp=f"127.0.0.1:{listener}"), FakeClock()).run_once()
    runner = CheckRunner(settings(check_tcp=refused), FakeClock())
    assert not runner.run_once()
    assert runner.state.detail == f"tcp {refused}: connection refused"


def test_command_exit_status_and_last_line_of_stderr():
    assert CheckRunner(settings(check_command="test 1 -eq 1"), FakeClock()).run_once()
    runner = CheckRunner(
        settings(check_command="echo out; echo first >&2; echo 'db down' >&2; exit 3"),
        FakeClock(),
    )
    assert not runner.run_once()
    assert runner.state.detail == "command exit 3: db down"


def test_command_that_hangs_is_killed_with_its_group(tmp_path):
    pidfile = tmp_path / "pid"
    runner = CheckRunner(
        settings(check_command=f"sleep 30 & echo $! > {pidfile}; wait", check_timeout="0.5"),
        FakeClock(),
    )
    assert not runner.run_once()
    assert runner.state.detail == "command timed out after 0.5 s"
    child = int(pidfile.read_text())
    wait_for(lambda: gone(child), timeout=5, what="the check's background child to be killed")


def test_every_configured_check_must_pass(health):
    refused = f"127.0.0.1:{free_port()}"
    runner = CheckRunner(
        settings(check_http=health.url, check_tcp=refused, check_command="true", check_rise="1"),
        FakeClock(),
    )
    assert not runner.run_once()
    assert runner.state.detail == f"tcp {refused}: connection refused"


def test_the_thread_checks_on_its_own_and_stop_kills_a_hanging_check(health, tmp_path):
    seen = Recorder()
    runner = CheckRunner(
        settings(check_http=health.url, check_interval="0.3", check_timeout="0.25"),
        FakeClock(),
        on_change=seen,
    )
    runner.start()
    try:
        wait_for(lambda: runner.state.ok, timeout=10, what="two passing rounds")
        health.status = 500
        wait_for(lambda: not runner.state.ok, timeout=10, what="two failing rounds")
    finally:
        runner.stop(timeout=5)
    assert [s.ok for s in seen.changes] == [True, False]

    pidfile = tmp_path / "pid"
    hanging = CheckRunner(
        settings(
            check_command=f"echo $$ > {pidfile}; exec sleep 30",
            check_interval="30",
            check_timeout="20",
        ),
        FakeClock(),
    )
    hanging.start()
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text() != "", timeout=10, what=pidfile)
        state = hanging.state  # readable while the check hangs
        assert (state.ok, state.detail) == (False, "waiting for 2 passing checks")
    finally:
        hanging.stop(timeout=5)
    wait_for(lambda: gone(int(pidfile.read_text())), timeout=5, what="stop to kill the check")
    assert hanging.state.detail == "waiting for 2 passing checks"  # a stopped round says nothing


def test_a_callback_that_raises_does_not_stop_the_checks(health, caplog):
    def explode(state: CheckState) -> None:
        raise RuntimeError("bug in the callback")

    runner = CheckRunner(
        settings(check_http=health.url, check_rise="1"), FakeClock(), on_change=explode
    )
    assert runner.run_once()
    assert runner.state.ok
    assert any("on_change callback failed" in r.getMessage() for r in caplog.records)
