"""The ring: records in a shared segment, cursors in slots, waiting on futex words.

`Ring` is one process's handle on a syncq segment.  It appends blobs of whole
records (under the lock, in one copy), reads records at a cursor, keeps its
slot (pid, start time, cursor, heartbeat, messages lost) and frees space up to
the lowest cursor among live readers.  `SyncQueue`, `PySyncQ` and
`SharedFileWriter` are built on it; none of them touches the segment itself.

Threads: none.  Processes: any number, each with its own slot.  Lock: the
segment's (thread lock, then flock), held only to copy records and move
cursors, never while sleeping.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import time
import weakref
from multiprocessing import util as mp_util
from typing import Any, Callable, Dict, List, Optional, Tuple

import nonblock.syncq.layout as L
import nonblock.syncq.procs as procs
import nonblock.syncq.wakeup as wakeup
from nonblock.syncq.codec import record as codec_record
from nonblock.syncq.segment import Segment

_YIELDS_BEFORE_SLEEP = 8
_DEAD_PEER_CHECK = 0.05  # a writer waiting for space looks at laggards this often (s)
_HOT_unpack = L.HOT.unpack_from
_POS_SEQ_pack = L.POS_SEQ.pack_into
_POS_SEQ_unpack = L.POS_SEQ.unpack_from
_RECORD_pack = L.RECORD.pack_into
_RECORD_unpack = L.RECORD.unpack_from
_U64_pack = L.U64.pack_into
_U64_unpack = L.U64.unpack_from
_U32_pack = L.WORD.pack_into
_U32_unpack = L.WORD.unpack_from
_WORD_pack = L.WORD.pack_into  # a writer waiting for space looks at laggards this often (s)
_rings: weakref.WeakSet[Ring] = weakref.WeakSet()


class Ring:
    """One process's handle on the ring of the segment called *name*."""

    def __init__(self, name: Optional[str], create: bool, capacity: int, *, mode: str,
                 on_full: str, slots: int, check_capacity: bool = True) -> None:
        self._want = (L.MODES.index(mode), capacity, slots, L.ON_FULL.index(on_full))
        self._check_capacity = check_capacity
        self._seg = Segment(name, create, L.segment_size(capacity, slots), self._initialize, self._verify)
        self.name = self._seg.name
        buf = self._seg.buf
        _magic, _version, mode_no, capacity, slots, full_no = L.IDENTITY.unpack_from(buf, 0)
        self.capacity: int = capacity
        self.slots: int = slots
        self.mode = L.MODES[mode_no]
        self.on_full = L.ON_FULL[full_no]
        # A broadcast reader with a cursor of its own may look for a new record
        # without the lock (it then takes the lock to read it); see read_one.
        self._reads_alone = self.mode == "broadcast"
        self._buf: Any = buf
        self._base = L.ring_offset(self.slots)
        address = wakeup.address_of(buf)
        self._data_word = address + L.DATA_WORD_AT
        self._space_word = address + L.SPACE_WORD_AT
        self._slot = -1
        self._slot_at = 0
        self._reader = False
        self._start = "latest"
        self._pid = os.getpid()
        self._checked: Dict[int, float] = {}
        self.last_appended_seq = 0
        self.last_read = (0, 0, 0)  # (seq before, pos after, seq after) of the last read()
        self.interrupted = False
        self.closed = False
        self.before_close: Optional[Callable[[], None]] = None  # a client's last words, run once
        self.extra_files: List[str] = []  # a client's files, removed with the segment
        _rings.add(self)

    # -- creating and joining --------------------------------------------------------

    def _initialize(self, buf: Any) -> None:
        mode_no, capacity, slots, full_no = self._want
        size = L.segment_size(capacity, slots)
        buf[: L.ring_offset(slots)] = bytes(L.ring_offset(slots))
        L.IDENTITY.pack_into(buf, 0, b"\0" * 8, L.VERSION, mode_no, capacity, slots, full_no)
        assert len(buf) >= size
        L.IDENTITY.pack_into(buf, 0, L.MAGIC, L.VERSION, mode_no, capacity, slots, full_no)

    def _verify(self, buf: Any, name: str) -> bool:
        """Check that *buf* is a syncq of this kind; return whether live participants use it."""
        if len(buf) < L.HEADER_SIZE:
            raise ValueError(f"shared memory {name!r} is not a nonblock syncq ({len(buf)} bytes)")
        magic, version, mode_no, capacity, slots, full_no = L.IDENTITY.unpack_from(buf, 0)
        if magic != L.MAGIC:
            raise ValueError(f"shared memory {name!r} is not a nonblock syncq (magic {magic!r})")
        if version != L.VERSION:
            raise ValueError(f"syncq {name!r} has layout version {version}, this nonblock reads {L.VERSION}")
        if self._check_capacity and capacity != self._want[1]:
            raise ValueError(f"syncq {name!r} has a capacity of {capacity} bytes, not {self._want[1]}")
        if mode_no != self._want[0]:
            raise ValueError(f"syncq {name!r} is in mode {L.MODES[mode_no]!r}, "
                             f"not {L.MODES[self._want[0]]!r}")
        live = False
        for index in range(slots):
            pid, flags, started = L.SLOT.unpack_from(buf, L.slot_offset(index))[:3]
            if flags & L.USED and procs.is_alive(pid, started):
                live = True
        return live

    def join(self, reader: bool, start: str = "latest") -> None:
        """Take a slot for this process (as a reader: with a cursor at *start*)."""
        with self._seg:
            self._join_locked(reader, start)

    def _join_locked(self, reader: bool, start: str) -> None:
        buf = self._buf
        if self._slot >= 0:
            self._leave_locked()
        self._reap_locked()
        for index in range(self.slots):
            at = L.slot_offset(index)
            if not L.SLOT.unpack_from(buf, at)[1] & L.USED:
                break
        else:
            raise RuntimeError(f"syncq {self.name!r}: all {self.slots} slots are taken by live processes")
        cursor = L.POS_SEQ.unpack_from(buf, L.HEAD_AT if start == "earliest" else L.TAIL_AT)
        generation = L.SLOT.unpack_from(buf, at)[7] + 1
        flags = L.USED | (L.READER if reader else 0)
        me = os.getpid()
        L.SLOT.pack_into(buf, at, me, flags, procs.start_time(me), cursor[0], cursor[1],
                         time.monotonic_ns(), 0, generation)
        self._slot, self._slot_at, self._reader, self._pid, self._start = index, at, reader, me, start
        _close_at_exit_of_this_process()

    @property
    def joined(self) -> bool:
        return self._slot >= 0  # a forked child's copy is set to -1 at the fork

    def ensure_joined(self, reader: bool = False) -> None:
        """Join if this process has no slot, or has one without the role the call needs.

        A forked child of a participant joins in the role its first call needs,
        not its parent's: a child that only writes must not hold a reader's
        cursor that nothing moves.  A handle that joined to write and now reads
        joins again as a reader (at its start): reading at a cursor the writers
        do not know of would let them overwrite what it has not read.
        """
        if self.closed:
            raise ValueError(f"syncq {self.name!r} is closed")
        if not self.joined or (reader and not self._reader):
            self.join(reader, self._start)

    # -- space -------------------------------------------------------------------------

    def _lowest_cursor_locked(self, tail: Tuple[int, int]) -> Tuple[int, int]:
        buf, lowest = self._buf, tail
        for index in range(self.slots):
            at = L.slot_offset(index)
            if 0 <= self._reader_cursor(at) < lowest[0]:
                lowest = L.POS_SEQ.unpack_from(buf, at + L.CURSOR_IN_SLOT)
        return lowest

    def _reader_cursor(self, at: int) -> int:
        """The cursor position of the reader in the slot at *at* (-1 if it holds no reader)."""
        flags = L.SLOT.unpack_from(self._buf, at)[1]
        if flags & L.USED and flags & L.READER:
            return int(L.U64.unpack_from(self._buf, at + L.CURSOR_IN_SLOT)[0])
        return -1

    def _make_room_locked(self, need: int) -> bool:
        buf, cap = self._buf, self.capacity
        tail = L.POS_SEQ.unpack_from(buf, L.TAIL_AT)
        head = L.POS_SEQ.unpack_from(buf, L.HEAD_AT)
        if cap - (tail[0] - head[0]) >= need:
            return True
        if self.mode == "work":
            return False
        head = self._lowest_cursor_locked(tail)
        L.POS_SEQ.pack_into(buf, L.HEAD_AT, *head)
        if cap - (tail[0] - head[0]) >= need:
            return True
        if self._drop_dead_laggards_locked(head[0]):
            return self._make_room_locked(need)
        if self.on_full != "drop_oldest":
            return False
        while cap - (tail[0] - head[0]) < need:
            head = self._drop_oldest_locked(head)
        return True

    def _drop_dead_laggards_locked(self, head_pos: int) -> bool:
        """Free the slots of dead readers whose cursor pins the head; say if any went."""
        now, dropped = time.monotonic(), False
        for index in range(self.slots):
            at = L.slot_offset(index)
            if self._reader_cursor(at) != head_pos:
                continue
            pid, flags, started = L.SLOT.unpack_from(self._buf, at)[:3]
            if now - self._checked.get(index, 0.0) < _DEAD_PEER_CHECK:
                continue
            self._checked[index] = now
            if not procs.is_alive(pid, started):
                self._free_slot_locked(at, flags)
                dropped = True
        return dropped

    def _drop_oldest_locked(self, head: Tuple[int, int]) -> Tuple[int, int]:
        """Drop the record at *head*: readers still on it move past it and count a loss."""
        size = L.record_size(self._record_header(head[0])[0])
        new_head = (head[0] + size, head[1] + 1)
        buf = self._buf
        for index in range(self.slots):
            at = L.slot_offset(index)
            if self._reader_cursor(at) == head[0]:
                L.POS_SEQ.pack_into(buf, at + L.CURSOR_IN_SLOT, *new_head)
                lost = L.U64.unpack_from(buf, at + L.LOST_IN_SLOT)[0]
                L.U64.pack_into(buf, at + L.LOST_IN_SLOT, lost + 1)
        L.POS_SEQ.pack_into(buf, L.HEAD_AT, *new_head)
        return new_head

    def _reap_locked(self) -> None:
        for index in range(self.slots):
            at = L.slot_offset(index)
            pid, flags, started = L.SLOT.unpack_from(self._buf, at)[:3]
            if flags & L.USED and not procs.is_alive(pid, started):
                self._free_slot_locked(at, flags)

    def _free_slot_locked(self, at: int, flags: int) -> None:
        buf = self._buf
        for flag, waiters_at in ((L.WAITS_DATA, L.DATA_WAITERS_AT), (L.WAITS_SPACE, L.SPACE_WAITERS_AT)):
            if flags & flag:
                L.WORD.pack_into(buf, waiters_at, max(0, L.WORD.unpack_from(buf, waiters_at)[0] - 1))
        L.SLOT.pack_into(buf, at, 0, 0, 0, 0, 0, 0, 0, L.SLOT.unpack_from(buf, at)[7])

    # -- copying records in and out ---------------------------------------------------

    def _copy_in(self, pos: int, blob: bytes) -> None:
        buf, cap, base = self._buf, self.capacity, self._base
        off = pos % cap
        first = cap - off
        if len(blob) <= first:
            buf[base + off : base + off + len(blob)] = blob
        else:
            view = memoryview(blob)
            buf[base + off : base + cap] = view[:first]
            buf[base : base + len(blob) - first] = view[first:]
            view.release()

    def _copy_out(self, pos: int, length: int) -> bytes:
        buf, cap, base = self._buf, self.capacity, self._base
        off = pos % cap
        if off + length <= cap:
            return bytes(buf[base + off : base + off + length])
        first = cap - off
        return bytes(buf[base + off : base + cap]) + bytes(buf[base : base + length - first])

    def _record_header(self, pos: int) -> Tuple[int, int]:
        return L.RECORD.unpack_from(self._buf, self._base + pos % self.capacity)

    # -- appending ------------------------------------------------------------------------

    def append_one(self, kind: int, payload: bytes, timeout: Optional[float]) -> bool:
        """Append one record; the common case (room at once, no wrap) in one short locked copy."""
        if self._slot < 0:
            self.ensure_joined()
        n = len(payload)
        size = L.RECORD_HEADER + ((n + 7) & ~7)
        seg, cap, buf = self._seg, self.capacity, self._buf
        seg.thread_lock.acquire()
        fcntl.flock(seg.fd, fcntl.LOCK_EX)
        try:
            tail_pos, tail_seq, head_pos, _, data_word, _, data_waiters, _ = _HOT_unpack(buf, L.HOT_AT)
            off = tail_pos % cap
            done = off + size <= cap and (cap - (tail_pos - head_pos) >= size or self._make_room_locked(size))
            if done:
                at = self._base + off
                _RECORD_pack(buf, at, n, kind)
                buf[at + L.RECORD_HEADER : at + L.RECORD_HEADER + n] = payload
                _POS_SEQ_pack(buf, L.TAIL_AT, tail_pos + size, tail_seq + 1)
                self.last_appended_seq = tail_seq + 1
                if data_waiters:
                    _WORD_pack(buf, L.DATA_WORD_AT, (data_word + 1) & 0xFFFFFFFF)
        finally:
            fcntl.flock(seg.fd, fcntl.LOCK_UN)
            seg.thread_lock.release()
        if not done:
            return self.append(codec_record(payload, kind), 1, timeout)
        if data_waiters:
            wakeup.wake_all(self._data_word)
        return True

    def append(self, blob: bytes, count: int, timeout: Optional[float]) -> bool:
        """Append *blob* (*count* whole records); False if *timeout* passed with no room.

        ``timeout=None`` waits as long as it takes (a dead reader is dropped
        meanwhile); 0 never waits.
        """
        self.ensure_joined()
        need = len(blob)
        deadline = None if timeout is None else time.monotonic() + timeout
        seg, waiting, round_ = self._seg, False, 0
        while True:
            with seg:
                if waiting:
                    self._stop_waiting_locked(L.WAITS_SPACE, L.SPACE_WAITERS_AT)
                if self._make_room_locked(need):
                    buf = self._buf
                    tail_pos, tail_seq = L.POS_SEQ.unpack_from(buf, L.TAIL_AT)
                    self._copy_in(tail_pos, blob)
                    L.POS_SEQ.pack_into(buf, L.TAIL_AT, tail_pos + need, tail_seq + count)
                    word, waiters = L.HOT.unpack_from(buf, L.HOT_AT)[4::2]
                    if waiters:
                        L.WORD.pack_into(buf, L.DATA_WORD_AT, (word + 1) & 0xFFFFFFFF)
                    self.last_appended_seq = tail_seq + count
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                expected = self._start_waiting_locked(L.WAITS_SPACE, L.SPACE_WAITERS_AT, L.SPACE_WORD_AT)
                if need > L.WORD.unpack_from(self._buf, L.SPACE_NEED_AT)[0]:
                    L.WORD.pack_into(self._buf, L.SPACE_NEED_AT, need)
                waiting = True
            slice_ = _DEAD_PEER_CHECK if remaining is None else min(remaining, _DEAD_PEER_CHECK)
            wakeup.wait(self._space_word, expected, slice_, round_)
            round_ += 1
        if waiters:
            wakeup.wake_all(self._data_word)
        return True

    def _start_waiting_locked(self, flag: int, waiters_at: int, word_at: int) -> int:
        buf, at = self._buf, self._slot_at
        L.WORD.pack_into(buf, at + 4, L.WORD.unpack_from(buf, at + 4)[0] | flag)
        L.WORD.pack_into(buf, waiters_at, L.WORD.unpack_from(buf, waiters_at)[0] + 1)
        return int(L.WORD.unpack_from(buf, word_at)[0])

    def _stop_waiting_locked(self, flag: int, waiters_at: int) -> None:
        buf, at = self._buf, self._slot_at
        flags = L.WORD.unpack_from(buf, at + 4)[0]
        if flags & flag:
            L.WORD.pack_into(buf, at + 4, flags & ~flag)
            L.WORD.pack_into(buf, waiters_at, max(0, L.WORD.unpack_from(buf, waiters_at)[0] - 1))

    # -- reading ---------------------------------------------------------------------------

    def _cursor_at(self) -> int:
        return L.HEAD_AT if self.mode == "work" else self._slot_at + L.CURSOR_IN_SLOT

    def read_one(self, timeout: Optional[float]) -> Optional[Tuple[int, bytes]]:
        """The next record (kind, payload), or None after *timeout*; fast when one is there."""
        if self._slot < 0 or not self._reader:
            self.ensure_joined(reader=True)
        seg, cap, buf = self._seg, self.capacity, self._buf
        seg.thread_lock.acquire()
        fcntl.flock(seg.fd, fcntl.LOCK_EX)
        try:
            cursor_at = self._cursor_at()
            pos, seq = _POS_SEQ_unpack(buf, cursor_at)
            found = pos != _U64_unpack(buf, L.TAIL_AT)[0]
            if found:
                at = self._base + pos % cap
                n, kind = _RECORD_unpack(buf, at)
                at += L.RECORD_HEADER
                if at + n <= self._base + cap:
                    payload = buf[at : at + n].tobytes()
                else:
                    payload = self._copy_out(pos + L.RECORD_HEADER, n)
                wake = self._advance_locked(cursor_at, pos + L.RECORD_HEADER + ((n + 7) & ~7), seq + 1)
        finally:
            fcntl.flock(seg.fd, fcntl.LOCK_UN)
            seg.thread_lock.release()
        if not found and timeout != 0 and self._reads_alone:
            # Before going to sleep (a futex round trip for both sides), yield
            # the CPU a few times: a writer that is mid-put usually publishes
            # within that.  Bounded: then the event-driven wait takes over.
            tail_at, cursor_at = L.TAIL_AT, self._cursor_at()
            for _ in range(_YIELDS_BEFORE_SLEEP):
                os.sched_yield()
                if _U64_unpack(buf, tail_at)[0] != _U64_unpack(buf, cursor_at)[0]:
                    return self.read_one(timeout)
        if not found:
            records = self.read(1, timeout)
            return records[0] if records else None
        if wake:
            wakeup.wake_all(self._space_word)
        return kind, payload

    def read(self, max_records: int, timeout: Optional[float], commit: bool = True,
             max_bytes: int = 1 << 62) -> List[Tuple[int, bytes]]:
        """Up to *max_records* records (kind, payload) after this reader's cursor.

        Waits up to *timeout* for the first one (None: as long as it takes; 0:
        not at all) and returns [] if none came (or `interrupt` was called).
        With ``commit=False`` the cursor stays (see `commit`).  Under the lock
        it only walks the record headers and copies the span once; the records
        are cut apart after the lock is let go.
        """
        if not (self.joined and self._reader):
            self.ensure_joined(reader=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        seg, cap, waiting, round_ = self._seg, self.capacity, False, 0
        while True:
            with seg:
                if waiting:
                    self._stop_waiting_locked(L.WAITS_DATA, L.DATA_WAITERS_AT)
                buf, base = self._buf, self._base
                cursor_at = self._cursor_at()
                start, seq = _POS_SEQ_unpack(buf, cursor_at)
                tail_pos = _U64_unpack(buf, L.TAIL_AT)[0]
                if start != tail_pos:
                    pos, count, spans = start, 0, []
                    while pos != tail_pos and count < max_records and pos - start < max_bytes:
                        length, kind = _RECORD_unpack(buf, base + pos % cap)
                        at = pos - start + L.RECORD_HEADER
                        spans.append((kind, at, at + length))
                        pos = start + at + ((length + 7) & ~7)
                        count += 1
                    raw = self._copy_out(start, pos - start)
                    self.last_read = (seq, pos, seq + count)
                    wake = commit and self._advance_locked(cursor_at, pos, seq + count)
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if self.interrupted or (remaining is not None and remaining <= 0):
                    self.interrupted = False
                    return []
                expected = self._start_waiting_locked(L.WAITS_DATA, L.DATA_WAITERS_AT, L.DATA_WORD_AT)
                waiting = True
            wakeup.wait(self._data_word, expected, 1.0 if remaining is None else min(remaining, 1.0), round_)
            round_ += 1
        if wake:
            wakeup.wake_all(self._space_word)
        return [(kind, raw[a:b]) for kind, a, b in spans]

    def _advance_locked(self, cursor_at: int, pos: int, seq: int, always: bool = False) -> bool:
        """Move the cursor; say whether to wake writers waiting for space.

        Writers are woken once a good part of the ring is free (or all of it,
        or as much as one of them asked for), not for every record read: a
        writer that waits would otherwise cost the reader a syncall per record.
        """
        buf = self._buf
        _POS_SEQ_pack(buf, cursor_at, pos, seq)
        _U64_pack(buf, self._slot_at + L.HEARTBEAT_IN_SLOT, time.monotonic_ns())
        tail_pos, _, _, _, _, word, _, waiters = _HOT_unpack(buf, L.HOT_AT)
        if not waiters:
            return False
        free = self.capacity - (tail_pos - pos)
        enough = min(self.capacity, max(self.capacity // 8, _U32_unpack(buf, L.SPACE_NEED_AT)[0]))
        if not always and free < enough:
            return False
        _WORD_pack(buf, L.SPACE_WORD_AT, (word + 1) & 0xFFFFFFFF)
        _U32_pack(buf, L.SPACE_NEED_AT, 0)
        return True

    def commit(self, pos: int, seq: int, expected_seq: int) -> None:
        """Move the cursor to (*pos*, *seq*) if it is still at *expected_seq* (after read(commit=False))."""
        with self._seg:
            cursor_at = self._cursor_at()
            if L.POS_SEQ.unpack_from(self._buf, cursor_at)[1] != expected_seq:
                return
            wake = self._advance_locked(cursor_at, pos, seq, always=True)
        if wake:
            wakeup.wake_all(self._space_word)

    def cursor(self) -> Tuple[int, int]:
        """This reader's cursor (pos, seq) (in work mode, the shared one)."""
        with self._seg:
            return L.POS_SEQ.unpack_from(self._buf, self._cursor_at())

    def wait_consumed(self, seq: int, timeout: Optional[float]) -> bool:
        """Work mode: wait until the shared cursor has passed message *seq*."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting, round_ = False, 0
        self.ensure_joined()
        while True:
            with self._seg:
                if waiting:
                    self._stop_waiting_locked(L.WAITS_SPACE, L.SPACE_WAITERS_AT)
                if L.POS_SEQ.unpack_from(self._buf, L.HEAD_AT)[1] >= seq:
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                expected = self._start_waiting_locked(L.WAITS_SPACE, L.SPACE_WAITERS_AT, L.SPACE_WORD_AT)
                waiting = True
            wakeup.wait(self._space_word, expected, 1.0 if remaining is None else min(remaining, 1.0), round_)
            round_ += 1

    # -- what the slot says -------------------------------------------------------------

    def lost(self) -> int:
        """Messages this reader lost to ``on_full="drop_oldest"``."""
        if not self.joined:
            return 0
        with self._seg:
            return int(L.U64.unpack_from(self._buf, self._slot_at + L.LOST_IN_SLOT)[0])

    def aux(self) -> Tuple[int, ...]:
        return L.AUX.unpack_from(self._buf, L.AUX_AT)

    def set_aux(self, *values: int) -> None:
        L.AUX.pack_into(self._buf, L.AUX_AT, *values)

    @property
    def lock(self) -> Segment:
        """The segment's lock, for a client's own read-modify-write of `aux`."""
        return self._seg

    # -- leaving ---------------------------------------------------------------------------

    def _leave_locked(self) -> None:
        at = self._slot_at
        flags = L.SLOT.unpack_from(self._buf, at)[1]
        if flags & L.USED and L.SLOT.unpack_from(self._buf, at)[0] == self._pid:
            self._free_slot_locked(at, flags)
        self._slot = -1

    def tail(self) -> Tuple[int, int]:
        """Where the next record goes (pos, seq)."""
        with self._seg:
            return L.POS_SEQ.unpack_from(self._buf, L.TAIL_AT)

    def interrupt(self) -> None:
        """Make a read() of this handle that waits (in another thread) return [] now."""
        self.interrupted = True
        with self._seg:
            word = L.WORD.unpack_from(self._buf, L.DATA_WORD_AT)[0]
            L.WORD.pack_into(self._buf, L.DATA_WORD_AT, (word + 1) & 0xFFFFFFFF)
        wakeup.wake_all(self._data_word)

    def close(self) -> None:
        """Give up the slot; the last participant alive unlinks the segment."""
        if self.closed:
            return
        before, self.before_close = self.before_close, None
        if before is not None:
            before()
        self.closed = True
        seg = self._seg
        with seg:
            if self.joined:
                self._leave_locked()
            self._reap_locked()
            last = not any(L.SLOT.unpack_from(self._buf, L.slot_offset(i))[1] & L.USED
                           for i in range(self.slots))
            self._buf = None
            seg.close(unlink=last, extra_files=self.extra_files)
        seg.close_fd()
        _rings.discard(self)

    def after_fork_in_child(self) -> None:
        self._seg.after_fork_in_child()
        self._slot = -1
        self._checked = {}


_finalizer_pid = 0


def _close_at_exit_of_this_process() -> None:
    """Close every ring still open when this process ends (once per process).

    atexit covers the main process and spawned children; multiprocessing's
    exit hook covers forked children, which leave through os._exit.
    """
    global _finalizer_pid
    if _finalizer_pid != os.getpid():
        _finalizer_pid = os.getpid()
        mp_util.Finalize(None, _close_all, exitpriority=20)


def _close_all() -> None:
    for ring in list(_rings):
        try:
            ring.close()
        except Exception:  # noqa: BLE001 - at exit, one bad ring must not keep the others open
            pass


atexit.register(_close_all)


def _after_fork_in_child() -> None:
    for ring in list(_rings):
        if not ring.closed:
            ring.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
