"""Peak-memory readings shared by the benchmarks (Linux /proc; NaN elsewhere).

ru_maxrss survives fork+exec on Linux, so a child process would report its parent's
peak; VmHWM belongs to the process itself and can be reset (clear_refs, Linux >= 4.0).
"""

from __future__ import annotations

from pathlib import Path


def status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return status_mib("VmHWM")


def reset_peak_rss() -> float:
    """Reset the peak to the current RSS and return the current RSS in MiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return status_mib("VmRSS")
