"""``vipmon adc-config ... --tls``: checks over HTTPS for each ADC, and its argument errors."""

import pytest

from app.cli import main
from tests.unit.test_adc_cli import BASE, directives, run

TLS = ["--tls", "--ca-file", "/etc/vipmon/ca.crt"]


def test_haproxy_checks_over_tls_verify_the_ca(capsys):
    code, out, err = run(capsys, "haproxy", *BASE, *TLS)
    assert (code, err) == (0, "")
    default = next(line for line in directives(out) if line.startswith("default-server"))
    assert default.startswith(
        "default-server check check-ssl verify required ca-file /etc/vipmon/ca.crt inter 1s"
    )
    assert "check-sni" not in default and " crt " not in default
    assert "# The certificate's name is not checked" in out
    # Only the checks speak TLS: the server lines carry no 'ssl' for the VIP traffic.
    assert all(" ssl" not in line for line in directives(out) if line.startswith("server "))


def test_haproxy_server_name_and_client_cert(capsys):
    args = ["--tls-server-name", "vipmon.example", "--client-cert", "/etc/vipmon/c.pem"]
    code, out, _ = run(capsys, "haproxy", *BASE, *TLS, *args)
    assert code == 0
    default = next(line for line in directives(out) if line.startswith("default-server"))
    assert "check-sni vipmon.example verifyhost vipmon.example crt /etc/vipmon/c.pem" in default
    assert "one PEM" in out


def test_haproxy_agent_style_says_the_agent_stays_plain(capsys):
    code, out, _ = run(capsys, "haproxy", *BASE, *TLS, "--check", "agent", "--agent-port", "8701")
    assert code == 0
    assert "agent-check stays plain TCP" in out


def test_f5_uses_an_https_monitor(capsys):
    args = ["--client-cert", "/Common/c.crt", "--client-key", "/Common/c.key"]
    code, out, _ = run(capsys, "f5", *BASE, *TLS, *args)
    assert code == 0
    monitor = next(line for line in out.splitlines() if "create ltm monitor" in line)
    assert "create ltm monitor https /Common/vipmon_monitor defaults-from /Common/https" in monitor
    assert "cert /Common/c.crt key /Common/c.key" in monitor
    assert "does NOT verify" in out
    assert "ca-file /etc/vipmon/ca.crt peer-cert-mode require" in out
    _, plain, _ = run(capsys, "f5", *BASE)
    assert "create ltm monitor http /Common/vipmon_monitor defaults-from /Common/http " in plain


def test_nginx_plus_checks_over_https(capsys):
    args = ["--tls-server-name", "vipmon.example"]
    args += ["--client-cert", "/etc/nginx/c.crt", "--client-key", "/etc/nginx/c.key"]
    code, out, _ = run(capsys, "nginx-plus", *BASE, *TLS, *args)
    assert code == 0
    lines = directives(out)
    health = lines[lines.index("location = /.vipmon-health-check {") :]
    for expected in (
        "proxy_pass https://vipmon_nodes;",
        "proxy_ssl_trusted_certificate /etc/vipmon/ca.crt;",
        "proxy_ssl_verify on;",
        "proxy_ssl_name vipmon.example;",
        "proxy_ssl_server_name on;",
        "proxy_ssl_certificate /etc/nginx/c.crt;",
        "proxy_ssl_certificate_key /etc/nginx/c.key;",
    ):
        assert expected in health, expected
    # Client traffic keeps its own protocol.
    assert lines[lines.index("location / {") + 1] == "proxy_pass http://vipmon_nodes;"


@pytest.mark.parametrize(
    ("target", "extra", "argument", "words"),
    [
        ("haproxy", ["--ca-file", "/ca.crt"], "--ca-file", "needs --tls"),
        ("haproxy", ["--tls"], "--ca-file", "required with --tls"),
        ("haproxy", [*TLS, "--client-key", "/k"], "--client-key", "in the --client-cert PEM"),
        ("f5", [*TLS, "--client-cert", "/c"], "--client-key", "together"),
        ("nginx-plus", TLS, "--tls-server-name", "required for nginx-plus"),
        ("nginx", TLS, "--tls", "never check vipmon"),
        ("haproxy", ["--tls", "--ca-file", "ca.crt"], "--ca-file", "absolute path"),
        ("haproxy", [*TLS, "--tls-server-name", "a b"], "--tls-server-name", "not a host name"),
    ],
)
def test_tls_argument_errors(capsys, target, extra, argument, words):
    code, out, err = run(capsys, target, *BASE, *extra)
    assert (code, out) == (2, "")
    assert f"argument {argument}:" in err and words in err, err


def test_the_command_line_reproduces_tls_options(capsys):
    assert main(["adc-config", "haproxy", *BASE, *TLS]) == 0
    header = capsys.readouterr().out.splitlines()[1]
    assert header.endswith("--ca-file /etc/vipmon/ca.crt --tls")
