"""Where everything lives in a syncq segment: the header, the reader slots, the ring.

The segment starts with a fixed header, then one 64-byte slot per participant,
then the ring.  Every number is little-endian and 8-byte aligned; positions in
the ring are 64-bit byte counts that only grow (``pos % capacity`` is the
offset), so ``tail - head`` is always the bytes in use, with no wrap ambiguity.

A record is an 8-byte header (payload length, kind) and the payload, padded to
8 bytes.  The header never straddles the ring's end (positions stay 8-aligned
and the capacity is a multiple of 8); a payload may, and is copied in two
pieces.
"""

from __future__ import annotations

import struct

MAGIC = b"NBSYNCQ\x00"
VERSION = 1

MODES = ("broadcast", "work")
ON_FULL = ("block", "drop_oldest")

# Fixed part: magic, version, mode, capacity, slot count, on_full policy.
IDENTITY = struct.Struct("<8sIIQII")
IDENTITY_AT = 0
# Where the next record goes (pos, seq), and the oldest kept one (pos, seq).
# In work mode the head is the shared read cursor.
TAIL_AT = 32
HEAD_AT = 48
POS_SEQ = struct.Struct("<QQ")
# Futex words (bumped on every publish / on every release of space) and the
# number of participants waiting on each.
DATA_WORD_AT = 64
SPACE_WORD_AT = 68
WORD = struct.Struct("<I")
DATA_WAITERS_AT = 72
SPACE_WAITERS_AT = 76
# The hot part read in one call: tail, head, words, waiters.
HOT = struct.Struct("<QQQQIIII")
HOT_AT = 32
# Eight words a client of the ring may keep in the segment (SharedFileWriter's
# pending batch).
AUX_AT = 96
AUX = struct.Struct("<8Q")
# The most space a waiting writer asked for (readers wake writers once it is free).
SPACE_NEED_AT = 160
HEADER_SIZE = 192

# pid, flags, start time, cursor pos, cursor seq, heartbeat, lost, generation
SLOT = struct.Struct("<IIQQQQQQ")
SLOT_SIZE = 64
CURSOR_IN_SLOT = 16  # offset of (cursor pos, cursor seq) inside a slot
HEARTBEAT_IN_SLOT = 32
LOST_IN_SLOT = 40
U64 = struct.Struct("<Q")

USED = 1
READER = 2
WAITS_DATA = 4
WAITS_SPACE = 8

RECORD = struct.Struct("<II")  # payload length, kind
RECORD_HEADER = RECORD.size


def record_size(payload_len: int) -> int:
    """Bytes a record with *payload_len* bytes of payload takes in the ring."""
    return RECORD_HEADER + ((payload_len + 7) & ~7)


def slot_offset(index: int) -> int:
    return HEADER_SIZE + index * SLOT_SIZE


def ring_offset(slots: int) -> int:
    """Where the ring starts: after the slots, on a 64-byte boundary."""
    end = HEADER_SIZE + slots * SLOT_SIZE
    return (end + 63) & ~63


def segment_size(capacity: int, slots: int) -> int:
    return ring_offset(slots) + capacity
