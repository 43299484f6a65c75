"""vipmon on a real etcd that serves TLS, demands client certificates and has auth on.

One single-member etcd for the module: https client URLs, ``--client-cert-auth``,
a root user, and a user ``vipmon`` whose role may read and write keys under
``/vipmon/`` only. Two nodes with good credentials elect a master and fail
over; nodes with bad credentials serve HTTP, stay negative, and say why in one
WARNING line.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration import scenarios
from tests.support.certs import CA, Issued
from tests.support.etcd import EtcdCluster, EtcdTLS
from tests.support.nodes import Cluster, Node, wait_for
from tests.support.probe import Prober

pytestmark = pytest.mark.etcd

PASSWORD = "vipmon-secret"
TTL = 2
_names = itertools.count()


@dataclass(frozen=True)
class Secured:
    etcd: EtcdCluster
    tls: EtcdTLS
    client: Issued  # vipmon's client certificate: no Common Name, as etcd's gateway wants
    base: Path

    def args(self, ca: Path | None = None, client: Issued | None = None) -> list[str]:
        """``vipmon run`` backend options, with this CA and client certificate by default."""
        cert = client or self.client
        return [
            "--backend", "etcd",
            "--etcd-endpoints", ",".join(self.etcd.client_urls),
            "--cluster", f"tls{next(_names)}",
            "--etcd-ca-file", str(ca or self.tls.ca.cert),
            "--etcd-cert-file", str(cert.cert),
            "--etcd-key-file", str(cert.key),
            "--etcd-username", "vipmon",
            "--lease-ttl", str(TTL),
        ]  # fmt: skip


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    base = tmp_path_factory.mktemp("etcd-tls")
    tls = EtcdTLS.make(base / "certs")
    with EtcdCluster(base / "etcd", size=1, tls=tls) as etcd:
        etcd.enable_auth(password="root-secret")
        etcd.add_user("vipmon", PASSWORD, "/vipmon/")
        client = tls.ca.issue("vipmon-client", server=False, client=True, common_name=False)
        yield Secured(etcd, tls, client, base)


def env(password: str = PASSWORD) -> dict[str, str]:
    return {"VIPMON_ETCD_PASSWORD": password}


def test_the_vipmon_role_is_confined_to_its_prefix(secured: Secured) -> None:
    token = secured.etcd.authenticate("vipmon", PASSWORD)
    secured.etcd.put("/vipmon/probe", b"x", token=token)
    with pytest.raises(httpx.HTTPStatusError, match="permission denied"):
        secured.etcd.put("/elsewhere", b"x", token=token)


def test_election_and_sigkill_failover_over_tls_and_auth(secured: Secured, tmp_path: Path) -> None:
    with Cluster(tmp_path, secured.args(), env=env()) as nodes:
        nodes.add("n1")
        nodes.add("n2")
        master = nodes.wait_master()
        body = master.role()
        assert body["role"] == "MASTER"
        assert body["backend"]["name"] == "etcd" and body["backend"]["reachable"] is True
        assert body["backend"]["version"].startswith("etcd 3.")
        scenarios.sigkill_failover(nodes)
        for node in nodes.nodes:
            assert "Traceback" not in node.log_path.read_text(errors="replace")


# -- bad credentials -----------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    node: Node
    expected: str  # a fragment of the one WARNING line that says what is wrong


CASES = ("wrong-ca", "expired-cert", "wrong-password", "cert-with-cn")


@pytest.fixture(scope="module")
def bad_nodes(secured: Secured) -> Iterator[dict[str, tuple[Bad, list[int]]]]:
    """One node per bad credential, all watched together for a few TTLs.

    Yields, per case, the node and every /monitor status sampled while it ran.
    """
    base = secured.base / "bad"
    base.mkdir()
    other = CA(base / "other-ca", "other-ca")
    expired = secured.tls.ca.issue(
        "vipmon-expired", server=False, client=True, expired=True, common_name=False
    )
    named = secured.tls.ca.issue("vipmon", server=False, client=True)  # CN = a real user name
    url = secured.etcd.client_urls[0]
    setups = {
        "wrong-ca": (
            secured.args(ca=other.cert),
            env(),
            f"etcd {url}: TLS: certificate verify failed: unable to get local issuer certificate",
        ),
        "expired-cert": (
            secured.args(client=expired),
            env(),
            f'etcd {url}: refused our client certificate (TLS alert "bad certificate")',
        ),
        "wrong-password": (
            secured.args(),
            env("not-the-password"),
            f"etcd {url}: refused the credentials of user 'vipmon': authentication failed",
        ),
        "cert-with-cn": (
            secured.args(client=named),
            env(),
            f"etcd {url}: refused our client certificate: it has a Common Name",
        ),
    }
    started: list[Node] = []
    try:
        bad: dict[str, Bad] = {}
        for case, (args, environment, expected) in setups.items():
            cluster = Cluster(base, args, env=environment)
            started.append(cluster.add(case))
            bad[case] = Bad(started[-1], expected)
        with Prober([(n.node_id, n.url) for n in started], max_seconds=30) as prober:
            for node in started:
                wait_for(
                    lambda n=node: (
                        bad[n.node_id].expected in n.log_path.read_text(errors="replace")
                    ),
                    timeout=15,
                    interval=0.1,
                    what=f"{node.node_id} to log why it cannot reach etcd",
                )
            time.sleep(2 * TTL)  # a few renewal rounds more: still negative, no new lines
        records = prober.stop()
        yield {case: (b, [p.status for p in records if p.node == case]) for case, b in bad.items()}
    finally:
        for node in started:
            node.stop()


WARNING_LINE = re.compile(r" (WARNING|ERROR|CRITICAL) ")


@pytest.mark.parametrize("case", CASES)
def test_bad_credentials_stay_negative_and_say_why(
    bad_nodes: dict[str, tuple[Bad, list[int]]], case: str
) -> None:
    bad, statuses = bad_nodes[case]
    assert statuses, "no /monitor sample"
    assert 200 not in statuses
    assert set(statuses) == {503}, statuses
    assert bad.node.alive()
    body = bad.node.role()
    assert body["role"] != "MASTER"
    assert (body["backend"]["name"], body["backend"]["reachable"]) == ("etcd", False)
    log = bad.node.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log
    said = [line for line in log.splitlines() if bad.expected in line]
    loud = [line for line in said if WARNING_LINE.search(line)]
    assert len(loud) == 1, log  # said once at WARNING; repeats of the same reason are DEBUG
