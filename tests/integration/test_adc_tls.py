"""ADC configs whose checks speak TLS to vipmon: valid for the real tools, and a real failover.

HAProxy checks two nodes on the embedded store over HTTPS, verifying their
certificate against the CA and the name, and presenting a client certificate
the nodes require. A sampler reads ``show servers state`` every 20 ms; the
assertions are about safety (never two servers UP) and the order of events.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_adc_haproxy import start_proxy
from tests.support import haproxy as hap
from tests.support import nginx as ngx
from tests.support.certs import CA, Issued
from tests.support.certs import client_context as client
from tests.support.nodes import Cluster, wait_for
from tests.support.ports import free_port


def combined_pem(pair: Issued, path: Path) -> Path:
    """HAProxy's ``crt``: the certificate and its key in one PEM file."""
    path.write_bytes(pair.cert.read_bytes() + pair.key.read_bytes())
    return path


def test_generated_tls_configs_pass_haproxy_and_nginx(tmp_path: Path):
    ca = CA(tmp_path / "ca")
    holder = ca.issue("adc", client=True, server=False)
    nodes = ["--node", "n1=127.0.0.1:18081", "--node", "n2=127.0.0.2:18082"]
    tls = ["--tls", "--ca-file", str(ca.cert), "--tls-server-name", "localhost"]
    with hap.short_dir() as d:
        text = hap.adc_config(
            "haproxy",
            "--vip",
            f"127.0.0.1:{free_port()}",
            *nodes,
            "--stats-socket",
            str(d / "s.sock"),
            *tls,
            "--client-cert",
            str(combined_pem(holder, tmp_path / "adc.pem")),
        )
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(text)
        done = hap.check_config(cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    snippet = hap.adc_config(
        "nginx-plus",
        "--vip",
        f"127.0.0.1:{free_port()}",
        *nodes,
        *tls,
        "--client-cert",
        str(holder.cert),
        "--client-key",
        str(holder.key),
    )
    assert "proxy_ssl_verify on;" in snippet
    checked = ngx.check_config(tmp_path, ngx.strip_plus_only(snippet))
    assert checked.returncode == 0, checked.stderr


@pytest.mark.slow
def test_haproxy_follows_a_failover_over_tls_never_two_up(tmp_path: Path):
    ca = CA(tmp_path / "ca")
    server = ca.issue("server", hosts=("localhost",))
    adc = ca.issue("adc", client=True, server=False)
    args = [
        "--backend",
        "local",
        "--state-dir",
        str(tmp_path / "state"),
        "--lease-ttl",
        "2",
        "--tls-cert-file",
        str(server.cert),
        "--tls-key-file",
        str(server.key),
        "--tls-client-ca-file",
        str(ca.cert),
    ]
    # Node.url says 127.0.0.1, the certificate only 'localhost': the test client skips the name.
    tls = client(ca, adc)
    tls.check_hostname = False
    style = ["--tls", "--ca-file", str(ca.cert), "--tls-server-name", "localhost"]
    style += ["--client-cert", str(combined_pem(adc, tmp_path / "adc.pem"))]
    with Cluster(tmp_path, args, tls=tls) as cluster:
        for name in ("n1", "n2"):
            cluster.add(name)
        with hap.short_dir() as d:
            proxy, _ = start_proxy(cluster, d, *style)
            with proxy:
                sampler = hap.StateSampler(proxy, interval=0.02).start()
                try:
                    old = cluster.wait_master(timeout=20)
                    wait_for(
                        lambda: sampler.latest() == {old.node_id},
                        timeout=20,
                        interval=0.05,
                        what=f"HAProxy to have {old.node_id} UP over TLS",
                    )
                    old.kill()
                    new = cluster.wait_master(timeout=20, exclude=old)
                    wait_for(
                        lambda: sampler.latest() == {new.node_id},
                        timeout=20,
                        interval=0.05,
                        what=f"HAProxy to have {new.node_id} UP after the failover",
                    )
                finally:
                    sampler.stop()
    assert sampler.overlaps() == [], sampler.overlaps()[:5]
    seen = [s.up for s in sampler.samples]
    assert frozenset({old.node_id}) in seen and frozenset({new.node_id}) in seen
    assert seen.index(frozenset({old.node_id})) < seen.index(frozenset({new.node_id}))


@pytest.mark.slow
def test_agent_check_stays_plain_tcp_beside_a_tls_check(tmp_path: Path):
    """check-ssl wraps the HTTP check only: HAProxy still reads vipmon's plain agent port."""
    ca = CA(tmp_path / "ca")
    server = ca.issue("server")
    agent = free_port()
    args = ["--state-dir", str(tmp_path / "state"), "--agent-port", str(agent)]
    args += ["--tls-cert-file", str(server.cert), "--tls-key-file", str(server.key)]
    style = ["--check", "agent", "--agent-port", str(agent), "--tls", "--ca-file", str(ca.cert)]
    with Cluster(tmp_path, args, tls=client(ca)) as cluster:
        cluster.add("n1")
        cluster.wait_master(timeout=20)
        with hap.short_dir() as d:
            proxy, _ = start_proxy(cluster, d, *style)
            with proxy:
                wait_for(
                    lambda: _up_by_agent(proxy.stats()["n1"]),
                    timeout=20,
                    interval=0.1,
                    what="the master UP by a TLS check and the plain agent's 'up'",
                )


def _up_by_agent(row: dict[str, str]) -> bool:
    return row["status"] == "UP" and row["last_agt"] == "via agent : up"
