"""Every generated config passes the real ``haproxy -c`` and ``nginx -t``.

NGINX Plus directives (``health_check``, ``match``) cannot be checked by
open-source nginx; the rest of that snippet is checked with them removed,
and they are checked textually in tests/unit/test_adc_cli.py.
"""

import re
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
    ],
    ids=["status", "drain", "agent", "http-mode"],
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
    "name", ["haproxy.cfg", "haproxy-drain.cfg", "haproxy-agent.cfg", "haproxy-fast.cfg"]
)
def test_shipped_haproxy_configs_are_valid(name):
    done = hap.check_config(REPO / "deploy" / "haproxy" / name)
    assert done.returncode == 0, done.stdout + done.stderr


def _listen_on_loopback(text: str) -> str:
    """nginx -t binds every listen address; move the example VIP to a free loopback port."""
    return re.sub(r"^(\s*listen )\S+;", rf"\g<1>127.0.0.1:{free_port()};", text, flags=re.M)


@pytest.mark.parametrize("target", ["nginx", "nginx-plus"])
def test_generated_nginx_snippet_is_valid(tmp_path, target):
    text = hap.adc_config(
        target,
        "--vip",
        f"127.0.0.1:{free_port()}",
        "--node",
        "n1=127.0.0.1:18081",
        "--node",
        "n2=localhost:18082",
    )
    if target == "nginx-plus":
        assert "health_check uri=/monitor" in text
        text = ngx.strip_plus_only(text)
        assert not re.search(r"^\s*(health_check|match) ", text, re.MULTILINE)
    done = ngx.check_config(tmp_path, text)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


@pytest.mark.parametrize(
    "name", ["vipmon-passive.conf", "vipmon-plus.conf", "vipmon-plus-fast.conf"]
)
def test_shipped_nginx_snippets_are_valid(tmp_path, name):
    text = (REPO / "deploy" / "nginx" / name).read_text()
    done = ngx.check_config(tmp_path, _listen_on_loopback(ngx.strip_plus_only(text)))
    assert done.returncode == 0, done.stderr
