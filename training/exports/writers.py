"""Streaming writers: rows go to disk in batches, so memory does not grow with the dataset.
Each writer hashes what it writes (SHA-256) as it goes."""

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
CANDIDATE = pa.struct(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("model_version", pa.int64()),
        ("round", pa.int64()),
        ("rank", pa.int64()),
        ("rating", pa.int64()),
        ("flags", pa.list_(pa.string())),
    ]
)

SCHEMAS = {
    "sft": pa.schema([("messages", MESSAGES)]),
    "preference": pa.schema([("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES)]),
    "preference+margin": pa.schema(
        [("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES), ("margin", pa.float64())]
    ),
    "ranking": pa.schema([("prompt", MESSAGES), ("completions", pa.list_(MESSAGES)), ("ranks", pa.list_(pa.int64()))]),
    "annotations": pa.schema(
        [
            ("kind", pa.string()),
            ("task_id", pa.int64()),
            ("annotator", pa.string()),
            ("created_at", pa.string()),
            ("updated_at", pa.string()),
            ("prompt", MESSAGES),
            ("demonstration", pa.string()),
            ("candidates", pa.list_(CANDIDATE)),
            ("none_acceptable", pa.bool_()),
            ("source", pa.string()),
        ]
    ),
}


class _HashingFile:
    """A binary file that keeps a running SHA-256 and byte count of what is written."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()


class JsonlWriter:
    def __init__(self, path: Path, schema_name: str):
        self._out = _HashingFile(path)
        self._buffer: list[str] = []
        self.rows = 0

    def write(self, row: dict) -> None:
        self._buffer.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        self.rows += 1
        if len(self._buffer) >= 2000:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._out.write(("\n".join(self._buffer) + "\n").encode())
            self._buffer.clear()

    def close(self) -> dict:
        self._flush()
        self._out.close()
        return {"sha256": self._out.sha256.hexdigest(), "bytes": self._out.bytes}


class ParquetWriter:
    BATCH_ROWS = 5000

    def __init__(self, path: Path, schema_name: str):
        self._path = path
        self._schema = SCHEMAS[schema_name]
        self._writer = pq.ParquetWriter(path, self._schema, compression="zstd")
        self._batch: list[dict] = []
        self.rows = 0

    def write(self, row: dict) -> None:
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= self.BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._writer.write_table(pa.Table.from_pylist(self._batch, schema=self._schema))
            self._batch.clear()

    def close(self) -> dict:
        self._flush()
        self._writer.close()
        return file_digest(self._path)


WRITERS = {"jsonl": JsonlWriter, "parquet": ParquetWriter}


def file_digest(path: Path) -> dict:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return {"sha256": sha.hexdigest(), "bytes": size}
