"""DurableDict / IODict: a real MutableMapping on a sqlite file, checked against a plain dict."""

from __future__ import annotations

import os
import threading
from collections.abc import MutableMapping
from typing import Any, Dict, Iterator, List

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nonblock import DurableDict, HddQueue, IODict
from nonblock.durable import StoreError


@pytest.fixture
def folder(tmp_path: Any) -> str:
    return os.path.join(os.fspath(tmp_path), "store")


@pytest.fixture
def store(folder: str, queue: HddQueue) -> Iterator[DurableDict]:
    d = DurableDict(folder, queue=queue)
    yield d
    d.close()


def test_is_a_mutable_mapping_equal_to_a_dict(store: DurableDict) -> None:
    assert isinstance(store, MutableMapping)
    model: Dict[Any, Any] = {}
    for i in range(50):
        store[i] = model[i] = {"n": i}
    del store[7], model[7]
    store[3] = model[3] = "changed"  # keeps its place
    store.update({"a": 1, b"b": 2}, c=3)
    model.update({"a": 1, b"b": 2}, c=3)
    assert store == model and model == store.copy()
    assert list(store) == list(model) and list(store.keys()) == list(model.keys())
    assert list(store.items()) == list(model.items()) and list(store.values()) == list(model.values())
    assert len(store) == len(model) and ("a" in store) and (7 not in store) and ([1] not in store)


def test_reads_see_own_writes_before_the_commit(folder: str, queue: HddQueue) -> None:
    gate = threading.Event()
    # Hold the queue's disk: the commit job cannot run until the gate opens.
    from nonblock.background import ThreadManager
    blocker = ThreadManager(queue).do_async(gate.wait, fn_args=[60])
    other = ThreadManager(queue).do_async(gate.wait, fn_args=[60])
    d = DurableDict(folder, queue=queue)
    try:
        task = d.set_async("k", [1, 2])
        d["gone"] = 1
        del d["gone"]
        assert not task.done()
        assert d["k"] == [1, 2] and "gone" not in d and d.get("gone", "no") == "no"
        fresh = DurableDict(folder, queue=queue)  # a second opener sees only committed data
        assert "k" not in fresh
    finally:
        gate.set()
    blocker.result(60), other.result(60)
    task.result(60)
    assert fresh["k"] == [1, 2]
    fresh.close()
    d.close()


def test_insertion_order_and_items_survive_reopen(folder: str, queue: HddQueue) -> None:
    with DurableDict(folder, queue=queue) as d:
        for key in ["z", 3, (1, "t"), b"raw", None, 2.5]:
            d[key] = repr(key)
        del d[3]
        d[3] = "back at the end"
    with DurableDict(folder, queue=queue) as again:
        assert list(again.items()) == [("z", "'z'"), ((1, "t"), "(1, 't')"), (b"raw", "b'raw'"),
                                       (None, "None"), (2.5, "2.5"), (3, "back at the end")]


def test_equal_keys_are_one_key_as_in_a_dict(store: DurableDict) -> None:
    store[1] = "int"
    store[1.0] = "float"
    store[True] = "bool"
    assert len(store) == 1 and store[1] == "bool"


def test_with_block_closes_without_deleting(folder: str, queue: HddQueue) -> None:
    with IODict(folder, queue=queue) as d:
        d["kept"] = 1
    with pytest.raises(ValueError, match="closed"):
        d["x"] = 2
    assert IODict(folder, queue=queue)["kept"] == 1


def test_documented_differences_from_iodict(store: DurableDict) -> None:
    store["a"], store["b"] = 1, 2
    assert store.setdefault("a", 99) == 1 and store["a"] == 1  # iodict overwrote
    assert store.setdefault("c") is None and store["c"] is None
    assert store.pop("missing", None) is None  # iodict raised KeyError
    with pytest.raises(KeyError):
        store.pop("missing")
    assert store.popitem() == ("a", 1)  # iodict returned the value alone
    snapshot = store.copy()
    assert type(snapshot) is dict and snapshot == {"b": 2, "c": None}  # iodict returned itself
    store.fromkeys(["x", "y"], 0)
    assert store["x"] == 0 and store["y"] == 0
    store.clear()
    assert len(store) == 0 and store == {}
    with pytest.raises(KeyError, match="empty"):
        store.popitem()


def test_a_key_is_never_a_file_name(store: DurableDict, folder: str) -> None:
    store["../../escape"] = 1
    store[("tuple", 1)] = 2
    assert sorted(os.listdir(folder)) == ["dict.lock", "dict.sqlite3", "dict.sqlite3-shm", "dict.sqlite3-wal"]


@pytest.mark.parametrize("durability", ["group", "commit", "os"])
def test_durability_modes_commit_and_read_back(folder: str, queue: HddQueue, durability: str) -> None:
    d = DurableDict(folder, durability=durability, queue=queue)
    for i in range(20):
        d[i] = i * i
        assert d[i] == i * i
    if durability == "commit":  # each assignment returned after its commit: another opener sees it
        assert DurableDict(folder, queue=queue)[19] == 361
    d.sync()
    assert dict(DurableDict(folder, queue=queue).items()) == {i: i * i for i in range(20)}


def test_threads_share_one_store(store: DurableDict) -> None:
    def writer(n: int) -> None:
        for i in range(200):
            store[(n, i)] = i

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 800 and store[(3, 199)] == 199


def test_serializers(folder: str, queue: HddQueue) -> None:
    j = DurableDict(folder + "j", serializer="json", queue=queue)
    j["a"] = {"x": [1, 2]}
    assert j["a"] == {"x": [1, 2]}
    r = DurableDict(folder + "r", serializer="raw", queue=queue)
    r["a"] = b"\x00\xff"
    assert r["a"] == b"\x00\xff"
    with pytest.raises(TypeError, match="bytes-like"):
        r["b"] = "text"
    assert "b" not in r


def test_bad_values_are_type_errors_and_store_nothing(store: DurableDict) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        store["lambda"] = lambda: None
    with pytest.raises(TypeError, match="cannot be pickled"):
        store.update({"ok": 1, "bad": threading.Lock()})
    with pytest.raises(TypeError):
        store[["unhashable"]] = 1
    assert len(store) == 0


def test_not_a_store(folder: str, tmp_path: Any, queue: HddQueue) -> None:
    plain = os.path.join(os.fspath(tmp_path), "plain")
    with open(plain, "w") as f:
        f.write("x")
    with pytest.raises(NotADirectoryError, match="plain"):
        DurableDict(plain, queue=queue)
    os.makedirs(folder)
    with open(os.path.join(folder, "dict.sqlite3"), "wb") as f:
        f.write(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="dict.sqlite3"):
        DurableDict(folder, queue=queue)


def test_other_sqlite_database_is_refused(folder: str, queue: HddQueue) -> None:
    import sqlite3
    os.makedirs(folder)
    connection = sqlite3.connect(os.path.join(folder, "dict.sqlite3"))
    connection.execute("CREATE TABLE other (x)")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="something else"):
        DurableDict(folder, queue=queue)


def test_corrupt_database_is_a_clear_error(folder: str, queue: HddQueue) -> None:
    d = DurableDict(folder, queue=queue)
    for i in range(2000):
        d[i] = "x" * 100
    d.close()
    path = os.path.join(folder, "dict.sqlite3")
    with open(path, "r+b") as f:  # scribble over the schema page
        f.write(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(StoreError, match="dict.sqlite3"):
        DurableDict(folder, queue=queue)


class DictModel(RuleBasedStateMachine):
    """IODict against a dict, with reopen steps (the store closed and opened again)."""

    keys = st.one_of(st.text(max_size=4), st.integers(-5, 5), st.binary(max_size=3),
                     st.tuples(st.integers(0, 3), st.text(max_size=2)))
    values = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))

    def __init__(self) -> None:
        super().__init__()
        import tempfile
        self.folder = tempfile.mkdtemp(prefix="durable-model-")
        self.durability = "group"
        self.store = DurableDict(self.folder)
        self.model: Dict[Any, Any] = {}

    @rule(key=keys, value=values)
    def set(self, key: Any, value: Any) -> None:
        self.store[key] = value
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key: Any) -> None:
        if key in self.model:
            del self.store[key]
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                del self.store[key]

    @rule(key=keys, default=values)
    def pop(self, key: Any, default: Any) -> None:
        assert self.store.pop(key, default) == self.model.pop(key, default)

    @rule(key=keys, default=values)
    def setdefault(self, key: Any, default: Any) -> None:
        assert self.store.setdefault(key, default) == self.model.setdefault(key, default)

    @precondition(lambda self: self.model)
    @rule()
    def popitem(self) -> None:
        oldest = next(iter(self.model))
        assert self.store.popitem() == (oldest, self.model.pop(oldest))

    @rule(key=keys)
    def get(self, key: Any) -> None:
        assert self.store.get(key, "absent") == self.model.get(key, "absent")

    @rule()
    def clear(self) -> None:
        self.store.clear()
        self.model.clear()

    @rule(durability=st.sampled_from(["group", "commit", "os"]))
    def reopen(self, durability: str) -> None:
        self.store.close()
        self.store = DurableDict(self.folder, durability=durability)

    @invariant()
    def same_items_in_order(self) -> None:
        assert list(self.store.items()) == list(self.model.items())
        assert len(self.store) == len(self.model)

    def teardown(self) -> None:
        self.store.close()
        import shutil
        shutil.rmtree(self.folder, ignore_errors=True)


TestDictModel = DictModel.TestCase
TestDictModel.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


def test_len_and_iteration_cost_one_query(store: DurableDict) -> None:
    for i in range(3000):
        store[i] = i
    keys: List[Any] = list(store)
    assert keys == list(range(3000))


def test_an_iodict_folder_is_refused_not_opened_empty(folder: str, queue: HddQueue) -> None:
    os.makedirs(folder)
    with open(os.path.join(folder, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15"), "wb") as f:
        f.write(b"an iodict 0.0.8 item file")
    with pytest.raises(StoreError, match="iodict"):
        DurableDict(folder, queue=queue)


def test_views_not_generators(store: DurableDict) -> None:
    store["a"], store["b"] = 1, 2
    keys, items, values = store.keys(), store.items(), store.values()
    assert len(keys) == 2 and "a" in keys and ("b", 2) in items and list(values) == [1, 2]
    store["c"] = 3  # views are live, as a dict's
    assert list(keys) == ["a", "b", "c"]


def test_four_processes_write_one_dict(folder: str) -> None:
    import multiprocessing

    from _durable_workers import write_keys
    ctx = multiprocessing.get_context("spawn")
    DurableDict(folder).close()
    procs = [ctx.Process(target=write_keys, args=(folder, n, 500)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
        assert p.exitcode == 0
    d = DurableDict(folder)
    assert len(d) == 2000 and d.copy() == {(n, i): i for n in range(4) for i in range(500)}
    d.close()
