"""Read back what an offline W&B run wrote, with no server: the records of its ``.wandb`` files.

An offline run writes everything it logs (run, config, history, summary, artifacts, exit) into
``<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``, the file ``wandb sync`` uploads. It is a
LevelDB-style log (a 7-byte header ``:W&B`` + magic + version, then 32 KiB blocks of chunks with
a 7-byte header each: CRC32, length, type) of ``wandb_internal_pb2.Record`` protobufs, wandb's
own message type. A resumed offline run writes a second folder with the same run id.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import attrs

BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> list[bytes]:
    """The records' payloads of a ``.wandb`` file (chunks joined, checksums verified)."""
    if len(data) < 7:  # not written yet
        return []
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, f"not a W&B transaction log: {data[:7]!r}"
    out, pos, pending = [], 7, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # the rest of a block too short for a header is padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0:  # zero padding up to the next block
            pos += left
            continue
        if pos + CHUNK_HEADER + length > len(data):  # a chunk still being written
            break
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        assert zlib.crc32(payload, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"bad checksum at byte {pos}"
        pos += CHUNK_HEADER + length
        if kind == FULL:
            out.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            out.append(pending + payload)
            pending = b""
    return out


def _items(items: Any) -> dict[str, Any]:
    """``{key: value}`` of a repeated ``*Item`` field (``key`` or ``nested_key``, ``value_json``)."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


@attrs.define
class Segment:
    """What one offline run folder recorded (a resumed run has one folder per session)."""

    folder: Path
    run_id: str = ""
    project: str = ""
    name: str = ""
    tags: list[str] = attrs.field(factory=list)
    config: dict[str, Any] = attrs.field(factory=dict)
    history: list[dict[str, Any]] = attrs.field(factory=list)
    summary: dict[str, Any] = attrs.field(factory=dict)
    metrics: list[tuple[str, str]] = attrs.field(factory=list)  # (name or glob, step metric)
    artifacts: list[dict[str, Any]] = attrs.field(factory=list)
    exit_code: int | None = None
    started: int = 0  # microseconds since the epoch


def read_segment(folder: Path) -> Segment:
    """Parse the ``run-<id>.wandb`` file of one ``offline-run-*`` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = Path(folder).glob("run-*.wandb")
    seg = Segment(folder=Path(folder))
    for payload in _chunks(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            if not seg.run_id:  # the first run record; later ones are partial updates
                seg.run_id, seg.project, seg.name = run.run_id, run.project, run.display_name
                seg.tags = list(run.tags)
                seg.started = run.start_time.ToMicroseconds()
            seg.config.update(_items(run.config.update))
        elif kind == "config":
            seg.config.update(_items(record.config.update))
        elif kind == "history":
            seg.history.append(_items(record.history.item))
        elif kind == "summary":
            seg.summary.update(_items(record.summary.update))
        elif kind == "metric":
            seg.metrics.append((record.metric.name or record.metric.glob_name, record.metric.step_metric))
        elif kind == "artifact":
            art = record.artifact
            files = {c.path: c.local_path for c in art.manifest.contents}
            seg.artifacts.append({"name": art.name, "type": art.type, "files": files})
        elif kind == "exit":
            seg.exit_code = record.exit.exit_code
    seg.config.pop("_wandb", None)
    return seg


def next_second() -> None:
    """Sleep into the next wall-clock second. Call it before a resumed session: an offline folder is
    named ``offline-run-<start second>-<run id>``, and older wandb releases (0.19) reuse the folder of
    a session of the same run that started in the same second; real sessions are further apart."""
    time.sleep(1.01 - time.time() % 1)


def read_finished_segment(folder: Path, timeout_s: float = 60.0) -> Segment:
    """``read_segment`` once the file holds the run's exit record: ``run.finish()`` returns before
    wandb's service process has written the last records."""
    deadline = time.monotonic() + timeout_s
    while True:
        seg = read_segment(folder)
        if seg.exit_code is not None or time.monotonic() > deadline:
            return seg
        time.sleep(0.05)


def read_offline_runs(wandb_dir: Path) -> list[Segment]:
    """Every offline run folder under ``<dir>/wandb``, finished, in the order they started."""
    segments = [read_finished_segment(folder) for folder in Path(wandb_dir).glob("wandb/offline-run-*")]
    return sorted(segments, key=lambda s: s.started)
