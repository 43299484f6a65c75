"""The timer arithmetic behind every generated config's failover and overlap figures."""

from hypothesis import given
from hypothesis import strategies as st

from app.adc.text import duration
from app.adc.timers import (
    F5Timers,
    HaproxyTimers,
    NginxPlusTimers,
    NodeTiming,
    assess,
    passive_lines,
    seconds,
)

NODE = NodeTiming()
HAPROXY_DEFAULTS = HaproxyTimers(
    inter=2, fastinter=2, downinter=2, rise=2, fall=3, timeout_check=2, timeout_connect=5
)


def test_shipped_haproxy_timers_never_hold_two_up():
    figures = assess(HaproxyTimers(), NODE)
    assert figures.safe
    assert figures.overlap == 0
    # TTL 2 + 0.5 s etcd lag + downinter 1 + (rise - 1) x fastinter 2
    assert figures.failover == 5.5
    assert any(line.startswith("Two servers UP at once: never") for line in figures.lines)


def test_haproxy_defaults_overlap_on_a_planned_handover():
    figures = assess(HAPROXY_DEFAULTS, NODE)
    # old DOWN within inter + 2 x fastinter = 6 s, new UP after (rise - 1) x 2 = 2 s
    # (minus the 10 ms settle time before the new master can turn positive)
    assert any("planned handover" in line and "TWO UP for 3.99 s" in line for line in figures.lines)
    assert figures.overlap >= 4


def test_f5_defaults_overlap_and_shipped_do_not():
    # old DOWN within 16 s; new UP at once, but only after the 10 ms settle time
    assert assess(F5Timers(5, 16, 0), NODE).overlap == 15.99
    shipped = assess(F5Timers(), NODE)
    assert shipped.safe
    # TTL 2 + 0.5 + interval 1 + time-until-up 5
    assert shipped.failover == 8.5


def test_f5_time_until_up_rounds_to_whole_intervals():
    assert F5Timers(interval=2, timeout=7, time_until_up=3).up_within().seconds == 2 + 4


def test_nginx_plus_shipped():
    figures = assess(NginxPlusTimers(), NODE)
    assert figures.safe
    assert figures.failover == 5.5


def test_figures_name_each_timer():
    text = "\n".join(assess(HaproxyTimers(), NODE).lines)
    for name in ("inter", "fastinter", "downinter", "rise", "fall", "timeout check", "TTL"):
        assert name in text


def test_passive_lines_state_that_overlap_does_not_apply():
    text = "\n".join(passive_lines(NODE, 3, 1.0))
    assert "not applicable" in text
    assert "2.5 s" in text


def test_number_formats():
    assert [seconds(x) for x in (1, 0.5, 2.25, 16)] == ["1 s", "0.5 s", "2.25 s", "16 s"]
    assert [duration(x) for x in (1, 2.0, 0.5, 1.25)] == ["1s", "2s", "500ms", "1250ms"]


timers = st.builds(
    HaproxyTimers,
    inter=st.sampled_from([0.5, 1.0, 2.0]),
    fastinter=st.sampled_from([0.5, 1.0, 2.0]),
    downinter=st.sampled_from([0.5, 1.0, 2.0]),
    rise=st.integers(1, 5),
    fall=st.integers(1, 5),
    timeout_check=st.sampled_from([0.2, 0.5, 1.0]),
)


@given(timers)
def test_more_rise_never_adds_overlap_and_more_fall_never_removes_it(t):
    base = assess(t, NODE).overlap
    more_rise = HaproxyTimers(
        t.inter, t.fastinter, t.downinter, t.rise + 1, t.fall, t.timeout_check, t.timeout_connect
    )
    more_fall = HaproxyTimers(
        t.inter, t.fastinter, t.downinter, t.rise, t.fall + 1, t.timeout_check, t.timeout_connect
    )
    assert assess(more_rise, NODE).overlap <= base
    assert assess(more_fall, NODE).overlap >= base


@given(timers)
def test_safe_exactly_when_every_case_has_time_to_spare(t):
    figures = assess(t, NODE)
    spare = [line for line in figures.lines if "to spare" in line]
    assert figures.safe == (len(spare) == 5)
    assert figures.overlap == 0 or not figures.safe


def test_a_case_closer_than_the_round_trip_allowance_is_not_safe():
    # The new master UP 10 ms after the old one is DOWN: a tie that round trips decide.
    figures = assess(F5Timers(interval=1, timeout=4, time_until_up=4), NODE)
    assert not figures.safe
    assert figures.overlap == 0
    assert any("TOO CLOSE: only 0.01 s" in line for line in figures.lines)
