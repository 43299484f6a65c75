"""A flood of probes must not delay lease renewals.

The election runs on its own thread and event loop. If renewals queued behind
probes, the master's deadline would pass and it would answer 503 mid-flood;
so every answer during the flood must be 200, and the master's role must not
have changed once (its last transition is still the acquisition).
"""

import http.client
import threading
import time
from collections import Counter
from pathlib import Path

from tests.support.nodes import solo_master

THREADS = 8
PER_THREAD = 4000
MAX_SECONDS = 12.0


def flood(port: int, counts: Counter[int], lock: threading.Lock, stop_at: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    local: Counter[int] = Counter()
    try:
        for _ in range(PER_THREAD):
            if time.monotonic() > stop_at:
                break
            try:
                conn.request("GET", "/monitor")
                resp = conn.getresponse()
                resp.read()
                local[resp.status] += 1
            except (OSError, http.client.HTTPException):
                local[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    finally:
        conn.close()
        with lock:
            counts.update(local)


def test_flood_does_not_starve_renewals(tmp_path: Path):
    with solo_master(tmp_path) as node:
        before = node.role()
        counts: Counter[int] = Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + MAX_SECONDS
        threads = [
            threading.Thread(target=flood, args=(node.port, counts, lock, stop_at))
            for _ in range(THREADS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(MAX_SECONDS + 10)
        after = node.role()
    total = sum(counts.values())
    assert total >= 1000, counts  # the flood really happened
    assert counts[200] == total, f"answers other than 200 during the flood: {counts}"
    assert after["term"] == before["term"]
    assert after["last_transition"] == before["last_transition"]
    assert after["role"] == "MASTER"
