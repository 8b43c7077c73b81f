"""Reading a large events file in bounded memory: route each line to its patient's shard,
validate it there.

`iter_event_lines` (readers.py) is the reference: one pass, but one dict entry per
accepted event id to detect duplicates (about 600 bytes each: 1.5 GB at 2.5M lines).
Here the same verdicts are reached in two steps, and no step holds the cohort:

1. `route_events` parses each line once, rejects at once what cannot be routed (not
   JSON, no known patient), and appends every other line, raw, to its patient's shard.
   Duplicate ids are found with a Bloom filter (about 4 bits per byte of the file)
   plus three compact arrays (id hash, offset, line number per routed line), not a dict
   of events. A line whose id *may* have been seen is held back in a spill file; at the
   end, every line sharing such a hash is re-read and run through the reference logic
   in line order, which words the conflict and routes the lines that were new after all
   (a Bloom false positive, or a hash collision).
2. `read_routed` validates a shard's lines with the reference functions (`_event`), so
   every other rejection is worded exactly as `read_events` words it.

Why this gives the reference's verdicts: a line's validity is a function of the line
and the set of known patients, so it does not matter which pass decides it; duplicate
handling only ever relates lines with the same id, hence the same hash, and all of
those are replayed together, in line order, through the reference rules.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from pathlib import Path

from carepath.model.pathway import DataField
from carepath.records import readers as _r
from carepath.records.fields import TypeSpec, compile_event_types
from carepath.records.types import Event, RecordsFileError, Rejection

_MIN_FILTER_BITS, _MAX_FILTER_BITS = 1 << 16, 1 << 29


def _filter_bits(file_size: int) -> int:
    """A power of two near 4 bits per byte of the file: with two probes and lines of
    100-200 bytes, about one false 'seen before' in 3,000 lines."""
    bits = _MIN_FILTER_BITS
    while bits < file_size * 4 and bits < _MAX_FILTER_BITS:
        bits <<= 1
    return bits


def route_events(
    path: str | Path,
    *,
    event_types: Mapping[str, Mapping[str, DataField]],
    shard_of: Mapping[str, int],
    write: Callable[[int, bytes], None],
) -> list[Rejection]:
    """Routes every line that names a known patient to `write(shard, record)`; returns the
    lines rejected here (unroutable lines, and id conflicts), in line order.

    A record is `b"<line number>\\t<raw line>\\n"`; `read_routed` reads it back. Exact
    duplicates are skipped. A routed line may still be invalid: `read_routed` decides.
    """
    specs = compile_event_types(event_types)
    parse_line, hash_ = _r._parse_line, hash
    rejected: list[Rejection] = []
    # One entry per routed line; `q` holds any Python str hash.
    hashes, offsets, numbers = array("q"), array("q"), array("q")
    add_hash, add_offset, add_number = hashes.append, offsets.append, numbers.append
    suspects: set[int] = set()
    with _r._open(path) as handle, tempfile.TemporaryFile() as held, _r.gc_paused():
        try:
            bits = _filter_bits(os.fstat(handle.fileno()).st_size)
            mask = bits - 1
            seen = bytearray(bits >> 3)
            held_numbers: list[int] = []
            offset = 0
            for number, raw in enumerate(handle, start=1):
                start = offset
                offset += len(raw)
                obj = parse_line(number, raw)
                if type(obj) is not dict:
                    if obj is not None:
                        rejected.append(obj)  # type: ignore[arg-type]
                    continue
                event_id = obj.get("id")
                ref = obj.get("patient")
                shard = shard_of.get(ref) if type(ref) is str else None
                if shard is None or type(event_id) is not str:
                    # No shard to go to, or no id to compare: invalid either way; word it now.
                    reason = _r._event(number, obj, specs, shard_of, {})
                    assert type(reason) is str, "an unroutable line cannot be a valid event"
                    rejected.append(Rejection(number, _r._id_of(obj), reason))
                    continue
                if not raw.endswith(b"\n"):
                    raw += b"\n"
                h = hash_(event_id)
                a, b = h & mask, (h >> 32) & mask
                ia, ba, ib, bb = a >> 3, 1 << (a & 7), b >> 3, 1 << (b & 7)
                if seen[ia] & ba and seen[ib] & bb:
                    suspects.add(h)
                    held.write(raw)
                    held_numbers.append(number)
                    continue
                seen[ia] |= ba
                seen[ib] |= bb
                add_hash(h)
                add_offset(start)
                add_number(number)
                write(shard, b"%d\t%b" % (number, raw))
            if suspects:
                held.seek(0)
                later = [(n, held.readline()) for n in held_numbers]
                first = [(numbers[i], offsets[i]) for i, h in enumerate(hashes) if h in suspects]
                del seen
                rejected += _replay(handle, first, later, specs, shard_of, write)
        except OSError as exc:
            raise RecordsFileError(path, f"could not be read ({exc.strerror or exc})") from None
    rejected.sort(key=lambda r: r.line)
    return rejected


def _replay(handle, first: list[tuple[int, int]], later: list[tuple[int, bytes]], specs: dict[str, TypeSpec],
            shard_of: Mapping[str, int], write: Callable[[int, bytes], None]) -> list[Rejection]:
    """The reference duplicate rules over every line whose id hash was seen twice.

    `first` are routed lines (line number, file offset), `later` the held-back lines
    (line number, raw); only held-back lines are rejected or routed here: a routed
    line's own verdict comes from `read_routed`, exactly as if nothing had happened.
    """
    lines: list[tuple[int, bytes, bool]] = []
    for number, offset in first:
        handle.seek(offset)
        lines.append((number, handle.readline(), False))
    lines += ((number, raw, True) for number, raw in later)
    lines.sort(key=lambda item: item[0])
    accepted: dict[str, Event] = {}
    known: dict[str, str] = {}
    rejected: list[Rejection] = []
    for number, raw, held in lines:
        obj = _r._parse_line(number, raw)
        assert type(obj) is dict
        event = _r._event(number, obj, specs, shard_of, known)
        if type(event) is str:
            if held and _r.salvage_answers(number, obj, specs, shard_of, known) is not None:
                # Its shard rejects it and derives the answers, as the reference does.
                write(shard_of[obj["patient"]], b"%d\t%b" % (number, raw if raw.endswith(b"\n") else raw + b"\n"))
            elif held:
                rejected.append(Rejection(number, _r._id_of(obj), event))
            continue
        earlier = accepted.setdefault(event.id, event)  # type: ignore[union-attr]
        if earlier is event:
            if held:
                write(shard_of[event.patient], b"%d\t%b" % (number, raw if raw.endswith(b"\n") else raw + b"\n"))
        elif held and (differs := _r._differences(earlier, event)):  # type: ignore[arg-type]
            rejected.append(_r.id_conflict(number, earlier, differs))
        # else: an exact duplicate, skipped as the reference skips it
    return rejected


def read_routed(records: Iterable[bytes], *, specs: dict[str, TypeSpec],
                patients: Container[str]) -> Iterator[Event | Rejection]:
    """The events (or rejections) of routed records, validated by the reference rules.

    `patients` must hold the patient of every record (the shard's patients do).
    """
    parse_line, make_event, id_of = _r._parse_line, _r._event, _r._id_of
    loads = getattr(_r, "_orjson_loads", None) or (lambda raw: parse_line(number, raw))
    known: dict[str, str] = {}
    for record in records:
        tab = record.index(b"\t")
        number = int(record[:tab])
        raw = record[tab + 1:]
        try:
            obj = loads(raw)
        except Exception:  # noqa: BLE001 - what orjson refuses the reference parser read (e.g. a BOM)
            obj = None
        if type(obj) is not dict:
            obj = parse_line(number, raw)  # routed lines are objects: this gives the same dict
        event = make_event(number, obj, specs, patients, known)
        if type(event) is str:
            yield Rejection(number, id_of(obj), event)
            if (salvaged := _r.salvage_answers(number, obj, specs, patients, known)) is not None:
                yield salvaged
        else:
            yield event  # type: ignore[misc]
