"""The spool indexer as a process of its own (started by :class:`IngestSpool`).

``python -m kairo_guard.ingest.indexer_main --home DIR [--config FILE]`` opens a guard
on the state directory, indexes the spool until its standard input ends (its parent
closed it or died), then drains the spool and exits. It ignores SIGINT (a Ctrl-C meant
for the server) and ends cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from kairo_guard.detect.indexer import serve
from kairo_guard.guard import Guard


def main(argv: list[str] | None = None) -> int:
    """Run the indexer until standard input ends or SIGTERM."""
    parser = argparse.ArgumentParser(prog="kairo_guard.ingest.indexer_main")
    parser.add_argument("--home", required=True)
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def lifeline() -> None:
        sys.stdin.buffer.read()  # returns at end of file: the parent is gone
        stop.set()

    threading.Thread(target=lifeline, daemon=True).start()
    with Guard(home=args.home, config_file=args.config) as guard:
        serve(guard.indexer, stop.is_set)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
