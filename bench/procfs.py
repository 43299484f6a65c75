"""What /proc tells about a process and the machine: CPU time, RSS, children, steal.

Linux only. Every reader raises OSError if the process is gone.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def runs_python_module(pid: int, *args: str) -> bool:
    """True when ``pid`` is a Python interpreter whose argv holds every one of ``args``."""
    try:
        exe = Path(os.readlink(f"/proc/{pid}/exe")).name
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return exe.startswith("python") and all(a.encode() in argv for a in args)


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (a scan of /proc/<n>/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (fields 14 and 15 of /proc/<pid>/stat), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3, the state
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(steal, total) CPU time of the whole machine so far, from /proc/stat, in ticks."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return steal, user + nice + system + idle + iowait + irq + softirq + steal


def steal_percent(since: tuple[int, int]) -> float:
    """% of the machine's CPU time the hypervisor took from us since ``since``."""
    steal, total = machine_jiffies()
    return 100 * (steal - since[0]) / max(1, total - since[1])


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` in MB (1 MB = 1024 kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for PID {pid}")
