"""Wall time of the named steps of one run, for a tool's ``--profile``.

Timing a step is two ``perf_counter`` calls, so tools time their steps
always and print the table only when asked.
"""

import os
import sys
import time
from contextlib import contextmanager


def process_age():
    """Seconds since this process started (Linux, 10 ms steps); None elsewhere.

    It covers what a timer started by the program cannot: the interpreter's
    own start-up before the first line of the script runs.
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            # Field 22 (starttime, in clock ticks since boot); the command name
            # (field 2) may hold spaces, so count from its closing parenthesis.
            fields = stat.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Phases:
    """Named wall times, in the order the steps first ran.

    ``with phases("parse JSON"): ...`` adds the block's wall time to that
    name (a step that runs twice adds up); ``add`` merges times measured
    elsewhere (a worker process's).
    """

    def __init__(self):
        self.seconds = {}

    @contextmanager
    def __call__(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name, seconds):
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def merge(self, other, prefix=""):
        for name, seconds in other.seconds.items():
            self.add(prefix + name, seconds)

    def format(self, total=None):
        """One line per step (``  12.34 s  name``), then the total when given."""
        width = max((len(name) for name in self.seconds), default=0)
        lines = [f"{name:<{width}}  {seconds:7.3f} s" for name, seconds in self.seconds.items()]
        if total is not None:
            lines.append(f"{'total (process wall)':<{width}}  {total:7.3f} s")
        return "\n".join(lines)

    def print(self, title, total=None, file=None):
        print(f"{title}\n{self.format(total)}", file=file or sys.stderr, flush=True)
