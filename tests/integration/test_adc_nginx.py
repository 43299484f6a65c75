"""Open-source nginx with the passive pattern from ``vipmon adc-config nginx``.

The nodes' ``/monitor`` stands in for the application behind each node: 200
on the master, 503 everywhere else, which is what the passive pattern needs
(``/role`` would not do: it answers 200 on standbys too). Requests go to
``/monitor`` through nginx while the master role flips five times.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support import haproxy as hap
from tests.support.nginx import Nginx
from tests.support.nodes import Cluster, wait_for
from tests.support.ports import free_port
from tests.support.probe import Probe, violations

FLIPS = 5
_BODY = re.compile(r"^ROLE=(\w+) node=(\S+) term=(\d+)")


def through(client: httpx.Client, url: str) -> Probe:
    start = time.monotonic()
    try:
        r = client.get(url + "/monitor")
        status, body = r.status_code, r.text.strip()
    except httpx.HTTPError as exc:
        status, body = 0, type(exc).__name__
    m = _BODY.match(body)
    node, term = (m.group(2), int(m.group(3))) if m else ("", 0)
    return Probe(node, start, time.monotonic(), status, term, body)


class Requester:
    """Requests through nginx every 10 ms in a thread, bounded in count and time."""

    def __init__(self, url: str, max_seconds: float = 120) -> None:
        self.url, self.max_seconds = url, max_seconds
        self.records: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=3) as client:
            for _ in range(int(self.max_seconds / 0.01)):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                self.records.append(through(client, self.url))
                self._stop.wait(0.01)

    def __enter__(self) -> Requester:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.slow
def test_passive_nginx_reaches_the_master_across_flips(tmp_path: Path):
    with Cluster(tmp_path, ["--backend", "local", "--state-dir", str(tmp_path / "state")]) as c:
        for i in (1, 2, 3):
            c.add(f"n{i}")
        vip = f"127.0.0.1:{free_port()}"
        args = ["--vip", vip]
        for n in c.nodes:
            args += ["--node", f"{n.node_id}=127.0.0.1:{n.port}"]
        (tmp_path / "nginx").mkdir()
        with (
            Nginx(tmp_path / "nginx", hap.adc_config("nginx", *args), f"http://{vip}") as proxy,
            Requester(proxy.url) as background,
            httpx.Client(timeout=3) as client,
        ):
            for _ in range(FLIPS):
                master = c.wait_master(timeout=30)
                # Steady state: every request through nginx gets 200 from the master.
                steady = [through(client, proxy.url) for _ in range(20)]
                assert [(p.status, p.node) for p in steady] == [(200, master.node_id)] * 20
                assert master.terminate() == 0
                new = c.wait_master(timeout=30, exclude=master)
                wait_for(
                    lambda n=new: through(client, proxy.url).node == n.node_id,
                    timeout=10,
                    what="nginx to reach the new master",
                )
                master.start()
        records = background.records
    positives = [p for p in records if p.status == 200]
    assert len({p.term for p in positives}) >= FLIPS + 1, "the flips were not observed"
    # Every 200 came from the master of its term, and no stale master answered after a
    # newer one had (the checker of tests/support/probe.py, fed with requests via nginx).
    assert violations(records) == []
    assert all(p.body.startswith("ROLE=MASTER ") for p in positives)
    # A request that did not get 200 found every node refusing (a node's 503) or gone
    # (nginx's 502 when the last node it tried was down).
    assert {p.status for p in records} <= {200, 502, 503}
