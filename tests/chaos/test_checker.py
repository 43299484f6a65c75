"""The chaos checker on hand-made probe records: each rule catches what it should."""

from __future__ import annotations

from tests.support.checker import Fault, check, timeline
from tests.support.probe import Probe


def probes(node: str, status: int, term: int, start: float, end: float, step: float = 0.1):
    """One probe every ``step`` s from ``start`` to ``end``, each taking 5 ms."""
    n = round((end - start) / step)
    return [
        Probe(node, start + i * step, start + i * step + 0.005, status, term, f"term={term}")
        for i in range(n)
    ]


def rules(verdict) -> list[str]:
    return [v.rule for v in verdict.violations]


CLEAN = [
    *probes("n1", 200, 5, 0.0, 3.0),
    *probes("n2", 503, 5, 0.0, 3.0),
    *probes("n1", 0, 0, 3.0, 6.0),
    *probes("n2", 200, 9, 5.5, 8.0),
]
KILL = Fault("kill master", "n1", 3.0, 3.0, bound=10.0)


def test_a_clean_failover_passes_and_is_measured():
    verdict = check(CLEAN, [KILL])
    assert verdict.ok, verdict.report()
    assert verdict.failover["kill master"] == [2.5]
    assert 2.4 < verdict.outage["kill master"][0] <= 2.5
    report = verdict.report()
    assert "violations: 0" in report
    assert "kill master" in report
    listed = verdict.report(kinds=["isolate etcd leader"])
    assert "  isolate etcd leader      0" in listed
    assert listed.count("isolate etcd leader") == 3  # injected, failover and outage tables


def test_two_nodes_positive_with_one_term():
    verdict = check([*CLEAN, *probes("n3", 200, 9, 6.0, 6.2)], [KILL])
    assert "term-owner" in rules(verdict)


def test_a_stale_positive_after_a_newer_term():
    verdict = check([*CLEAN, *probes("n1", 200, 5, 7.0, 7.2)], [KILL])
    assert "stale" in rules(verdict)


def test_a_node_cut_off_from_etcd_must_go_negative_within_the_ttl():
    cut = Fault("partition master", "n1", 1.0, 4.0, 10.0, cut_off=("n1",), grace=2.0)
    assert check(probes("n1", 200, 5, 0.0, 3.0), [cut]).ok
    late = check(probes("n1", 200, 5, 0.0, 3.2), [cut])
    assert rules(late) == ["cut-off"]


def test_a_paused_node_never_comes_back_with_its_old_term():
    pause = Fault("stop master", "n1", 3.0, 6.0, 10.0, paused="n1")
    back = [*CLEAN, *probes("n1", 200, 5, 6.0, 6.3)]
    assert "paused" in rules(check(back, [pause]))
    honest = [*CLEAN, *probes("n1", 503, 9, 6.0, 6.3)]
    assert check(honest, [pause]).ok


def test_a_master_must_appear_within_the_bound_after_a_heal():
    slow = Fault("kill master", "n1", 3.0, 3.0, bound=2.0)
    verdict = check(CLEAN, [slow])
    assert rules(verdict) == ["recovery"]
    assert "after 2.500 s" in verdict.violations[0].message


def test_the_timeline_folds_equal_answers_and_marks_faults():
    text = timeline(CLEAN, [KILL], at=3.0, window=1.0)
    assert "inject kill master on n1" in text
    assert "n1 200 term=5 x10" in text
    assert len(text.splitlines()) < 10


def test_a_node_without_etcd_quorum_must_go_negative_within_the_ttl():
    lost = Fault(
        "stop 2 etcd members", "m1+m2", 1.0, 6.0, 15.0, quorum_lost=("n1", "n2"), grace=2.0
    )
    on_time = [*probes("n1", 200, 5, 0.0, 3.0), *probes("n2", 503, 5, 0.0, 6.0)]
    assert check(on_time, [lost]).ok
    late = check([*probes("n1", 200, 5, 0.0, 3.3), *probes("n2", 503, 5, 0.0, 6.0)], [lost])
    assert set(rules(late)) == {"quorum"}
    first = late.violations[0]
    assert first.at > 3.0
    assert "n1 positive with term 5 2.100 s after losing etcd's quorum" in first.message
    assert "'stop 2 etcd members' on m1+m2" in first.message
    assert "within 2.0 s" in first.message
    assert "violations: 2 (quorum: 2)" in late.report()


def test_the_quorum_rule_spares_nodes_it_does_not_name_and_ends_with_the_fault():
    lost = Fault("isolate etcd leader", "m0", 1.0, 4.0, 15.0, quorum_lost=("n2",), grace=2.0)
    master_elsewhere = probes("n1", 200, 5, 0.0, 6.0)  # n1 talks to the new etcd leader
    assert check(master_elsewhere, [lost]).ok
    after_heal = [*probes("n2", 200, 5, 0.0, 3.0), *probes("n2", 200, 7, 4.0, 6.0)]
    assert check(after_heal, [lost]).ok
