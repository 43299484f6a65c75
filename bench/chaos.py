"""The long chaos run: random faults against 3 vipmon nodes on a 3-member etcd.

Not a test: it runs the engine of ``tests/chaos`` for ``--duration`` minutes
with ``--seed`` (random if not given; printed either way), prints the faults
injected per kind, the probe counts, the violations and the failover times,
and exits 1 on any violation (printing the seed and a timeline of the probes
around it). Node and etcd logs are kept when the run fails or with ``--keep``.

    python bench/chaos.py --duration 30 --seed 7
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.engine import run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="minutes (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="fault schedule seed")
    parser.add_argument("--keep", action="store_true", help="keep the logs of a passing run")
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be positive")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    base = Path(tempfile.mkdtemp(prefix="vipmon-chaos-"))
    print(f"chaos seed: {seed}", flush=True)
    result = run_chaos(base, seed, args.duration * 60, log=lambda s: print(s, flush=True))
    print(result.report(), flush=True)
    if result.verdict.ok and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"logs kept in {base}")
    return 0 if result.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
