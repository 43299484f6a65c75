"""wrk, the HTTP load generator (Debian package ``wrk``): one run, and its figures read."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

SLACK_S = 30.0
_MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, 99th-percentile latency, non-2xx and socket errors."""

    requests_per_s: float
    p99_ms: float
    non_2xx: int
    socket_errors: str


def parse_wrk(output: str) -> WrkResult:
    """Read ``wrk --latency`` output. Raises ValueError if a figure is missing."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    if rps is None or p99 is None:
        raise ValueError(f"cannot read Requests/sec and the 99% line from wrk:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors:\s+(.+)", output)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _MS_PER_UNIT[p99.group(2)],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sockets.group(1).strip() if sockets else "",
    )


def run_wrk(url: str, connections: int, duration: int) -> WrkResult:
    """One ``wrk -t1`` run against ``url``; raises RuntimeError if wrk fails."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + SLACK_S)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)
