"""The pysyncq guide's example, with only the import changed; run as a script: _syncq_guide.py METHOD NAME.

Prints OK when every child read the start signal, every other child's sentence
and the stop signal, in that order, and the parent read every sentence.
"""

import multiprocessing as mp
import sys

from nonblock.pysyncq import PySyncQ

CHILDREN = 3


def child_target_function(q, name, opened):
    q.open(name)
    opened.put(name)
    (sender, msgtype, msg) = q.pop(block=True, timer=None)
    assert (sender, msgtype, msg) == ("parent", "user", "start"), (sender, msgtype, msg)
    try:
        q.append("sentence", f"{name} ate the pear.", block=True, timer=3.14)
    except MemoryError:
        print(f"{name} aborts write due to full queue.", flush=True)
        raise
    heard = []
    for m in q(block=True, timer=None):
        if m == ("parent", "user", "stop"):
            break
        heard.append(m)
    want = sorted((f"child{i}", "sentence", f"child{i} ate the pear.") for i in range(CHILDREN)
                  if f"child{i}" != name)
    assert sorted(heard) == want, (name, heard)
    q.close()


if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    q = PySyncQ(sys.argv[2])
    opened = mp.Queue()
    P = [mp.Process(target=child_target_function, args=(q, f"child{i}", opened)) for i in range(CHILDREN)]
    for p in P:
        p.start()
    q.open("parent")
    for _ in P:
        opened.get(timeout=60)  # instead of the guide's time.sleep(0.1): no race
    q.append("user", "start")
    sentences = []
    while len(sentences) < CHILDREN:
        m = q.pop(block=True, timer=None, decode=len(sentences) % 2 == 0)
        if isinstance(m[0], bytes):
            m = tuple(part.decode() for part in m)
        sentences.append(m)
    assert all(m[1] == "sentence" for m in sentences), sentences
    assert q.pop() is None
    for m in q:
        raise AssertionError(f"unexpected {m}")
    q.append("user", "stop")
    for p in P:
        p.join(60)
    assert [p.exitcode for p in P] == [0] * CHILDREN, [p.exitcode for p in P]
    q.close()
    print("OK")
