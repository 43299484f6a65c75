"""``vipmon adc-config --fenced`` and the ``caddy`` target: the directives that matter.

The configs are read back directive by directive (comments dropped), so a test
fails on a missing or changed setting, not on a reworded comment. The real
binaries check the same outputs in tests/integration/test_adc_configs.py.
"""

import pytest

from tests.unit.test_adc_cli import BASE, NODES, directives, run

# Caddy refuses plain http:// on port 443, so its VIP takes port 80.
CBASE = ["--vip", "10.0.0.100:80", *NODES]


def caddy_directives(text):
    """``{name: [arguments]}`` of every Caddyfile line that is no comment, block ends out."""
    found = {}
    for line in directives(text):
        if line == "}":
            continue
        name, *rest = line.rstrip("{").split()
        found.setdefault(name, []).append(rest)
    return found


def test_nginx_fenced_round_robins_over_every_node_and_retries(capsys):
    code, out, err = run(capsys, "nginx", *BASE, "--fenced")
    assert (code, err) == (0, "")
    lines = directives(out)
    servers = [line for line in lines if line.startswith("server ") and line != "server {"]
    # max_fails=0: nginx never passes the new master over for having refused as a standby.
    assert servers == [f"server 10.0.0.1{i}:8080 max_fails=0;" for i in (1, 2, 3)]
    assert "proxy_next_upstream error timeout;" in lines  # no http_503, http_502, non_idempotent
    assert "proxy_next_upstream_tries 3;" in lines
    assert "proxy_connect_timeout 500ms;" in lines
    assert not any("balance" in line or "health_check" in line for line in lines)
    assert "TTL + 0.5 s etcd expiry lag = 2.5 s" in out


def test_nginx_fenced_takes_the_connect_timeout_and_refuses_too_few_tries(capsys):
    _, out, _ = run(capsys, "nginx", *BASE, "--fenced", "--connect-timeout", "0.25")
    assert "proxy_connect_timeout 250ms;" in directives(out)
    code, _, err = run(capsys, "nginx", *BASE, "--fenced", "--tries", "2")
    assert code == 2 and "--tries" in err


@pytest.mark.parametrize(
    ("profile", "default_server"),
    [
        ([], "inter 1s fastinter 1s downinter 1s rise 3 fall 1"),
        (["--profile", "fast"], "inter 200ms fastinter 250ms downinter 200ms rise 2 fall 1"),
    ],
)
def test_haproxy_fenced_keeps_the_checks_and_adds_redispatch(capsys, profile, default_server):
    code, out, _ = run(capsys, "haproxy", *BASE, "--fenced", *profile)
    assert code == 0
    lines = directives(out)
    backend = lines[lines.index("backend vipmon_nodes") :]
    assert "http-check expect status 200" in backend
    assert "option redispatch 1" in backend
    assert "retries 3" in backend
    default = next(line for line in backend if line.startswith("default-server"))
    assert default_server in default
    assert "# Fenced (--fenced): two servers UP at the ADC never make two nodes serve" in out


def test_haproxy_unfenced_has_no_retries(capsys):
    _, out, _ = run(capsys, "haproxy", *BASE)
    lines = directives(out)
    assert "option redispatch 1" not in lines
    assert not any(line.startswith("retries") for line in lines)


def test_fenced_lifts_the_overlap_refusal_but_still_prints_it(capsys):
    loose = ["--interval", "2", "--rise", "2", "--fall", "3"]
    code, _, err = run(capsys, "haproxy", *BASE, *loose)
    assert code == 2 and "two servers UP" in err
    code, out, _ = run(capsys, "haproxy", *BASE, *loose, "--fenced")
    assert code == 0
    assert "# Two servers UP at once: YES" in out


def test_caddy_fenced_directives(capsys):
    code, out, err = run(capsys, "caddy", *CBASE, "--fenced")
    assert (code, err) == (0, "")
    d = caddy_directives(out)
    assert d["http://:80"] == [[]]
    assert d["bind"] == [["10.0.0.100"]]
    assert d["reverse_proxy"] == [[f"10.0.0.1{i}:8080" for i in (1, 2, 3)]]
    assert d["lb_policy"] == [["round_robin"]]
    assert d["lb_try_duration"] == [["4s"]]  # crash failover 3.5 s, rounded up
    assert d["lb_try_interval"] == [["100ms"]]
    assert d["health_uri"] == [["/monitor"]]
    assert d["health_port"] == [["8700"]]
    assert d["health_interval"] == [["1s"]]
    assert d["health_timeout"] == [["500ms"]]
    assert d["health_status"] == [["200"]]
    assert d["health_body"] == [["ROLE=MASTER"]]
    assert d["Host"] == [["vipmon"]]
    assert d["dial_timeout"] == [["1s"]]
    assert "fail_duration" not in d


def test_caddy_fast_profile_and_explicit_timers(capsys):
    _, out, _ = run(
        capsys, "caddy", *CBASE, "--fenced", "--profile", "fast", "--try-interval", "0.05"
    )
    d = caddy_directives(out)
    assert (d["health_interval"], d["health_timeout"]) == ([["200ms"]], [["150ms"]])
    assert d["lb_try_duration"] == [["3s"]]  # 2 + 0.5 + 0.2 = 2.7 s, rounded up
    assert d["lb_try_interval"] == [["50ms"]]
    _, out, _ = run(capsys, "caddy", *CBASE, "--fenced", "--try-duration", "10")
    assert caddy_directives(out)["lb_try_duration"] == [["10s"]]


def test_caddy_unfenced_is_judged_by_the_arithmetic(capsys):
    """Caddy 2.6 has no rise: one passing check makes a node healthy, so without the
    fence the nodes' settle time and lease margin must cover health_interval."""
    code, _, err = run(capsys, "caddy", *CBASE)
    assert code == 2 and "--fenced" in err and "--settle-time" in err
    code, out, _ = run(capsys, "caddy", *CBASE, "--profile", "fast", "--settle-time", "0.3")
    assert code == 0
    assert "# Two servers UP at once: never" in out
    assert "(not fenced)" in out.splitlines()[0]


def test_caddy_omits_health_port_when_it_is_the_app_port(capsys):
    node = ["--node", "a=10.0.0.1:8700", "--node", "b=10.0.0.2:8700"]
    _, out, _ = run(capsys, "caddy", "--vip", "10.0.0.100:80", *node, "--fenced", "--allow-overlap")
    assert "health_port" not in caddy_directives(out)


@pytest.mark.parametrize(
    ("argv", "argument", "reason"),
    [
        (["caddy", *CBASE, "--fenced", "--node", "n4=10.0.0.14:8080/8701"], "--node", "one port"),
        (["caddy", *CBASE, "--fenced", "--rise", "2"], "--rise", "does not apply"),
        (["caddy", *CBASE, "--fenced", "--tls", "--ca-file", "/ca"], "--tls", "VIP traffic"),
        (["caddy", *CBASE, "--fenced", "--try-duration", "0"], "--try-duration", "greater"),
        (["caddy", *BASE, "--fenced"], "--vip", "port 443"),
        (["f5", *BASE, "--fenced"], "--fenced", "does not apply"),
        (["nginx-plus", *BASE, "--fenced"], "--fenced", "does not apply"),
        (["nginx", *BASE, "--try-interval", "1"], "--try-interval", "does not apply"),
        (
            ["nginx", "--vip", "10.0.0.100:80", "--node", "a=10.0.0.1:8700", "--fenced"],
            "--node",
            "does not fence its own port",
        ),
    ],
)
def test_bad_fenced_arguments_exit_2(capsys, argv, argument, reason):
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"vipmon adc-config: argument {argument}: ")
    assert reason in err


def test_the_state_seed_takes_the_same_fenced_arguments(capsys):
    """The haproxy config tells to seed with the same command line, --fenced included."""
    code, out, _ = run(capsys, "haproxy-state", *NODES, "--fenced")
    assert code == 0 and out.startswith("1\n")
