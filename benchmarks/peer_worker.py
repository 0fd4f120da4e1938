"""Run benchmark workloads against a peer library, in a process of its own.

compare.py starts this script as

    python -I benchmarks/peer_worker.py KIND PEER_DIR

(``-I``: no PYTHONPATH, no user site, no script directory on sys.path), where
KIND names the peer and PEER_DIR is the folder ``pip install --target`` put it in:

* ``python-nonblock``: its package is also named ``nonblock``, so it cannot
  share a process with the repository's;
* ``mhddq``: it runs its queue in module-level state that can be shut down only
  once per process and never restarted, and its non-daemon threads keep a
  process alive until it is shut down; so it gets a process whose life is the
  whole benchmark run, and is shut down once, when that ends.

KIND ``nonblock`` is no peer: it is this checkout's nonblock (PEER_DIR is the
repository), for a workload that needs a process of its own (scenario m
measures the process's peak memory, so each of its runs gets a new worker).

The worker talks JSON lines: it first answers with where the peer module came
from, then, for each request ``{"call": NAME, "args": {...}}`` on stdin, runs
``workloads.NAME(peer_module, **args)`` and writes ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": TRACEBACK}``.  When stdin closes it shuts the peer
down if the peer needs that, and exits.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from types import ModuleType
from typing import Any, Callable, Dict, NamedTuple, Optional, TextIO, Tuple

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


def _without_repository() -> None:
    """Keep the repository's ``nonblock`` out of reach."""
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != REPO_ROOT]


def _check_origin(module: ModuleType, folder: str, what: str) -> ModuleType:
    where = os.path.abspath(module.__file__ or "")
    if not where.startswith(os.path.abspath(folder) + os.sep):
        raise ImportError(f"expected {what} under {folder}, imported {where}")
    return module


def import_python_nonblock(peer_dir: str) -> ModuleType:
    """Import python-nonblock from *peer_dir*, making sure the repository's nonblock is not used."""
    _without_repository()
    sys.path.insert(0, peer_dir)
    import nonblock

    return _check_origin(nonblock, peer_dir, "python-nonblock")


def import_repository_nonblock(repo_dir: str) -> ModuleType:
    """Import this checkout's nonblock from *repo_dir*, whatever else is installed."""
    sys.path.insert(0, repo_dir)
    import nonblock

    return _check_origin(nonblock, repo_dir, "the repository's nonblock")


def import_mhddq(peer_dir: str) -> ModuleType:
    """Import mhddq 0.3.0's working module from *peer_dir*.

    Its package cannot be imported: ``mhddq/__init__.py`` does ``from .mhddq
    import ...`` and that inner module ``mhddq/mhddq.py`` starts with ``import
    _impl``, an absolute import of its sibling ``mhddq/_impl.py`` that only
    resolves when the inner folder itself is on sys.path.  So ``import mhddq``
    with PEER_DIR on sys.path fails (ModuleNotFoundError: No module named
    '_impl'; checked on CPython 3.11.7).  With the inner folder
    PEER_DIR/mhddq first on sys.path instead, ``import mhddq`` finds the inner
    module mhddq.py (a plain module, not the package), its ``import _impl``
    finds _impl.py, and mhddq.py has the whole public API (file_exists,
    create_empty_oplist, enqueue_oplist, shutdown, is_shutdown, ...).
    """
    _without_repository()
    inner = os.path.join(peer_dir, "mhddq")
    sys.path.insert(0, inner)
    import mhddq

    _check_origin(mhddq, inner, "mhddq's inner module")
    if os.path.basename(mhddq.__file__ or "") != "mhddq.py":
        raise ImportError(f"expected the module file mhddq.py, imported {mhddq.__file__}")
    return mhddq


def shut_down_mhddq(mhddq: ModuleType) -> None:
    """Drain and stop mhddq's threads (once: it cannot restart), so the process can exit."""
    mhddq.shutdown()


class Peer(NamedTuple):
    """How to import a peer, the workloads it answers, and what to do before exiting."""

    load: Callable[[str], ModuleType]
    workloads: Tuple[str, ...]
    finish: Optional[Callable[[ModuleType], None]] = None


# The workloads of scenarios a-g and n-p: python-nonblock's API, which nonblock keeps.
BGWRITE_WORKLOADS = (
    "warm_up", "bgwrite_return_time", "big_write_time", "many_small_writes",
    "chain_per_link", "latency_during_drain", "throttled_rate", "interactivity",
    "nonblock_read_drain", "bgread_drain", "concurrent_bgreads",
)

PEERS: Dict[str, Peer] = {
    "python-nonblock": Peer(import_python_nonblock, BGWRITE_WORKLOADS),
    "mhddq": Peer(import_mhddq, (
        "ops_throughput", "round_trips", "enqueue_while_callback_sleeps",
    ), shut_down_mhddq),
    "nonblock": Peer(import_repository_nonblock, ("fifo_peak_memory",)),
    # compare.py --against: nonblock at another checkout, in python-nonblock's place.
    "nonblock-revision": Peer(import_repository_nonblock, BGWRITE_WORKLOADS),
}


def import_workloads() -> ModuleType:
    """Import the shared workloads module that sits beside this script."""
    sys.path.append(BENCH_DIR)
    import workloads

    return workloads


def callable_workloads(
    workloads: ModuleType, lib: ModuleType, names: Tuple[str, ...]
) -> Dict[str, Callable[..., Any]]:
    """The requests the worker answers: each lib-taking workload in *names*, plus housekeeping."""
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
    kind, peer_dir = sys.argv[1], os.path.abspath(sys.argv[2])
    peer = PEERS[kind]
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers may reach compare.py's pipe
    lib = peer.load(peer_dir)
    workloads = import_workloads()
    answer(out, {"ok": True, "result": {
        "module_file": lib.__file__, "version": getattr(lib, "__version__", "?"),
    }})
    try:
        serve(sys.stdin, out, callable_workloads(workloads, lib, peer.workloads))
    finally:
        if peer.finish is not None:
            peer.finish(lib)


if __name__ == "__main__":
    main()
