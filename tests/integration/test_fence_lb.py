"""The proof: through a real load balancer, no request is served by a node without the term.

Three fenced nodes (``vipmon run --fence-port 8080`` in front of a plain application
that knows nothing of vipmon), a load balancer on the config ``vipmon adc-config ...
--fenced`` prints, and a client sending about 100 requests/s through the VIP, on new
connections and on one kept-alive connection, each in a network namespace of its own
(:mod:`tests.support.fence_lb`). During the load: a switchover, a SIGTERM, a SIGKILL
and a SIGSTOP longer than the TTL of the master's vipmon (its application keeps
running), with a new master reached through the VIP between them.

The judge goes by the order of events the cluster itself recorded, not by timers:
term T of node X holds from its ``began`` (its first positive answer, in ``/history``)
to the next term's; a request X answered over [sent, received] is correct only if
that span meets one of X's terms. Errors (refused, reset, 502) are counted, not
judged. Without ``--fence-port`` the same judge finds hundreds of requests served off
term through nginx (``bench/fence.py`` prints the figures), so it can fail.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.fence_lb import scenario

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux")


@pytest.mark.parametrize("lb", ["nginx", "haproxy", "caddy"])
def test_no_request_through_the_vip_is_served_outside_its_nodes_term(lb: str, tmp_path: Path):
    run = scenario(lb, tmp_path)
    v = run.verdict
    kinds = [f.kind for f in run.faults]
    assert kinds == ["switchover", "sigterm", "sigkill", "sigstop"]
    # Every fault moved the term to another node, and the history shows each move.
    assert all(f.new != f.old for f in run.faults), run.faults
    assert len(run.terms) >= len(run.faults) + 1, run.terms
    # The run served real traffic, from several nodes: a judge of nothing proves nothing.
    assert sum(v.served.values()) >= 200, v.line()
    assert len(v.served) >= 2, v.line()
    assert not v.wrong, f"{v.line()}; first: {v.wrong[:5]}"
