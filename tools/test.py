#!/usr/bin/env python
"""Run the test suite as N pytest processes at once, each a share of the test files.

    python tools/test.py                 # the default set, 2 processes (CI's command, via .ci/run)
    python tools/test.py -m slow         # any pytest arguments pass through
    python tools/test.py --jobs 1        # one plain pytest process

The suite keeps a 2-core machine about 1.1 cores busy, so two processes side
by side finish it sooner (``tests/shards.py`` says how the files are split).
Each process's output is relayed line by line with its share as a prefix;
the exit status is the first failing share's (0 when all pass).
``python -m pytest`` still runs everything in one process.
"""

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NO_TESTS_COLLECTED = 5  # pytest's exit status when a share holds no selected test


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="pytest processes at once (default: 2, or 1 on a 1-core machine)")
    args, pytest_args = parser.parse_known_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if args.jobs == 1:
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=REPO)

    lock = threading.Lock()

    def relay(index, stream):
        for line in stream:
            with lock:
                sys.stdout.write(f"[{index}/{args.jobs}] {line}")
                sys.stdout.flush()

    # The shares share one checkout: pytest's cache (last failures) would be written by both at once.
    processes, relays = [], []
    for index in range(args.jobs):
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--shard={index}/{args.jobs}",
             *pytest_args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        thread = threading.Thread(target=relay, args=(index, process.stdout), daemon=True)
        thread.start()
        processes.append(process)
        relays.append(thread)
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        return 130
    for thread in relays:
        thread.join()
    codes = [0 if code == NO_TESTS_COLLECTED else code for code in codes]
    failed = [f"{i}/{args.jobs} (exit {code})" for i, code in enumerate(codes) if code]
    print(f"tools/test.py: {args.jobs} shares, " + (f"failed: {', '.join(failed)}" if failed else "all passed"))
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
