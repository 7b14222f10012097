"""The spool indexer as a process of its own (started by :class:`IngestSpool`).

``python -m kairo_guard.ingest.indexer_main --home DIR [--config FILE]`` reads the key
ring of the service that started it from its standard input, opens a guard on the
state directory, indexes the spool until its standard input ends (its parent
closed it or died), then drains the spool and exits. It ignores SIGINT (a Ctrl-C meant
for the server); SIGTERM (its parent's shutdown bound passed, or an operator's) ends it
after the pass it is in, what is left staying in the spool for the next indexer or
check (:mod:`kairo_guard.detect.index_service`). It runs at the lowest CPU priority and in the
idle I/O class: requests are answered first, the index catches up in the time they
leave.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import signal
import sys
import threading

from kairo_guard.core.keys import KeyRing
from kairo_guard.detect.index_service import serve
from kairo_guard.detect.pacing import IndexPacing
from kairo_guard.guard import Guard
from kairo_guard.ingest.spool_wire import read_ring

INDEXER_NICE = 19
"""The indexer process's nice value: it runs on the CPU time ingestion leaves."""


AUTOGROUP = "/proc/self/autogroup"
"""Where Linux takes the nice value of this process's scheduler autogroup."""

_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}
"""The ioprio_set system call's number (Linux; Python's os module has no wrapper)."""
_IOPRIO_IDLE = 3 << 13  # IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0)


def _lowest_priority() -> None:
    # SCHED_IDLE (Linux): runs only on a CPU nothing else wants; else the highest nice
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(INDEXER_NICE)
    # leading its own session (a supervisor ran it under setsid; the service does not)
    # it is in a scheduler autogroup of its own, weighed against the service's as an
    # equal whatever its threads' policy: lower the group's weight too
    with contextlib.suppress(OSError):
        if os.getsid(0) == os.getpid():
            with open(AUTOGROUP, "w") as f:  # only where autogroups exist
                f.write(str(INDEXER_NICE))
    # and the idle I/O class: its reads of the spool wait for the writer's syncs
    number = _IOPRIO_SET.get(platform.machine())
    if sys.platform == "linux" and number is not None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).syscall(number, 1, 0, _IOPRIO_IDLE)  # this process


def main(argv: list[str] | None = None) -> int:
    """Run the indexer until standard input ends or SIGTERM."""
    parser = argparse.ArgumentParser(prog="kairo_guard.ingest.indexer_main")
    parser.add_argument("--home", required=True)
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    stop = threading.Event()
    abandon = threading.Event()
    # Ingestion comes first: the indexer takes the CPU the service leaves (its lag is
    # bounded by the spool's limit, and shared sinks wait for it)
    _lowest_priority()
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def terminate(*_: object) -> None:  # end after the pass in progress, leave the rest
        abandon.set()
        stop.set()

    signal.signal(signal.SIGTERM, terminate)

    stdin = sys.stdin.fileno()
    ring = KeyRing.from_json(read_ring(stdin))

    def lifeline() -> None:
        # the raw descriptor, not sys.stdin: a buffered read still blocked at exit
        # aborts the interpreter ("could not acquire lock for <stdin>")
        with contextlib.suppress(OSError):
            while os.read(stdin, 1 << 16):  # returns b"" at end of file: parent gone
                pass
        stop.set()

    threading.Thread(target=lifeline, daemon=True).start()
    with Guard(home=args.home, config_file=args.config, key=ring) as guard:
        pacing = IndexPacing(guard.spool_directory, guard.settings.limits.spool_max_bytes)
        guard.indexer.workers = len(os.sched_getaffinity(0))  # idle priority: spare cores only
        serve(guard.indexer, stop.is_set, pacing=pacing, abandon=abandon.is_set)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
