"""Metrics: scrape-time gauges agree with /monitor; counters; the text format."""

import math
import shutil
import subprocess
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from app.checks import CheckState
from app.clock import FakeClock
from app.metrics import Metrics, NodeInfo, reason_slug
from app.role import Role, Snapshot, TermRecord, Transition
from tests.unit.test_http import MASTER, NOW, STANDBY, Holder

INFO = NodeInfo("c1", "n1", 2.0)


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_master_then_lease_runs_out():
    clock, holder = FakeClock(NOW), Holder(MASTER)
    metrics = Metrics(holder, clock, INFO)
    s = scrape(metrics)
    assert value(s, "vipmon_is_master") == 1
    assert value(s, "vipmon_term") == 42
    assert value(s, "vipmon_lease_remaining_seconds") == 1.0
    assert value(s, "vipmon_role", role="MASTER") == 1
    assert value(s, "vipmon_check_up") == 1

    clock.advance(1.0)  # the snapshot is not refreshed: the scrape still fails closed
    s = scrape(metrics)
    assert value(s, "vipmon_is_master") == 0
    assert value(s, "vipmon_role", role="MASTER") == 0
    assert value(s, "vipmon_role", role="UNKNOWN") == 1
    assert value(s, "vipmon_lease_remaining_seconds") == 0


def test_a_standby_reports_no_lease():
    s = scrape(Metrics(Holder(STANDBY), FakeClock(NOW), INFO))
    assert value(s, "vipmon_is_master") == 0
    assert value(s, "vipmon_role", role="STANDBY") == 1
    assert value(s, "vipmon_lease_remaining_seconds") == 0
    assert value(s, "vipmon_term") == 42


snapshots = st.builds(
    Snapshot,
    node_id=st.just("n1"),
    backend=st.just("etcd"),
    holds_key=st.booleans(),
    term=st.integers(0, 10**9),
    lease_valid_until=st.floats(NOW - 5, NOW + 5),
    store_ok_until=st.floats(NOW - 5, NOW + 5),
    leader_id=st.sampled_from([None, "n1", "n2"]),
    leader_unknown=st.booleans(),
    draining=st.booleans(),
    shutting_down=st.booleans(),
    fence_until=st.sampled_from([math.inf, NOW - 1, NOW + 3]),
    fence_error=st.sampled_from([None, "nft: no such table"]),
)


@given(snap=snapshots, elapsed=st.floats(0, 10))
def test_gauges_match_the_monitor_decision_at_the_scrape(snap, elapsed):
    clock = FakeClock(NOW)
    clock.advance(elapsed)
    fenced = snap.fence_until != math.inf
    s = scrape(Metrics(Holder(snap), clock, replace(INFO, fence_configured=fenced)))
    role = snap.role_at(clock.now())
    assert value(s, "vipmon_is_master") == (1 if role is Role.MASTER else 0)
    if role is Role.MASTER and fenced:
        assert value(s, "vipmon_fence_open") == 1
    assert value(s, "vipmon_fence_error") == (0 if snap.fence_error is None else 1)
    assert {r: value(s, "vipmon_role", role=r.value) for r in Role} == {
        r: (1 if r is role else 0) for r in Role
    }
    expected = snap.lease_remaining(clock.now()) if snap.holds_key else 0.0
    assert value(s, "vipmon_lease_remaining_seconds") == pytest.approx(expected)


@pytest.mark.parametrize(
    ("state", "up"),
    [
        (None, 1),
        (CheckState(False, True, "no local check", 0.0), 1),
        (CheckState(True, True, "checks passing", 0.0), 1),
        (CheckState(True, False, "http http://x/: 500", 0.0), 0),
    ],
)
def test_check_up(state, up):
    check = None if state is None else (lambda: state)
    s = scrape(Metrics(Holder(STANDBY), FakeClock(NOW), INFO, check_state=check))
    assert value(s, "vipmon_check_up") == up


def test_counters_and_the_renew_histogram():
    metrics = Metrics(Holder(MASTER), FakeClock(NOW), INFO)
    metrics.transition(
        Transition(1.0, Role.STANDBY, Role.MASTER, "acquired the leader key (term 42)")
    )
    metrics.transition(
        Transition(2.0, Role.STANDBY, Role.MASTER, "acquired the leader key (term 43)")
    )
    metrics.transition(
        Transition(3.0, Role.MASTER, Role.UNKNOWN, "store unreachable (keepalive: x)")
    )
    for seconds in (0.002, 0.004, 0.3):
        metrics.renew_latency(seconds)
    metrics.store_error("keepalive")
    metrics.store_error("keepalive")
    metrics.store_error("acquire")
    metrics.probes.add("/monitor", 200)
    metrics.probes.add("/monitor", 503)
    metrics.probes.add("/monitor", 503)
    s = scrape(metrics)
    moved = {"from": "STANDBY", "to": "MASTER", "reason": "acquired_the_leader_key"}
    assert value(s, "vipmon_transitions_total", **moved) == 2
    lost = {"from": "MASTER", "to": "UNKNOWN", "reason": "store_unreachable"}
    assert value(s, "vipmon_transitions_total", **lost) == 1
    assert value(s, "vipmon_renew_latency_seconds_count") == 3
    assert value(s, "vipmon_renew_latency_seconds_bucket", le="0.0025") == 1
    assert value(s, "vipmon_renew_latency_seconds_bucket", le="0.005") == 2
    assert value(s, "vipmon_renew_latency_seconds_bucket", le="+Inf") == 3
    assert value(s, "vipmon_renew_latency_seconds_sum") == pytest.approx(0.306)
    assert value(s, "vipmon_store_errors_total", kind="keepalive") == 2
    assert value(s, "vipmon_store_errors_total", kind="acquire") == 1
    assert value(s, "vipmon_probes_total", path="/monitor", code="503") == 2
    assert value(s, "vipmon_probes_total", path="/monitor", code="200") == 1


def test_each_instance_has_its_own_registry():
    first = Metrics(Holder(MASTER), FakeClock(NOW), INFO)
    second = Metrics(Holder(STANDBY), FakeClock(NOW), INFO)
    first.store_error("watch")
    assert ("vipmon_store_errors_total", (("kind", "watch"),)) not in scrape(second)
    assert value(scrape(first), "vipmon_store_errors_total", kind="watch") == 1


def test_the_exposition_names_every_metric_with_help_and_type():
    body, _ = Metrics(Holder(MASTER), FakeClock(NOW), INFO).render()
    text = body.decode()
    for name, kind in [
        ("vipmon_is_master", "gauge"),
        ("vipmon_role", "gauge"),
        ("vipmon_term", "gauge"),
        ("vipmon_lease_remaining_seconds", "gauge"),
        ("vipmon_check_up", "gauge"),
        ("vipmon_transitions_total", "counter"),
        ("vipmon_renew_latency_seconds", "histogram"),
        ("vipmon_store_errors_total", "counter"),
        ("vipmon_probes_total", "counter"),
        ("vipmon_store_up", "gauge"),
        ("vipmon_eligible", "gauge"),
        ("vipmon_info", "gauge"),
        ("vipmon_lease_ttl_seconds", "gauge"),
        ("vipmon_term_started_timestamp_seconds", "gauge"),
        ("vipmon_maintenance_since_timestamp_seconds", "gauge"),
        ("vipmon_paused_since_timestamp_seconds", "gauge"),
        ("vipmon_fence_configured", "gauge"),
        ("vipmon_fence_open", "gauge"),
        ("vipmon_fence_error", "gauge"),
        ("vipmon_failover_gap_seconds", "histogram"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text


@pytest.mark.parametrize(
    ("reason", "slug"),
    [
        ("acquired the leader key (term 7)", "acquired_the_leader_key"),
        ("store unreachable (keepalive: connection refused)", "store_unreachable"),
        ("lease deadline passed without a renewal", "lease_deadline_passed_without_a_renewal"),
        ("Leader key deleted", "leader_key_deleted"),
        ("store unreachable: etcd 10.0.0.1 timed out", "store_unreachable"),
        ("resigned term 12 after drain", "resigned_term_after_drain"),
        ("one two three four five six seven", "one_two_three_four_five_six"),
        ("", "unknown"),
        ("(term 3)", "unknown"),
    ],
)
def test_reason_slug(reason, slug):
    assert reason_slug(reason) == slug


def test_info_ttl_store_and_eligibility():
    s = scrape(Metrics(Holder(MASTER), FakeClock(NOW), INFO))
    assert value(s, "vipmon_info", cluster="c1", node="n1", version=INFO.version) == 1
    assert value(s, "vipmon_lease_ttl_seconds") == 2.0
    assert value(s, "vipmon_store_up") == 1
    assert value(s, "vipmon_eligible") == 1
    lost = replace(MASTER, store_ok_until=NOW - 0.1, eligible=False)
    s = scrape(Metrics(Holder(lost), FakeClock(NOW), INFO))
    assert value(s, "vipmon_store_up") == 0
    assert value(s, "vipmon_eligible") == 0


def test_maintenance_and_pause_since_are_zero_while_off():
    s = scrape(Metrics(Holder(STANDBY), FakeClock(NOW), INFO))
    assert value(s, "vipmon_maintenance_since_timestamp_seconds") == 0
    assert value(s, "vipmon_paused_since_timestamp_seconds") == 0
    on = replace(
        STANDBY, maintenance=True, maintenance_since=1.7e9, paused=True, paused_since=1.6e9
    )
    s = scrape(Metrics(Holder(on), FakeClock(NOW), INFO))
    assert value(s, "vipmon_maintenance_since_timestamp_seconds") == 1.7e9
    assert value(s, "vipmon_paused_since_timestamp_seconds") == 1.6e9


def test_fence_gauges():
    s = scrape(Metrics(Holder(MASTER), FakeClock(NOW), INFO))
    assert [value(s, f"vipmon_fence_{k}") for k in ("configured", "open", "error")] == [0, 0, 0]
    fenced = replace(INFO, fence_configured=True)
    s = scrape(Metrics(Holder(replace(MASTER, fence_until=NOW + 0.5)), FakeClock(NOW), fenced))
    assert [value(s, f"vipmon_fence_{k}") for k in ("configured", "open", "error")] == [1, 1, 0]
    assert value(s, "vipmon_is_master") == 1
    failed = replace(MASTER, fence_until=-math.inf, fence_error="nft: permission denied")
    s = scrape(Metrics(Holder(failed), FakeClock(NOW), fenced))
    assert [value(s, f"vipmon_fence_{k}") for k in ("configured", "open", "error")] == [1, 0, 1]
    assert value(s, "vipmon_is_master") == 0


def term(n, node, began, gap=None, gap_max=None, url="http://n1"):
    return TermRecord(n, node, url, began, None, None, None, "", gap, gap_max)


def test_term_started_from_the_history_or_the_masters_own_transition():
    fresh = replace(MASTER, last_transition=None)
    s = scrape(Metrics(Holder(fresh), FakeClock(NOW), INFO))
    assert value(s, "vipmon_term_started_timestamp_seconds") == 0
    won = Transition(1.7e9 + 5, Role.STANDBY, Role.MASTER, "acquired the leader key (term 42)")
    s = scrape(Metrics(Holder(replace(MASTER, last_transition=won)), FakeClock(NOW), INFO))
    assert value(s, "vipmon_term_started_timestamp_seconds") == 1.7e9 + 5
    known = replace(STANDBY, history=(term(42, "n1", 1.7e9), term(41, "n3", 1.6e9)))
    s = scrape(Metrics(Holder(known), FakeClock(NOW), INFO))
    assert value(s, "vipmon_term_started_timestamp_seconds") == 1.7e9


def gaps(samples):
    return {
        dict(labels).get("le"): v
        for (name, labels), v in samples.items()
        if name.startswith("vipmon_failover_gap_seconds")
    }


def test_the_failover_gap_is_observed_once_per_term_by_its_new_master():
    holder = Holder(replace(MASTER, advertise_url="http://n1", started_at=100.0))
    metrics = Metrics(holder, FakeClock(NOW), INFO)
    buckets = gaps(scrape(metrics))
    assert "3.5" in buckets  # the crash bound for a 2 s TTL: TTL + 0.5 s + 1 s
    assert buckets["+Inf"] == 0
    history = (
        term(45, "n1", 400.0, gap=0.02),  # a planned hand-over: the exact gap
        term(44, "n2", 300.0, gap=0.01),  # another node's term: not ours to count
        term(43, "n1", 200.0, gap=0.003, gap_max=2.51),  # a crash: its upper bound
        term(42, "n1", 50.0, gap=0.1),  # won by an earlier process of n1
        term(41, "n1", 150.0, gap=None),  # no gap known (the cluster's first term)
        term(40, "n1", 120.0, gap=0.3, url="http://other"),  # another process, same id
    )
    holder.snapshot = replace(holder.snapshot, history=history)
    for _ in range(3):  # every scrape after the first sees the same counts
        s = scrape(metrics)
        assert value(s, "vipmon_failover_gap_seconds_count") == 2
        assert value(s, "vipmon_failover_gap_seconds_sum") == pytest.approx(2.53)
        assert value(s, "vipmon_failover_gap_seconds_bucket", le="0.025") == 1
        assert value(s, "vipmon_failover_gap_seconds_bucket", le="2.5") == 1
        assert value(s, "vipmon_failover_gap_seconds_bucket", le="3.5") == 2


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus)")
def test_promtool_check_metrics_is_clean(tmp_path):
    history = (term(43, "n1", 200.0, gap=0.003, gap_max=2.51, url=""),)
    snap = replace(MASTER, history=history, maintenance=True, maintenance_since=1.7e9)
    metrics = Metrics(Holder(snap), FakeClock(NOW), replace(INFO, fence_configured=True))
    metrics.transition(Transition(1.0, Role.STANDBY, Role.MASTER, "acquired the leader key"))
    metrics.renew_latency(0.003)
    metrics.store_error("keepalive")
    metrics.probes.add("/monitor", 200)
    body, _ = metrics.render()
    run = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, b"", b"")
