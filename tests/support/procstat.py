"""What Linux's /proc says of a live process, for the benchmarks' memory figures."""

from __future__ import annotations


def vmhwm_mb(pid: int) -> float:
    """A live process's peak resident set so far, in MiB (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
