"""Every generated config passes the real ``haproxy -c``, ``nginx -t`` and ``caddy validate``.

NGINX Plus directives (``health_check``, ``match``) cannot be checked by
open-source nginx; the rest of that snippet is checked with them removed,
and they are checked textually in tests/unit/test_adc_cli.py.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import haproxy as hap
from tests.support import nginx as ngx
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def topology() -> list[str]:
    return [
        "--vip",
        f"127.0.0.1:{free_port()}",
        "--node",
        "n1=127.0.0.1:18081",
        "--node",
        "n2=127.0.0.2:18082/18702",
        "--node",
        "n3=localhost:18083",
    ]


@pytest.mark.parametrize(
    "style",
    [
        ["--check", "status"],
        ["--check", "drain"],
        ["--check", "agent", "--agent-port", "8701"],
        ["--mode", "http", "--state-file", "none"],
        ["--fenced"],
        ["--fenced", "--profile", "fast", "--mode", "http"],
    ],
    ids=["status", "drain", "agent", "http-mode", "fenced", "fenced-fast-http"],
)
def test_generated_haproxy_config_is_valid(tmp_path, style):
    with hap.short_dir() as d:
        text = hap.adc_config("haproxy", *topology(), "--stats-socket", str(d / "s.sock"), *style)
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(text)
        done = hap.check_config(cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr


# Debian 12's /etc/haproxy/haproxy.cfg as the package ships it, less its errorfile lines;
# the admin socket's path is replaced by the test.
DEBIAN_HAPROXY_CFG = """\
global
    log /dev/log local0
    log /dev/log local1 notice
    chroot /var/lib/haproxy
    stats socket ADMIN_SOCKET mode 660 level admin
    stats timeout 30s
    user haproxy
    group haproxy
    daemon
    ca-base /etc/ssl/certs
    crt-base /etc/ssl/private

defaults
    log global
    mode http
    option httplog
    option dontlognull
    timeout connect 5000
    timeout client 50000
    timeout server 50000
"""


def test_generated_haproxy_config_loads_beside_debians_own(tmp_path):
    """The README's recipe: Debian's haproxy.cfg stays (global: log, chroot, user), and the
    generated file is a second ``-f``, as /etc/default/haproxy's EXTRAOPTS gives it."""
    with hap.short_dir() as d:
        debian = tmp_path / "haproxy.cfg"
        debian.write_text(DEBIAN_HAPROXY_CFG.replace("ADMIN_SOCKET", str(d / "admin.sock")))
        ours = tmp_path / "vipmon.cfg"
        ours.write_text(
            hap.adc_config("haproxy", *topology(), "--stats-socket", str(d / "vipmon.sock"))
        )
        done = subprocess.run(
            [hap.HAPROXY, "-c", "-f", str(debian), "-f", str(ours)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr
    assert "ALERT" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "name",
    [
        "haproxy.cfg",
        "haproxy-drain.cfg",
        "haproxy-agent.cfg",
        "haproxy-fast.cfg",
        "haproxy-fenced.cfg",
        "haproxy-fenced-fast.cfg",
    ],
)
def test_shipped_haproxy_configs_are_valid(name):
    done = hap.check_config(REPO / "deploy" / "haproxy" / name)
    assert done.returncode == 0, done.stdout + done.stderr


def _listen_on_loopback(text: str) -> str:
    """nginx -t binds every listen address; move the example VIP to a free loopback port."""
    return re.sub(r"^(\s*listen )\S+;", rf"\g<1>127.0.0.1:{free_port()};", text, flags=re.M)


@pytest.mark.parametrize(
    "target", [["nginx"], ["nginx-plus"], ["nginx", "--fenced"]], ids=["nginx", "plus", "fenced"]
)
def test_generated_nginx_snippet_is_valid(tmp_path, target):
    text = hap.adc_config(
        *target,
        "--vip",
        f"127.0.0.1:{free_port()}",
        "--node",
        "n1=127.0.0.1:18081",
        "--node",
        "n2=localhost:18082",
    )
    if target == ["nginx-plus"]:
        assert "health_check uri=/monitor" in text
        text = ngx.strip_plus_only(text)
        assert not re.search(r"^\s*(health_check|match) ", text, re.MULTILINE)
    done = ngx.check_config(tmp_path, text)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


@pytest.mark.parametrize(
    "name",
    ["vipmon-passive.conf", "vipmon-plus.conf", "vipmon-plus-fast.conf", "vipmon-fenced.conf"],
)
def test_shipped_nginx_snippets_are_valid(tmp_path, name):
    text = (REPO / "deploy" / "nginx" / name).read_text()
    done = ngx.check_config(tmp_path, _listen_on_loopback(ngx.strip_plus_only(text)))
    assert done.returncode == 0, done.stderr


CADDY = shutil.which("caddy") or "/usr/bin/caddy"


def _caddy(tmp_path: Path, verb: str, text: str) -> subprocess.CompletedProcess[str]:
    """``caddy VERB --adapter caddyfile --config FILE``, with HOME and XDG dirs in tmp_path."""
    path = tmp_path / "Caddyfile"
    path.write_text(text)
    home = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    return subprocess.run(
        [CADDY, verb, "--adapter", "caddyfile", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **home},
    )


def _caddy_valid(tmp_path: Path, text: str) -> None:
    done = _caddy(tmp_path, "validate", text)
    assert done.returncode == 0, done.stderr
    assert "Valid configuration" in done.stdout + done.stderr
    # A Caddyfile that `caddy fmt` would change draws a warning: the generator keeps its form.
    assert "not formatted" not in done.stderr


def _reverse_proxy(tmp_path: Path, text: str) -> tuple[list[str], dict]:
    """The listen addresses and the one reverse_proxy handler of ``caddy adapt``'s JSON."""
    done = _caddy(tmp_path, "adapt", text)
    assert done.returncode == 0, done.stderr
    (server,) = json.loads(done.stdout)["apps"]["http"]["servers"].values()
    (route,) = server["routes"]
    (handler,) = route["handle"]
    assert handler["handler"] == "reverse_proxy"
    return server["listen"], handler


SECOND = 1_000_000_000  # Caddy's JSON counts durations in nanoseconds


@pytest.mark.parametrize(
    "extra", [["--fenced"], ["--profile", "fast", "--settle-time", "0.3"]], ids=["fenced", "fast"]
)
def test_generated_caddyfile_is_valid_and_has_the_checks(tmp_path, extra):
    vip = f"127.0.0.1:{free_port()}"
    text = hap.adc_config("caddy", *topology()[2:], "--vip", vip, "--monitor-port", "18702", *extra)
    _caddy_valid(tmp_path, text)
    listen, handler = _reverse_proxy(tmp_path, text)
    assert listen == [vip]
    active = handler["health_checks"]["active"]
    fast = "--profile" in extra
    assert active["uri"] == "/monitor"
    assert active["port"] == 18702
    assert active["interval"] == (0.2 if fast else 1) * SECOND
    assert active["timeout"] == (0.15 if fast else 0.5) * SECOND
    assert active["expect_status"] == 200
    assert active["expect_body"] == "ROLE=MASTER"
    assert active["headers"] == {"Host": ["vipmon"]}
    balancing = handler["load_balancing"]
    assert balancing["selection_policy"] == {"policy": "round_robin"}
    assert balancing["try_duration"] == (3 if fast else 4) * SECOND
    assert balancing["try_interval"] == SECOND // 10
    assert [u["dial"] for u in handler["upstreams"]] == [
        "127.0.0.1:18081",
        "127.0.0.2:18082",
        "localhost:18083",
    ]
    assert "passive" not in handler["health_checks"]


def test_generated_caddyfile_takes_ipv6(tmp_path):
    text = hap.adc_config(
        "caddy", "--vip", f"[::1]:{free_port()}", "--node", "a=[::1]:18081", "--fenced"
    )
    _caddy_valid(tmp_path, text)
    listen, handler = _reverse_proxy(tmp_path, text)
    assert listen[0].startswith("[::1]:")
    assert handler["upstreams"] == [{"dial": "[::1]:18081"}]


@pytest.mark.parametrize("name", ["Caddyfile", "Caddyfile-fenced"])
def test_shipped_caddyfiles_are_valid(tmp_path, name):
    text = (REPO / "deploy" / "caddy" / name).read_text()
    _caddy_valid(tmp_path, text)
    _, handler = _reverse_proxy(tmp_path, text)
    assert handler["health_checks"]["active"]["uri"] == "/monitor"
    assert handler["load_balancing"]["try_duration"] > 0
