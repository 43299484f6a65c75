"""The fence on a fake clock, against a model of the kernel's timed sets.

:class:`ModelKernel` applies the commands of :mod:`app.fence.rules` as nftables would:
a batch is one transaction, it may take time (the clock moves during the call), and
an element with a timeout is gone at the instant the kernel applied it plus the
timeout plus up to a jiffy. The properties: no element ever outlives the lease
deadline it was granted under, and a node is positive only while the kernel surely
holds its permission for new connections.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.clock import FakeClock
from app.election.elector import Elector
from app.errors import FenceError
from app.fence import rules
from app.fence.fence import FENCE_MARGIN, Fence, permissions
from app.fence.kernel import has_net_admin
from app.role import Role
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore
from tests.unit.test_handover import _settle

TABLE = rules.table_name("vipmon")
JIFFY = 0.004

_ELEMENT = re.compile(r"^add element inet \S+ (\w+) \{ (.*) \}$")
_TIMED = re.compile(r"(\d+) timeout (\d+)ms")


class ModelKernel:
    """The table's two sets, their elements and expiry instants, on the fake clock.

    ``latency``: seconds each call takes; the kernel applies a batch at a random
    instant inside the call (here: at its end, the latest, which is the worst case).
    ``fail``: the next calls raise FenceError (nft's refusal), and change nothing.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sets: dict[str, dict[int, float]] = {name: {} for name in rules.SETS}
        self.latency = 0.0
        self.fail: str | None = None
        self.installed = False
        self.calls: list[str] = []

    def run(self, commands: str) -> str:
        self.clock.advance(self.latency)
        self.calls.append(commands)
        if self.fail is not None:
            raise FenceError(self.fail)
        now = self.clock.now()
        staged = {name: dict(elements) for name, elements in self.sets.items()}
        for line in commands.splitlines():
            if line.startswith("add table"):
                self.installed = True
            elif line.startswith("flush set"):
                staged[line.split()[-1]].clear()
            elif line.startswith("delete element"):
                name = line.split()[4]
                for port in re.findall(r"\d+", line.split("{")[1]):
                    if int(port) not in staged[name]:
                        raise FenceError("Could not process rule: No such file or directory")
                    del staged[name][int(port)]
            elif m := _ELEMENT.match(line):
                name, body = m.groups()
                timed = _TIMED.findall(body)
                if timed:
                    for port, ms in timed:
                        staged[name][int(port)] = now + int(ms) / 1000 + JIFFY
                else:
                    for port in re.findall(r"\d+", body):
                        staged[name].setdefault(int(port), math.inf)
        self.sets = staged
        return ""

    def holds(self, name: str, port: int) -> bool:
        return self.clock.now() < self.sets[name].get(port, -math.inf)

    def expiry(self, name: str, port: int) -> float:
        return self.sets[name].get(port, -math.inf)


def _fence(clock: FakeClock, established: bool = True) -> tuple[Fence, ModelKernel]:
    kernel = ModelKernel(clock)
    fence = Fence(kernel, clock, TABLE, (8080,), established)
    fence.install()
    return fence, kernel


# -- the fence alone -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 3),  # seconds to the next renewal
            st.floats(0.1, 5),  # the deadline it sets, ahead of now
            st.floats(0, 0.08),  # how long the kernel call takes
            st.booleans(),  # new connections wanted
            st.booleans(),  # established wanted
        ),
        max_size=30,
    )
)
def test_no_permission_outlives_the_deadline_it_was_granted_under(steps):
    clock = FakeClock()
    fence, kernel = _fence(clock)
    for wait, ahead, latency, new, est in steps:
        clock.advance(wait)
        valid_until = clock.now() + ahead
        kernel.latency = latency
        fence.sync(new, est, valid_until)
        for name in rules.SETS:
            assert kernel.expiry(name, 8080) <= valid_until, (name, kernel.sets, valid_until)
        # Positive only while the kernel surely lets new connections in.
        if clock.now() < fence.open_until:
            assert kernel.holds("new_ok", 8080)
            assert fence.open_until <= kernel.expiry("new_ok", 8080)


def test_a_shorter_deadline_replaces_a_longer_permission():
    clock = FakeClock()
    fence, kernel = _fence(clock)
    fence.sync(True, True, clock.now() + 10)
    assert kernel.expiry("new_ok", 8080) > clock.now() + 9
    fence.sync(True, True, clock.now() + 1)
    assert kernel.expiry("new_ok", 8080) <= clock.now() + 1 - FENCE_MARGIN + JIFFY
    assert "delete element" in kernel.calls[-1]


def test_a_call_slower_than_the_margin_closes_the_ports():
    clock = FakeClock()
    fence, kernel = _fence(clock)
    kernel.latency = FENCE_MARGIN  # the element would outlive the deadline by the latency
    fence.sync(True, True, clock.now() + 2)
    assert not kernel.holds("new_ok", 8080) and not kernel.holds("est_ok", 8080)
    assert fence.open_until == -math.inf


def test_nothing_is_sent_again_until_the_deadline_moves():
    clock = FakeClock()
    fence, kernel = _fence(clock)
    fence.sync(True, True, clock.now() + 2)
    calls = len(kernel.calls)
    clock.advance(0.3)
    fence.sync(True, True, clock.now() + 1.7)  # the same deadline, read later
    assert len(kernel.calls) == calls
    fence.sync(True, True, clock.now() + 2)
    assert len(kernel.calls) == calls + 1


def test_keep_never_grants_nor_installs_the_established_rule():
    clock = FakeClock()
    fence, kernel = _fence(clock, established=False)
    fence.sync(True, True, clock.now() + 2)
    assert kernel.holds("new_ok", 8080) and not kernel.holds("est_ok", 8080)
    install = rules.install(TABLE, (8080,), established=False)
    assert "@est_ok" not in install and "@new_ok" in install


def test_a_failed_refresh_is_an_error_and_closes_what_it_can():
    clock = FakeClock()
    fence, kernel = _fence(clock)
    fence.sync(True, True, clock.now() + 2)
    kernel.fail = "Could not process rule: No such file or directory"
    clock.advance(0.5)
    fence.sync(True, True, clock.now() + 2)
    assert fence.error == kernel.fail and fence.open_until == -math.inf
    assert not fence.closed
    kernel.fail = None
    fence.sync(False, False, clock.now() + 2)  # repaired only after a second
    assert fence.error is not None
    clock.advance(1.0)
    fence.sync(False, False, clock.now() + 2)
    assert fence.error is None and fence.closed
    assert not kernel.holds("new_ok", 8080)


def test_the_install_text_fences_only_other_interfaces_and_resets():
    text = rules.install(TABLE, (8080, 8443), established=True)
    assert 'iifname "lo" accept' in text
    assert text.count("reject with tcp reset") == 2
    assert "tcp dport { 8080, 8443 } ct state != { established, related }" in text
    assert text.rstrip().endswith("flush set inet vipmon_vipmon est_ok")


def test_table_names_keep_only_what_nft_takes():
    assert rules.table_name("my-cluster.a") == "vipmon_my_cluster_a"


def test_the_status_listing_is_read_back():
    listing = (
        "table inet vipmon_x {\n\tset new_ok {\n\t\ttype inet_service\n\t\tflags timeout\n"
        "\t\telements = { 8080 timeout 1s500ms expires 1s234ms, 8443 timeout 2m expires 1m2s }"
        "\n\t}\n\tset est_ok {\n\t\ttype inet_service\n\t\tflags timeout\n\t}\n}\n"
    )
    found = permissions(listing)
    assert [(p.set_name, p.port, p.expires) for p in found] == [
        ("new_ok", 8080, 1.234),
        ("new_ok", 8443, 62.0),
    ]


def test_net_admin_is_read_from_the_effective_set(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000001000\n")
    assert has_net_admin(str(status))
    status.write_text("Name:\tx\nCapEff:\t0000000000000000\n")
    assert not has_net_admin(str(status))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["8700"], "is the port"),
        (["http"], "is not a port number"),
        (["0"], "is not a port in 1-65535"),
    ],
)
def test_bad_fence_ports_are_refused_with_the_field(value, message):
    with pytest.raises(Exception, match=message) as info:
        load_settings({"fence_port": value}, env={})
    assert "fence_port" in str(info.value)


# -- the fence in the elector ----------------------------------------------------------


class FencedWorld:
    def __init__(self, drain: float = 0.0) -> None:
        self.clock = FakeClock()
        self.data = MemoryData(self.clock)
        self.kernels: dict[str, ModelKernel] = {}
        self.nodes = {n: self.node(n, drain) for n in ("n1", "n2")}

    def node(self, node_id: str, drain: float) -> Elector:
        cfg: dict[str, Any] = {
            "node_id": node_id,
            "advertise_url": f"http://{node_id}",
            "fence_port": ["8080"],
            "drain_time": drain,
        }
        fence, kernel = _fence(self.clock)
        self.kernels[node_id] = kernel
        settings_ = load_settings(cfg, env={})
        return Elector(settings_, MemoryStore(self.data), self.clock, fence=fence)

    async def elect(self) -> Elector:
        for e in self.nodes.values():
            await e.ensure_lease()
        await self.nodes["n1"].campaign()
        await self.nodes["n2"].campaign()
        return self.nodes["n1"]


def test_the_master_is_positive_only_after_the_kernel_let_it_in():
    async def scenario() -> None:
        w = FencedWorld()
        master = await w.elect()
        k1, k2 = w.kernels["n1"], w.kernels["n2"]
        assert master.role() is Role.MASTER
        assert k1.holds("new_ok", 8080) and k1.holds("est_ok", 8080)
        assert not k2.holds("new_ok", 8080)
        # A frozen master: no renewal. The kernel drops the permission before the deadline.
        valid_until = master.deadline.valid_until
        w.clock.advance(valid_until - w.clock.now() - FENCE_MARGIN + JIFFY + 0.001)
        assert not k1.holds("new_ok", 8080) and not k1.holds("est_ok", 8080)
        assert w.clock.now() < valid_until

    asyncio.run(scenario())


def test_a_planned_release_closes_new_then_established_then_deletes_the_key():
    async def scenario() -> None:
        w = FencedWorld(drain=1.0)
        master = await w.elect()
        kernel = w.kernels["n1"]
        task = asyncio.create_task(master.handover.release("test"))
        await asyncio.sleep(0)
        # Draining: new connections refused at once, established go on, the key stays.
        assert master.role() is Role.DRAINING
        assert not kernel.holds("new_ok", 8080) and kernel.holds("est_ok", 8080)
        assert master.key in w.data.keys
        await _settle(task, w.clock, 2.0)
        assert task.result() is True
        assert not kernel.holds("est_ok", 8080)
        assert master.key not in w.data.keys
        # The delete came after the last kernel call that closed established connections.
        assert "flush set inet vipmon_vipmon est_ok" in kernel.calls[-1]

    asyncio.run(scenario())


def test_a_fence_that_fails_makes_the_master_negative_and_gives_up_its_lease():
    async def scenario() -> None:
        w = FencedWorld()
        master = await w.elect()
        w.kernels["n1"].fail = "Could not process rule: No such file or directory"
        w.clock.advance(0.5)
        await master.renew()  # the renewal's grant fails
        assert master.role() is not Role.MASTER
        assert master.snapshot.fence_error is not None
        await master.renew()  # the next one abandons the lease, without revoking it
        assert not master.holds_key and master.lease_id is None
        assert master.key in w.data.keys  # it expires in the store, after the kernel's
        assert not master.eligible()

    asyncio.run(scenario())


def test_a_node_whose_fence_failed_steps_aside_until_another_node_holds_the_key():
    async def scenario() -> None:
        w = FencedWorld()
        master, other = await w.elect(), w.nodes["n2"]
        w.kernels["n1"].fail = "Could not process rule: No such file or directory"
        w.clock.advance(0.5)
        await master.renew()
        await master.renew()  # abandoned
        w.kernels["n1"].fail = None
        for _ in range(8):  # 4 s: the abandoned key expires; n2 keeps its lease
            w.clock.advance(0.5)
            await other.renew()
            master.publish("tick")  # the fence is put back, closed, after 1 s
        assert master.fence.error is None and master.key not in w.data.keys
        # Repaired, but the term it abandoned is not its to win back.
        assert not master.eligible()
        assert await master.campaign() and not master.holds_key
        assert await other.campaign() and other.holds_key
        assert await master.observe(0.0)
        assert master.leader == other.me
        assert master.eligible()  # another node took the key: it may stand again

    asyncio.run(scenario())
