"""The short chaos run: about a minute and a half of random faults against three etcd nodes.

It runs the same engine as ``bench/chaos.py`` (``make chaos``) with a random
seed that it prints (set ``CHAOS_SEED`` to replay a schedule; the timing of a
real cluster still varies). It fails on any violation of the rules in
:mod:`tests.support.checker`.

There are no timed assertions here beyond those rules. Their time bounds
(a node cut off from etcd turns negative within the TTL; a master answers
again within a stated bound after a fault heals, derived in
:mod:`tests.chaos.engine`) are safety and recovery bounds that are part of
the product's promise, not performance targets.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos.engine import run_chaos

pytestmark = [pytest.mark.slow, pytest.mark.etcd]

CHAOS_SECONDS = 80.0


def test_short_chaos_run_keeps_the_invariant(tmp_path: Path):
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**31))
    print(f"chaos seed: {seed} (replay with CHAOS_SEED={seed})")
    result = run_chaos(tmp_path, seed, CHAOS_SECONDS)
    report = result.report()
    print(report)
    assert result.verdict.faults, "no fault was injected"
    assert result.verdict.ok, f"chaos seed {seed}: invariant violated\n{report}"
