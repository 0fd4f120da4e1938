"""Four processes appending, reading and being SIGKILLed at random, in both modes.

Broadcast: every reader alive at the end got every message appended after it
joined, exactly once and in order (per writer, a gapless run ending at the
writer's last message; two readers agree on the order of what both got).
Work: no message reached two readers, each reader got each writer's messages
in order, and what was never read is at most what killed readers had in hand.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
import uuid
from typing import Dict, List, Tuple

import _syncq_procs as procs

from nonblock.syncq import SyncQueue

KILLS = 6


def run_fuzz(mode: str, tmp_path, seed: int) -> Tuple[Dict[str, List[Tuple[str, int]]], set, Dict[str, int]]:
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(seed)
    name = "t_" + uuid.uuid4().hex[:12]
    owner = SyncQueue(name, size=4096, mode=mode)  # keeps the queue alive; never reads
    stopped = ctx.Queue()
    workers: Dict[str, multiprocessing.Process] = {}
    killed = set()
    serial = 0

    def start_one() -> None:
        nonlocal serial
        me = f"w{serial}"
        serial += 1
        p = ctx.Process(target=procs.fuzz_worker,
                        args=(name, mode, me, str(tmp_path), stopped))
        p.start()
        workers[me] = p

    for _ in range(4):
        start_one()
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.1, 0.4))
        victim = rng.choice([me for me in workers if me not in killed])
        os.kill(workers[victim].pid, signal.SIGKILL)
        workers[victim].join(30)
        killed.add(victim)
        start_one()  # a late joiner takes its place
    time.sleep(0.3)
    (tmp_path / "stop").touch()
    alive = [me for me in workers if me not in killed]
    assert sorted(stopped.get(timeout=60) for _ in alive) == sorted(alive)
    (tmp_path / "drain").touch()
    for me in alive:
        workers[me].join(60)
        assert workers[me].exitcode == 0, me
        assert os.path.exists(tmp_path / f"{me}.done")
    owner.close()
    got: Dict[str, List[Tuple[str, int]]] = {}
    for me in workers:
        with open(tmp_path / f"{me}.got", "rb") as f:
            entries = [line.split(b":") for line in f.read().split(b"\n")[:-1]]
        assert all(len(e) == 3 and set(e[2]) <= {ord("p")} for e in entries), "a record came back torn"
        got[me] = [(e[0].decode(), int(e[1])) for e in entries]
    sent = {me: int((tmp_path / f"{me}.sent").read_text()) for me in alive}
    assert [e for e in os.listdir("/dev/shm") if e.startswith(name)] == []
    return got, killed, sent


def by_writer(messages: List[Tuple[str, int]]) -> Dict[str, List[int]]:
    runs: Dict[str, List[int]] = {}
    for writer, k in messages:
        runs.setdefault(writer, []).append(k)
    return runs


def test_fuzz_broadcast(tmp_path) -> None:
    got, killed, sent = run_fuzz("broadcast", tmp_path, seed=14)
    survivors = [me for me in got if me not in killed]
    assert len(survivors) == 4 and all(got[me] for me in survivors)
    for me in survivors:
        for writer, ks in by_writer(got[me]).items():
            assert ks == list(range(ks[0], ks[-1] + 1)), f"{me} got {writer}'s messages with a gap or twice"
            if writer in sent and writer != me:
                assert ks[-1] == sent[writer] - 1, f"{me} missed the end of {writer}'s messages"
    for a in survivors:  # every pair agrees on the order of what both got
        for b in survivors:
            common = set(got[a]) & set(got[b])
            assert [m for m in got[a] if m in common] == [m for m in got[b] if m in common]


def test_fuzz_work(tmp_path) -> None:
    got, killed, sent = run_fuzz("work", tmp_path, seed=41)
    everything = [m for messages in got.values() for m in messages]
    assert len(everything) == len(set(everything)), "a message reached two readers"
    for messages in got.values():
        for ks in by_writer(messages).values():
            assert ks == sorted(ks)
    received = set(everything)
    missing = 0
    for writer, count in sent.items():
        missing += sum((writer, k) not in received for k in range(count))
    for writer in killed:
        ks = sorted(k for w, k in received if w == writer)
        if ks:
            missing += sum((writer, k) not in received for k in range(ks[-1] + 1))
    # a killed reader may die holding what it took but had not logged (at most 8 at a time)
    assert missing <= 8 * len(killed)
    assert len(everything) > 1000
