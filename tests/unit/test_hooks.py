"""Role-change hooks: which run, in what order, with what env; timeouts and the queue."""

import logging
import os
import signal
from pathlib import Path

import pytest

from app.hooks import QUEUE_LIMIT, HookRunner, hooks_for
from app.role import Role
from app.settings import load_settings
from app.shell import OUTPUT_LIMIT, run_shell
from tests.support.nodes import wait_for

M, S, U, D = Role.MASTER, Role.STANDBY, Role.UNKNOWN, Role.DRAINING


def settings(**values):
    return load_settings({"node_id": "n1", "cluster": "c1", **values}, env={})


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def read_pid(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip() != "", timeout=10, what=path)
    return int(path.read_text())


@pytest.fixture
def runners():
    started: list[HookRunner] = []

    def make(**values) -> HookRunner:
        runner = HookRunner(settings(**values))
        runner.start()
        started.append(runner)
        return runner

    yield make
    for runner in started:
        runner.stop(timeout=5)


ALL = {"on_change": "c", "on_master": "m", "on_standby": "s"}


@pytest.mark.parametrize(
    ("previous", "role", "first", "expected"),
    [
        (U, S, True, ["on_change", "on_standby"]),  # start: drop a VIP left by a crash
        (U, M, True, ["on_change", "on_master"]),
        (S, U, False, ["on_change"]),
        (S, M, False, ["on_change", "on_master"]),
        (M, U, False, ["on_change", "on_standby"]),
        (M, D, False, ["on_change", "on_standby"]),
        (D, U, False, ["on_change"]),
        (M, Role.MAINTENANCE, False, ["on_change", "on_standby"]),
    ],
)
def test_which_hooks_run_and_in_what_order(previous, role, first, expected):
    names = [name for name, _ in hooks_for(settings(**ALL), previous, role, first=first)]
    assert names == expected


def test_unset_hooks_are_left_out():
    assert hooks_for(settings(on_master="m"), S, U, first=True) == []
    assert hooks_for(settings(on_master="m"), S, M, first=False) == [("on_master", "m")]


def test_hooks_run_in_submission_order_with_their_env(runners, tmp_path, monkeypatch):
    monkeypatch.setenv("PARENT_VAR", "kept")
    monkeypatch.setenv("VIPMON_ADMIN_TOKEN", "s3cret-s3cret-s3cret")
    out = tmp_path / "calls"
    line = (
        'echo "$VIPMON_HOOK $VIPMON_PREVIOUS_ROLE>$VIPMON_ROLE term=$VIPMON_TERM '
        "node=$VIPMON_NODE cluster=$VIPMON_CLUSTER reason=$VIPMON_REASON "
        f'parent=$PARENT_VAR token=${{VIPMON_ADMIN_TOKEN:-none}}" >> {out}'
    )
    runner = runners(on_change=line, on_master=line, on_standby=line)
    runner.submit(U, S, 0, "leader key held by another node")
    runner.submit(S, M, 7, "acquired the leader key (term 7)")
    runner.submit(M, U, 7, "shutting down")
    assert runner.idle(timeout=10)
    tail = "node=n1 cluster=c1 reason={} parent=kept token=none"
    assert out.read_text().splitlines() == [
        "on_change UNKNOWN>STANDBY term=0 " + tail.format("leader key held by another node"),
        "on_standby UNKNOWN>STANDBY term=0 " + tail.format("leader key held by another node"),
        "on_change STANDBY>MASTER term=7 " + tail.format("acquired the leader key (term 7)"),
        "on_master STANDBY>MASTER term=7 " + tail.format("acquired the leader key (term 7)"),
        "on_change MASTER>UNKNOWN term=7 " + tail.format("shutting down"),
        "on_standby MASTER>UNKNOWN term=7 " + tail.format("shutting down"),
    ]


def one_hook_record(runners, caplog, command: str) -> logging.LogRecord:
    """Run ``command`` as on_change for STANDBY -> MASTER, term 3; its one log record."""
    caplog.set_level(logging.INFO, logger="vipmon.hooks")
    runner = runners(on_change=command)
    runner.submit(S, M, 3, "acquired the leader key")
    assert runner.idle(timeout=10)
    [record] = [r for r in caplog.records if r.name == "vipmon.hooks"]
    return record


def test_exit_code_and_output_are_logged(runners, caplog):
    record = one_hook_record(runners, caplog, "echo to-out; echo to-err >&2; exit 4")
    assert record.levelno == logging.WARNING
    assert record.exit_code == 4
    assert (record.hook, record.from_role, record.to_role, record.term) == (
        "on_change",
        "STANDBY",
        "MASTER",
        3,
    )
    assert "to-out" in record.getMessage()
    assert "to-err" in record.getMessage()


def test_long_output_is_trimmed_to_its_tail(runners, caplog):
    loop = "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done"
    record = one_hook_record(runners, caplog, loop)
    message = record.getMessage()
    assert record.exit_code == 0
    assert "line-1999" in message
    assert "line-0\n" not in message
    assert "bytes cut" in message
    assert len(message) < OUTPUT_LIMIT + 200


def test_a_hook_that_hangs_is_killed_with_its_group_and_the_queue_moves_on(
    runners, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="vipmon.hooks")
    pidfile, after = tmp_path / "pid", tmp_path / "after"
    runner = runners(
        hook_timeout="0.5",
        on_master=f"sleep 30 & echo $! > {pidfile}; wait",
        on_standby=f"echo ran > {after}",
    )
    runner.submit(S, M, 1, "acquired")
    runner.submit(M, U, 1, "shutting down")
    child = read_pid(pidfile)
    assert runner.idle(timeout=10)
    assert after.read_text() == "ran\n"
    wait_for(lambda: gone(child), timeout=5, what="the hook's background child to be killed")
    messages = [r.getMessage() for r in caplog.records if r.name == "vipmon.hooks"]
    assert any("on_master timed out after 0.5 s; process group killed" in m for m in messages)


def test_submit_never_blocks_and_the_queue_drops_the_oldest(runners, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vipmon.hooks")
    pidfile = tmp_path / "pid"
    runner = runners(hook_timeout="60", on_change=f"echo $$ > {pidfile}; exec sleep 30")
    runner.submit(S, M, 1, "first")
    hook = read_pid(pidfile)
    for i in range(QUEUE_LIMIT + 5):
        runner.submit(M, S, i, "flap")
    assert not gone(hook), "every submit returned while the first hook still ran"
    assert not runner.idle(timeout=0.1)
    drops = [r for r in caplog.records if "hook queue full" in r.getMessage()]
    assert len(drops) == 5
    runner.stop(timeout=0.5)
    wait_for(lambda: gone(hook), timeout=5, what="stop() to kill the running hook")
    not_run = [r for r in caplog.records if "not run: shutting down" in r.getMessage()]
    assert len(not_run) == QUEUE_LIMIT
    runner.submit(S, M, 9, "after stop")
    assert any("hooks stopped" in r.getMessage() for r in caplog.records)


def test_stop_runs_what_is_queued(tmp_path):
    out = tmp_path / "calls"
    runner = HookRunner(settings(on_change=f"echo $VIPMON_ROLE >> {out}"))
    runner.submit(U, S, 0, "a")  # before start: runs once started
    runner.start()
    runner.submit(S, M, 1, "b")
    runner.stop(timeout=10)
    assert out.read_text().splitlines() == ["STANDBY", "MASTER"]


def test_idle_is_true_when_nothing_was_submitted(runners):
    assert runners(on_change="true").idle(timeout=1)


def test_run_shell_does_not_wait_for_a_background_child_holding_the_output(tmp_path):
    result = run_shell("sleep 30 & echo $!", timeout=10, env={"PATH": "/usr/bin:/bin"})
    child = int(result.output)
    try:
        assert (result.returncode, result.timed_out) == (0, False)
        assert not gone(child)
    finally:
        os.kill(child, signal.SIGKILL)
