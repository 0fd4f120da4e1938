"""Security (private files, pickle refused from a store others can write) and failures of the disk."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import subprocess
from typing import Any, Iterator, List

import pytest

from nonblock import DurableDict, DurableQueue, HddQueue, StoreError


@pytest.fixture
def folder(tmp_path: Any) -> str:
    return os.path.join(os.fspath(tmp_path), "store")


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_store_is_private_whatever_the_umask(folder: str, queue: HddQueue) -> None:
    old = os.umask(0)
    try:
        q = DurableQueue(folder, queue=queue)
        q.put("x")
        q.sync()
    finally:
        os.umask(old)
    assert _mode(folder) == 0o700 and _mode(os.path.join(folder, "waiters")) == 0o700
    for name in ["queue.sqlite3", "queue.sqlite3-wal", "queue.sqlite3-shm", "queue.lock"]:
        assert _mode(os.path.join(folder, name)) == 0o600, name
    q.close()


def test_pickle_store_others_can_write_is_refused(folder: str, queue: HddQueue) -> None:
    DurableDict(folder, queue=queue).close()
    os.chmod(folder, 0o777)
    with pytest.raises(PermissionError, match="another user"):
        DurableDict(folder, queue=queue)
    DurableDict(folder, queue=queue, trusted=True).close()
    DurableDict(folder, serializer="json", queue=queue).close()  # json never runs code
    os.chmod(folder, 0o700)
    os.chmod(os.path.join(folder, "dict.sqlite3"), 0o666)
    with pytest.raises(PermissionError, match="dict.sqlite3"):
        DurableDict(folder, queue=queue)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_pickle_store_owned_by_another_user_is_refused(folder: str, queue: HddQueue) -> None:
    DurableQueue(folder, queue=queue).close()
    os.chown(os.path.join(folder, "queue.sqlite3"), 4321, 4321)
    with pytest.raises(PermissionError, match="owner uid 4321"):
        DurableQueue(folder, queue=queue)


def test_custom_serializer_and_its_errors(folder: str, queue: HddQueue) -> None:
    class Upper:
        def dumps(self, value: Any) -> str:
            return json.dumps(value)

        def loads(self, data: bytes) -> Any:
            return json.loads(data)

    q = DurableQueue(folder, serializer=Upper(), queue=queue, trusted=True)
    q.put({"a": 1})
    assert q.get() == {"a": 1}
    with pytest.raises(TypeError):
        q.put(object())
    with pytest.raises(TypeError, match="serializer"):
        DurableQueue(folder, serializer=42, queue=queue)  # type: ignore[arg-type]
    j = DurableDict(folder + "j", serializer="json", queue=queue)
    with pytest.raises(TypeError, match="JSON"):
        j["x"] = {1, 2}
    with pytest.raises(TypeError, match="JSON"):
        j["nan"] = float("nan")
    assert len(j) == 0
    q.close(), j.close()


def test_bad_path_arguments(tmp_path: Any, queue: HddQueue) -> None:
    with pytest.raises(TypeError, match="path"):
        DurableDict(42, queue=queue)
    with pytest.raises(TypeError, match="maxsize"):
        DurableQueue(os.path.join(os.fspath(tmp_path), "q"), maxsize="3", queue=queue)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="queue"):
        DurableDict(os.path.join(os.fspath(tmp_path), "d"), queue="default")  # type: ignore[arg-type]


@pytest.fixture
def tiny_disk(tmp_path: Any) -> Iterator[str]:
    """A real 1 MiB filesystem (tmpfs) that fills up; needs root and mount."""
    mount_point = os.path.join(os.fspath(tmp_path), "tiny")
    os.makedirs(mount_point)
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount_point]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", mount_point], check=True)


def test_a_full_disk_fails_the_batch_and_sync_and_keeps_the_store_whole(tiny_disk: str,
                                                                        queue: HddQueue) -> None:
    folder = os.path.join(tiny_disk, "q")
    q = DurableQueue(folder, queue=queue)
    committed: List[int] = []
    failure = None
    for batch in range(200):
        items = [(batch, i, os.urandom(512)) for i in range(20)]
        task = q.put_many(items)
        error = task.exception(60)
        if error is not None:
            failure = error
            break
        committed.extend(range(batch * 20, batch * 20 + 20))
    assert isinstance(failure, StoreError) and "full" in str(failure)
    with pytest.raises(StoreError, match="full"):
        q.sync()
    q.close()
    stored = DurableQueue(folder, queue=queue)  # opens on the full disk
    assert stored.qsize() == len(committed)
    stored.close()
    connection = sqlite3.connect(os.path.join(folder, "queue.sqlite3"))
    got = [pickle.loads(v) for (v,) in connection.execute("SELECT value FROM items ORDER BY id")]
    connection.close()
    assert [b * 20 + i for b, i, _ in got] == committed  # every committed batch, no half batch
