"""Metrics: scrape-time gauges agree with /monitor; counters; the text format."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from app.checks import CheckState
from app.clock import FakeClock
from app.metrics import Metrics, reason_slug
from app.role import Role, Snapshot, Transition
from tests.unit.test_http import MASTER, NOW, STANDBY, Holder


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
    metrics = Metrics(holder, clock)
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
    s = scrape(Metrics(Holder(STANDBY), FakeClock(NOW)))
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
)


@given(snap=snapshots, elapsed=st.floats(0, 10))
def test_gauges_match_the_monitor_decision_at_the_scrape(snap, elapsed):
    clock = FakeClock(NOW)
    clock.advance(elapsed)
    s = scrape(Metrics(Holder(snap), clock))
    role = snap.role_at(clock.now())
    assert value(s, "vipmon_is_master") == (1 if role is Role.MASTER else 0)
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
    s = scrape(Metrics(Holder(STANDBY), FakeClock(NOW), check_state=check))
    assert value(s, "vipmon_check_up") == up


def test_counters_and_the_renew_histogram():
    metrics = Metrics(Holder(MASTER), FakeClock(NOW))
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
    first = Metrics(Holder(MASTER), FakeClock(NOW))
    second = Metrics(Holder(STANDBY), FakeClock(NOW))
    first.store_error("watch")
    assert ("vipmon_store_errors_total", (("kind", "watch"),)) not in scrape(second)
    assert value(scrape(first), "vipmon_store_errors_total", kind="watch") == 1


def test_the_exposition_names_every_metric_with_help_and_type():
    body, _ = Metrics(Holder(MASTER), FakeClock(NOW)).render()
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
