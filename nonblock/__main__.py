"""``python -m nonblock``: see nonblock write and log without waiting for the disk.

``python -m nonblock [--mib N] [--prio P]``
    writes N MiB (256) blocking, then with bgwrite while the caller computes,
    and compares what each cost the caller.
``python -m nonblock log [--records N]``
    logs N records (a million) through logging.FileHandler and through
    BackgroundFileHandler and compares the caller's time per record.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from nonblock import _demo_log, _demo_write


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nonblock", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=_positive, default=256, help="how much to write (default 256)")
    parser.add_argument("--prio", type=int, default=4, choices=range(1, 11), metavar="1..10",
                        help="ioPrio, 1 (fastest) to 10 (gentlest); default 4")
    commands = parser.add_subparsers(dest="command")
    log = commands.add_parser("log", help="a million log records, FileHandler against BackgroundFileHandler")
    log.add_argument("--records", type=_positive, default=1_000_000, help="how many (default 1,000,000)")
    args = parser.parse_args(argv)
    if args.command == "log":
        return _demo_log.run(args.records)
    return _demo_write.run(args.mib, args.prio)


def _positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
