"""Run benchmark workloads against python-nonblock, in a process of its own.

python-nonblock's package is also named ``nonblock``, so it cannot share a
process with the repository's.  compare.py starts this script as

    python -I benchmarks/peer_worker.py PEER_DIR

(``-I``: no PYTHONPATH, no user site, no script directory on sys.path) and
talks to it in JSON lines: the worker first answers with where its
``nonblock`` came from, then, for each request ``{"call": NAME, "args": {...}}``
on stdin, runs ``workloads.NAME(python_nonblock, **args)`` and writes
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TRACEBACK}``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from types import ModuleType
from typing import Any, Callable, Dict, TextIO

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


def import_peer(peer_dir: str) -> ModuleType:
    """Import python-nonblock from *peer_dir*, making sure the repository's nonblock is not used."""
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != REPO_ROOT]
    sys.path.insert(0, peer_dir)
    import nonblock

    where = os.path.abspath(nonblock.__file__ or "")
    if not where.startswith(os.path.abspath(peer_dir) + os.sep):
        raise ImportError(f"expected python-nonblock under {peer_dir}, imported {where}")
    return nonblock


def import_workloads() -> ModuleType:
    """Import the shared workloads module that sits beside this script."""
    sys.path.append(BENCH_DIR)
    import workloads

    return workloads


def callable_workloads(workloads: ModuleType, lib: ModuleType) -> Dict[str, Callable[..., Any]]:
    """The requests the worker answers: each lib-taking workload, plus housekeeping."""
    names = (
        "warm_up", "bgwrite_return_time", "big_write_time", "many_small_writes",
        "chain_per_link", "latency_during_drain", "throttled_rate", "interactivity",
    )
    table: Dict[str, Callable[..., Any]] = {
        name: (lambda function: lambda **args: function(lib, **args))(getattr(workloads, name))
        for name in names
    }
    table["release"] = lambda: workloads.release()
    return table


def answer(out: TextIO, message: Dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(requests: TextIO, out: TextIO, table: Dict[str, Callable[..., Any]]) -> None:
    """Answer requests until stdin closes."""
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            result = table[request["call"]](**request.get("args", {}))
            answer(out, {"ok": True, "result": result})
        except Exception:
            answer(out, {"ok": False, "error": traceback.format_exc()})


def main() -> None:
    peer_dir = os.path.abspath(sys.argv[1])
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers may reach compare.py's pipe
    lib = import_peer(peer_dir)
    workloads = import_workloads()
    answer(out, {"ok": True, "result": {
        "nonblock_file": lib.__file__, "version": getattr(lib, "__version__", "?"),
    }})
    serve(sys.stdin, out, callable_workloads(workloads, lib))


if __name__ == "__main__":
    main()
