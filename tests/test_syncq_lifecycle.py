"""Joining, dying and leaving: no hang, no leak, no noise at exit."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import uuid

import _syncq_procs as procs
import pytest

from nonblock.pysyncq import PySyncQ
from nonblock.syncq import SyncQueue
from nonblock.syncq.procs import is_alive, start_time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_name() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def leftovers(name: str) -> list:
    return [e for e in os.listdir("/dev/shm") if e.startswith(name)]


NO_CLOSE = """
import multiprocessing as mp, sys
from nonblock.pysyncq import PySyncQ
from nonblock.syncq import SyncQueue

def child(q, name):
    q.open("child")
    q.append("t", "from the child")
    other = SyncQueue(name, create=False)
    other.put(b"x")
    # no close(), anywhere

if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    q = PySyncQ(sys.argv[2] + "p")
    q.open("parent")
    s = SyncQueue(sys.argv[2] + "s", reader=True)
    p = mp.Process(target=child, args=(q, sys.argv[2] + "s"))
    p.start()
    p.join()
    assert p.exitcode == 0
    assert q.pop(block=True, timer=30) == ("child", "t", "from the child")
    assert s.get(timeout=30) == b"x"
    print("done")
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_exit_without_close_under_w_error_prints_nothing_and_leaks_nothing(method: str, tmp_path) -> None:
    name = fresh_name()
    script = tmp_path / "no_close.py"
    script.write_text(NO_CLOSE)
    run = subprocess.run([sys.executable, "-W", "error", str(script), method, name], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=100)
    assert (run.returncode, run.stdout, run.stderr) == (0, "done\n", "")
    assert leftovers(name) == []


def test_a_process_killed_holding_the_lock_never_makes_the_others_hang() -> None:
    name = fresh_name()
    with SyncQueue(name, size=4096, reader=True) as q:
        child = multiprocessing.get_context("fork").Process(target=procs.hold_the_lock_and_die, args=(name,))
        child.start()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL
        q.put(b"after the death", timeout=5)
        assert q.get(timeout=5) == b"after the death"


def test_a_name_whose_participants_all_died_is_taken_over() -> None:
    name = fresh_name()
    code = (f"import os, signal\nfrom nonblock.syncq import SyncQueue\n"
            f"q = SyncQueue({name!r}, size=4096)\nq.put(b'stale')\nos.kill(os.getpid(), signal.SIGKILL)\n")
    run = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert run.returncode == -signal.SIGKILL
    assert leftovers(name)  # a SIGKILL leaves the segment behind...
    with SyncQueue(name, size=4096, reader=True, start="earliest") as q:  # ...and the next creator takes it
        with pytest.raises(Exception, match="no message"):
            q.get(timeout=0)
    assert leftovers(name) == []


def test_close_is_idempotent_and_the_last_one_out_unlinks() -> None:
    name = fresh_name()
    a = PySyncQ(name, size=4096)
    b = PySyncQ(name, create=False, size=4096)
    a.close()
    a.close()
    assert leftovers(name)  # b is still in
    b.close()
    assert leftovers(name) == []


def test_a_pid_with_another_start_time_is_not_the_same_process() -> None:
    me = os.getpid()
    assert is_alive(me, start_time(me))
    assert not is_alive(me, start_time(me) + 1)  # the pid was reused by a newer process
    child = multiprocessing.get_context("fork").Process(target=os.getpid)
    child.start()
    child.join(30)
    assert not is_alive(child.pid, 0)
