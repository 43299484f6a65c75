"""``vipmon adc-config``: output shape, argument errors, and the shipped deploy/ files."""

import re
import shlex
from pathlib import Path

import pytest

from app import cli
from app.cli import main

REPO = Path(__file__).resolve().parents[2]
NODES = [
    "--node",
    "n1=10.0.0.11:8080",
    "--node",
    "n2=10.0.0.12:8080",
    "--node",
    "n3=10.0.0.13:8080",
]
BASE = ["--vip", "10.0.0.100:443", *NODES]


def run(capsys, *argv):
    code = main(["adc-config", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def directives(text):
    """The config lines that are not comments or blank."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_haproxy_status_style(capsys):
    code, out, err = run(capsys, "haproxy", *BASE)
    assert (code, err) == (0, "")
    lines = directives(out)
    assert "option httpchk" in lines
    assert "http-check send meth GET uri /monitor ver HTTP/1.1 hdr Host vipmon" in lines
    assert "http-check expect status 200" in lines
    assert (
        "default-server check inter 1s fastinter 1s downinter 1s rise 3 fall 1 "
        "on-marked-down shutdown-sessions"
    ) in lines
    assert "server n2 10.0.0.12:8080 port 8700" in lines
    assert "bind 10.0.0.100:443" in lines
    assert "load-server-state-from-file global" in lines
    # The figures are comments, so the output stays a valid haproxy.cfg.
    assert "# Two servers UP at once: never, in every case below" in out
    assert re.search(r"^#   max\(.*\) = 5\.5 s$", out, re.MULTILINE)


def test_haproxy_drain_style_goes_nolb_on_draining(capsys):
    _, out, _ = run(capsys, "haproxy", *BASE, "--check", "drain")
    lines = directives(out)
    assert "http-check expect rstring ROLE=(MASTER|DRAINING)" in lines
    assert "http-check expect ! string ROLE=DRAINING error-status L7OKC" in lines
    assert "http-check expect status 200" not in lines


def test_haproxy_agent_style(capsys):
    _, out, _ = run(capsys, "haproxy", *BASE, "--check", "agent", "--agent-port", "8701")
    lines = directives(out)
    default = next(line for line in lines if line.startswith("default-server"))
    assert "agent-check agent-port 8701 agent-inter 1s" in default
    assert "http-check expect rstring ROLE=(MASTER|DRAINING)" in lines


def test_per_node_monitor_port(capsys):
    _, out, _ = run(
        capsys,
        "haproxy",
        "--vip",
        "10.0.0.100:443",
        "--node",
        "a=10.0.0.1:80/9000",
        "--node",
        "b=10.0.0.2:80",
        "--monitor-port",
        "9100",
    )
    assert "server a 10.0.0.1:80 port 9000" in out
    assert "server b 10.0.0.2:80 port 9100" in out


def test_haproxy_state_seed_has_every_server_down(capsys):
    _, out, _ = run(capsys, "haproxy-state", *NODES)
    lines = out.splitlines()
    assert lines[0] == "1"
    rows = [line.split() for line in lines if not line.startswith("#")][1:]
    assert [(r[1], r[3], r[4], r[5], r[12], r[18]) for r in rows] == [
        ("vipmon_nodes", f"n{i}", f"10.0.0.1{i}", "0", "0", "8080") for i in (1, 2, 3)
    ]


def test_f5_script(capsys):
    _, out, _ = run(capsys, "f5", *BASE)
    assert out.startswith("#!/bin/sh\n")
    monitor = next(line for line in out.splitlines() if "create ltm monitor http" in line)
    assert "interval 1 timeout 4 time-until-up 5 destination *:8700" in monitor
    assert 'send "GET /monitor HTTP/1.1\\r\\nHost: vipmon\\r\\nConnection: Close\\r\\n\\r\\n"' in (
        monitor
    )
    assert 'recv "ROLE=MASTER" recv-disable "ROLE=DRAINING"' in monitor
    assert "service-down-action reset" in out
    assert "create ltm virtual /Common/vipmon_vs destination /Common/10.0.0.100:443" in out


def test_f5_monitor_per_port(capsys):
    _, out, _ = run(
        capsys,
        "f5",
        "--vip",
        "10.0.0.100:443",
        "--node",
        "a=10.0.0.1:80",
        "--node",
        "b=10.0.0.2:80/8701",
        "--partition",
        "Apps",
    )
    assert "/Apps/vipmon_monitor_8700" in out and "/Apps/vipmon_monitor_8701" in out
    assert "/Apps/b:80 { monitor /Apps/vipmon_monitor_8701 }" in out


def test_nginx_plus_snippet(capsys):
    _, out, _ = run(capsys, "nginx-plus", *BASE)
    lines = directives(out)
    check = next(line for line in lines if line.startswith("health_check"))
    for word in (
        "uri=/monitor",
        "port=8700",
        "interval=1s",
        "fails=1",
        "passes=3",
        "match=vipmon_master",
        "mandatory",
        "persistent;",
    ):
        assert word in check.split()
    assert 'body ~ "ROLE=MASTER";' in lines
    assert "zone vipmon_nodes 64k;" in lines


def test_nginx_passive_snippet(capsys):
    _, out, _ = run(capsys, "nginx", *BASE)
    lines = directives(out)
    assert "server 10.0.0.11:8080 max_fails=0;" in lines
    assert "proxy_next_upstream error timeout http_503 non_idempotent;" in lines
    assert "proxy_next_upstream_tries 3;" in lines
    assert "# Two servers UP at once: not applicable." in out


@pytest.mark.parametrize(
    ("argv", "argument", "reason"),
    [
        (["haproxy", *NODES], "--vip", "required"),
        (["haproxy", "--vip", "10.0.0.100", *NODES], "--vip", "HOST:PORT"),
        (["haproxy", "--vip", "10.0.0.100:443"], "--node", "at least one"),
        (["haproxy", *BASE, "--node", "n1=10.0.0.14:8080"], "--node", "given twice"),
        (["haproxy", *BASE, "--rise", "0"], "--rise", "at least 1"),
        (["haproxy", *BASE, "--interval", "0"], "--interval", "greater than 0"),
        (["haproxy", *BASE, "--rise", "2"], "--rise", "two servers UP"),
        (["haproxy", *BASE, "--agent-port", "8701"], "--agent-port", "--check agent"),
        (["haproxy", *BASE, "--check", "agent"], "--agent-port", "--check agent"),
        (["haproxy", *BASE, "--partition", "x"], "--partition", "does not apply"),
        (["haproxy", *BASE, "--stats-socket", "run/x.sock"], "--stats-socket", "absolute"),
        (["haproxy", *BASE, "--host-header", "a b"], "--host-header", "not a host name"),
        (["haproxy", *BASE, "--lease-margin", "3"], "--lease-margin", "no validity"),
        (["haproxy-state", "--node", "n1=node1:8080"], "--node", "not an IP address"),
        (["f5", *BASE, "--interval", "1.5"], "--interval", "whole seconds"),
        (["f5", *BASE, "--time-until-up", "4"], "--time-until-up", "two servers UP"),
        (["f5", "--vip", "vip.example:443", *NODES], "--vip", "not an IP address"),
        (["f5", *BASE, "--rise", "3"], "--rise", "does not apply"),
        (["nginx-plus", *BASE, "--node", "n4=10.0.0.14:8080/8701"], "--node", "one port="),
        (["nginx", *BASE, "--tries", "2"], "--tries", "fewer than the 3 nodes"),
        (["nginx", *BASE, "--interval", "1"], "--interval", "does not apply"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(capsys, argv, argument, reason):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith(f"vipmon adc-config: argument {argument}: ")
    assert reason in err


def test_argparse_errors_also_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["adc-config", "haproxy", *BASE, "--rise", "many"])
    assert info.value.code == 2
    assert "argument --rise" in capsys.readouterr().err


def test_allow_overlap_prints_the_figures(capsys):
    code, out, _ = run(
        capsys, "haproxy", *BASE, "--interval", "2", "--rise", "2", "--fall", "3", "--allow-overlap"
    )
    assert code == 0
    assert "# Two servers UP at once: YES" in out
    assert "--allow-overlap" in out.splitlines()[1]


def generated_files():
    """The files under the ADC directories of deploy/ (other directories belong elsewhere)."""
    dirs = [REPO / "deploy" / d for d in ("haproxy", "f5", "nginx", "caddy")]
    return sorted(p for d in dirs for p in d.rglob("*") if p.is_file())


def test_every_deploy_file_is_generated():
    assert {p.relative_to(REPO).as_posix() for p in generated_files()} == {
        "deploy/caddy/Caddyfile",
        "deploy/caddy/Caddyfile-fenced",
        "deploy/f5/vipmon-tmsh-fast.sh",
        "deploy/f5/vipmon-tmsh.sh",
        "deploy/haproxy/haproxy-agent.cfg",
        "deploy/haproxy/haproxy-drain.cfg",
        "deploy/haproxy/haproxy-fast.cfg",
        "deploy/haproxy/haproxy-fenced-fast.cfg",
        "deploy/haproxy/haproxy-fenced.cfg",
        "deploy/haproxy/haproxy-tls.cfg",
        "deploy/haproxy/haproxy.cfg",
        "deploy/haproxy/vipmon-servers.state",
        "deploy/nginx/vipmon-fenced.conf",
        "deploy/nginx/vipmon-passive.conf",
        "deploy/nginx/vipmon-plus-fast.conf",
        "deploy/nginx/vipmon-plus.conf",
    }


@pytest.mark.parametrize("path", generated_files(), ids=lambda p: p.name)
def test_deploy_file_matches_its_generator(capsys, path):
    """Each shipped file names the command that made it; running it again gives the same text."""
    text = path.read_text()
    command = re.search(r"^# Generated by: (.*)$", text, re.MULTILINE)
    assert command, f"{path} does not say how it was generated"
    argv = shlex.split(command.group(1))
    assert argv[:2] == ["vipmon", "adc-config"]
    assert main(argv[1:]) == 0
    assert capsys.readouterr().out == text


def test_adc_config_is_wired_into_vipmon(capsys):
    """``vipmon adc-config`` reaches the same code (needs app/cli.py to mount the parsers)."""
    assert cli.main(["adc-config", "haproxy", *BASE]) == 0
    assert "backend vipmon_nodes" in capsys.readouterr().out


def test_fast_profile_timers_and_figures(capsys):
    code, out, _ = run(capsys, "haproxy", *BASE, "--profile", "fast")
    assert code == 0
    assert "inter 200ms fastinter 250ms downinter 200ms rise 2 fall 1" in out
    assert "timeout check 150ms" in out
    assert "# Two servers UP at once: never" in out
    assert "= 2.95 s" in out  # TTL 2 + 0.5 s expiry lag + downinter + (rise - 1) x fastinter
    assert "held etcd's leader: + 3 x 1 s etcd election timeout" in out
    assert "= 5.95 s" in out  # and when the master's host was etcd's leader too
    assert "planned handover: g settle 0.01 s | 0.2 s | 0.26 s | 0.06 s to spare" in out
    # no server UP: settle + (rise - 1) x fastinter - inter, up to settle + downinter + 0.25
    assert "settle + new UP - old DOWN: 0.06 s to 0.46 s" in out
    assert "--profile fast" in out.splitlines()[1]


def test_an_explicit_timer_overrides_the_profile_and_is_judged(capsys):
    code, _, err = run(capsys, "haproxy", *BASE, "--profile", "fast", "--interval", "0.3")
    assert code == 2  # DOWN within 0.3 s, new UP after settle + 0.25 s: a tie lost
    assert "--rise" in err and "two servers UP" in err


def test_the_settle_time_enters_the_planned_case(capsys):
    code, out, _ = run(capsys, "haproxy", *BASE, "--profile", "fast", "--settle-time", "0.1")
    assert code == 0
    assert "planned handover: g settle 0.1 s | 0.2 s | 0.35 s | 0.15 s to spare" in out
    code, _, err = run(capsys, "haproxy", *BASE, "--settle-time", "-1")
    assert code == 2 and "--settle-time" in err


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("f5", "interval 1 timeout 3 time-until-up 4"),
        ("nginx-plus", "interval=200ms jitter=0s fails=1 passes=3"),
    ],
)
def test_fast_profile_of_f5_and_nginx_plus(capsys, target, expected):
    code, out, _ = run(capsys, target, *BASE, "--profile", "fast")
    assert code == 0
    assert expected in out
    assert "Two servers UP at once: never" in out


def test_the_passive_nginx_pattern_has_no_profile(capsys):
    code, _, err = run(capsys, "nginx", *BASE, "--profile", "fast")
    assert code == 2 and "--profile" in err
