"""The command line, pinned: every command's ``--help`` and its exit codes on failure.

``cli_pinned.json`` holds what ``vipmon`` printed and returned for each argv below,
recorded from the code (``python -m tests.unit.test_cli_pinned`` writes it again after a
deliberate change). Each test runs the argv through ``app.cli.main`` and compares: the
exit status, stdout and stderr, line for line. The help of every command and subcommand
is found by walking the parser, so a command added without a recorded help fails too.

argparse lays out help differently from one Python version to another (and by terminal
width: COLUMNS is fixed at 80), so the texts are compared only on the version that
recorded them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

import app.cli
from app.cli import build_parser, main

PINNED = Path(__file__).with_name("cli_pinned.json")
COLUMNS = "80"
UNREACHABLE = "http://127.0.0.1:1"
TOKEN = "{token}"  # an existing token file
TMP = "{tmp}"  # a fresh directory
STUB = "{stub}"  # the stub node below

# argv -> what it checks; the expected status and output are in cli_pinned.json.
FAILURES: list[list[str]] = [
    [],
    ["bogus"],
    ["--version"],
    ["run", "--bogus"],
    ["run", "--backend", "zookeeper"],
    ["run", "--lease-ttl", "abc"],
    ["run", "--config", "/nonexistent/vipmon.toml"],
    ["status", "--bogus"],
    ["status", "--timeout", "0"],
    ["status", "--timeout", "abc"],
    ["status", "--url", "http://127.0.0.1:8700/monitor"],
    ["status", "--url", UNREACHABLE, "--timeout", "2"],
    ["switchover", "--url", UNREACHABLE],
    ["switchover", "--token-file", "/nonexistent/token"],
    ["switchover", "--url", UNREACHABLE, "--token-file", TOKEN, "--to", "n2"],
    ["switchover", "--url", STUB, "--token-file", TOKEN, "--to", "n2"],
    ["maintenance"],
    ["maintenance", "sideways"],
    ["maintenance", "on", "--url", "http://h:1/x", "--token-file", TOKEN],
    ["maintenance", "on", "--url", UNREACHABLE, "--token-file", TOKEN],
    ["pause", "--url", UNREACHABLE, "--token-file", TOKEN, "--timeout", "2"],
    ["pause", "--url", STUB, "--token-file", TOKEN],
    ["resume", "--url", STUB, "--token-file", TOKEN],
    ["resume", "--timeout", "soon"],
    ["member"],
    ["member", "forget"],
    ["member", "remember", "n9"],
    ["member", "forget", "n9", "--url", UNREACHABLE, "--token-file", TOKEN],
    ["openapi", "--bogus"],
    ["openapi", "--output", TMP + "/spec/openapi.json"],
    ["history", "--limit", "0"],
    ["history", "--limit", "x"],
    ["history", "--url", "http://h:1/x"],
    ["history", "--url", UNREACHABLE],
    ["history", "--url", STUB],
    ["adc-config"],
    ["adc-config", "squid"],
    ["adc-config", "haproxy"],
    ["adc-config", "haproxy", "--vip", "10.0.0.100:443", "--node", "n1=10.0.0.11"],
    ["adc-config", "haproxy", "--vip", "10.0.0.100:443", "--interval", "abc"],
    ["adc-config", "haproxy", "--vip", "10.0.0.100:443", "--node", "n1=10.0.0.11:80"],
    ["demo", "--nodes", "0"],
    ["demo", "--refresh", "-1"],
    ["demo", "--bogus"],
]


class _StubNode(BaseHTTPRequestHandler):
    """A node whose admin API refuses a switchover and accepts pause/resume."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if self.path == "/admin/switchover":
            self._answer(409, {"detail": "n2 is not eligible: it is in maintenance"})
        elif self.path in ("/admin/pause", "/admin/resume"):
            self._answer(200, {"paused": self.path.endswith("pause"), "term": 7})
        else:
            self._answer(404, {"detail": "Not Found"})

    def do_GET(self) -> None:
        self._answer(503, {"detail": "starting"})

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def stub_node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubNode)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def help_argvs() -> list[list[str]]:
    """``[..., "--help"]`` for vipmon and every command and subcommand, in parser order."""
    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        found.append([*path, "--help"])
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, [*path, name])

    walk(build_parser(), [])
    return found


def run(argv: Sequence[str], subst: dict[str, str]) -> dict[str, Any]:
    """Run ``vipmon argv`` in this process: its exit status and its output, by lines."""
    real = [subst.get(a, a) for a in argv]
    real = [a.replace(TMP, subst[TMP]) if a.startswith(TMP) else a for a in real]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = main(real)
        except SystemExit as exc:
            code = exc.code
    texts = [out.getvalue(), err.getvalue()]
    for key, value in subst.items():  # the varying parts back to their placeholders
        texts = [text.replace(value, key) for text in texts]
    return {
        "argv": list(argv),
        "exit": code,
        "stdout": texts[0].splitlines(),
        "stderr": texts[1].splitlines(),
    }


@contextlib.contextmanager
def environment(tmp: Path) -> Iterator[dict[str, str]]:
    """COLUMNS=80, no VIPMON_* variables, a token file, a stub node: the placeholders."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("VIPMON_")]:
        del os.environ[name]
    os.environ["COLUMNS"] = COLUMNS
    token = tmp / "token"
    token.write_text("secret\n")
    try:
        with stub_node() as url:
            yield {TOKEN: str(token), TMP: str(tmp), STUB: url}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def record(tmp: Path) -> dict[str, Any]:
    with environment(tmp) as subst:
        return {
            "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "help": [run(argv, subst) for argv in help_argvs()],
            "failures": [run(argv, subst) for argv in FAILURES],
        }


@pytest.fixture(scope="module")
def pinned() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PINNED.read_text())
    return data


@pytest.fixture
def subst(tmp_path: Path) -> Iterator[dict[str, str]]:
    with environment(tmp_path) as values:
        yield values


def test_every_command_with_a_help_is_pinned(pinned: dict[str, Any]) -> None:
    assert help_argvs() == [case["argv"] for case in pinned["help"]]


@pytest.mark.parametrize(
    "index", range(len(json.loads(PINNED.read_text())["help"])) if PINNED.exists() else []
)
def test_help_text_is_unchanged(index: int, pinned: dict[str, Any], subst: dict[str, str]) -> None:
    if pinned["python"] != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip(f"argparse's layout differs by Python version; recorded on {pinned['python']}")
    case = pinned["help"][index]
    assert run(case["argv"], subst) == case


@pytest.mark.parametrize("argv", FAILURES, ids=lambda argv: " ".join(argv) or "(none)")
def test_exit_status_and_message_are_unchanged(
    argv: list[str], pinned: dict[str, Any], subst: dict[str, str]
) -> None:
    [case] = [c for c in pinned["failures"] if c["argv"] == argv]
    got = run(argv, subst)
    assert got["exit"] == case["exit"]
    if pinned["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}":
        assert got == case


def test_the_entry_point_and_python_dash_m_reach_main() -> None:
    [script] = entry_points(group="console_scripts", name="vipmon")
    assert script.value == "app.cli:main" and script.load() is app.cli.main
    done = subprocess.run(
        [sys.executable, "-m", "app", "--version"], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"vipmon {app.__version__}\n", "")


if __name__ == "__main__":  # python -m tests.unit.test_cli_pinned: record the current code
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        PINNED.write_text(json.dumps(record(Path(tmp)), indent=1) + "\n")
    print(f"wrote {PINNED}")
