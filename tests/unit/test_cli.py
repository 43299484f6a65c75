"""The command line: one-line errors, help texts, the admin client's refusals."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.cli import build_parser, main


def test_a_bad_adc_config_argument_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["adc-config", "haproxy", "--interval", "abc"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--interval" in lines[0] and "'abc'" in lines[0]


def test_run_help_names_defaults_choices_and_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "one of local, etcd; default: local; env VIPMON_BACKEND" in " ".join(text.split())
    assert "env VIPMON_LEASE_TTL" in text
    assert "default: 8700" in text


def test_the_top_help_says_what_vipmon_is() -> None:
    text = build_parser().format_help()
    assert "``" not in text and "master role" in text


class _NotFound(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.dumps({"detail": "Not Found"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST  # http.server calls it by that name

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def no_admin_node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_admin_command_against_a_node_without_a_token_says_so(
    no_admin_node: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    code = main(["pause", "--url", no_admin_node, "--token-file", str(token), "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 1
    assert "admin API is off" in err and "Not Found" not in err


@pytest.mark.parametrize("url", ["http://127.0.0.1:8722/monitor", "http://h:1/?x=1", "ftp://h"])
def test_status_refuses_a_url_that_is_not_a_node_api(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--url", url]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("vipmon: invalid setting 'url': ") and repr(url) in line


def test_status_does_not_print_a_table_from_a_404(
    no_admin_node: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--url", no_admin_node]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "answered 404" in err


class _Recorder(BaseHTTPRequestHandler):
    """Answers every POST with 200 and keeps (path, body) on the server."""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, json.loads(raw)))  # type: ignore[attr-defined]
        body = json.dumps({"node": "n1", "maintenance": True, "handed_over_to": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_maintenance_on_force_asks_the_node_to_force_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = tmp_path / "token"
    token.write_text("secret\n")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    common = ["--url", url, "--token-file", str(token), "--timeout", "5"]
    try:
        assert main(["maintenance", "on", *common]) == 0
        assert main(["maintenance", "on", "--force", *common]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert server.seen == [  # type: ignore[attr-defined]
        ("/admin/maintenance", {"enabled": True}),  # as before: any node version takes it
        ("/admin/maintenance", {"enabled": True, "force": True}),
    ]
    assert (
        capsys.readouterr().out.splitlines()[-1] == "node=n1 maintenance=True handed_over_to=None"
    )
