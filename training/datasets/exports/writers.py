"""Streaming writers: rows go to disk in batches, so memory does not grow with the dataset.
Each writer hashes what it writes (SHA-256) as it goes.

Rows arrive as dicts (the generic path), or from the PostgreSQL fast path as ready JSON Lines
bytes or, for Parquet, as Arrow tables. `json_line` is the one definition of a line:
Python's default separators (", ", ": ") are also how PostgreSQL prints jsonb, so both paths write
the same bytes."""

import hashlib
import io
import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
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

PAIRS = pa.list_(pa.struct([("better", pa.int64()), ("worse", pa.int64()), ("weight", pa.float64())]))

SCHEMAS = {
    "sft": pa.schema([("messages", MESSAGES)]),
    "preference": pa.schema([("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES)]),
    "preference+margin": pa.schema(
        [("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES), ("margin", pa.float64())]
    ),
    "ranking": pa.schema([("prompt", MESSAGES), ("completions", pa.list_(MESSAGES)), ("ranks", pa.list_(pa.int64()))]),
    "ranking+weights": pa.schema(
        [
            ("prompt", MESSAGES),
            ("completions", pa.list_(MESSAGES)),
            ("ranks", pa.list_(pa.int64())),
            ("pairs", PAIRS),
        ]
    ),
    "consensus": pa.schema(
        [
            ("prompt", MESSAGES),
            ("completions", pa.list_(MESSAGES)),
            ("ranks", pa.list_(pa.int64())),
            ("pairs", PAIRS),
            ("annotators", pa.int64()),
        ]
    ),
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
    """A binary file that keeps a running SHA-256 and byte count of what is written. Hashing and
    writing happen on a thread of their own (both release the GIL), one block behind the caller,
    so the caller can make the next block meanwhile; blocks land in order."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-writer")
        self._pending: Future | None = None

    def write(self, data) -> int:
        self._wait()
        self._pending = self._pool.submit(self._write_now, data)
        return len(data)

    def _write_now(self, data) -> None:
        self.sha256.update(data)
        self.bytes += len(data)
        self._file.write(data)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown()
            self._file.close()


def json_line(row: dict) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode()


class JsonlWriter:
    def __init__(self, path: Path, schema_name: str):
        self._out = _HashingFile(path)
        self._buffer: list[bytes] = []
        self.rows = 0

    def write(self, row: dict) -> None:
        self._buffer.append(json_line(row))
        self.rows += 1
        if len(self._buffer) >= 2000:
            self._flush()

    def write_lines(self, data: bytes, rows: int) -> None:
        """`rows` JSON Lines, each ending in a newline, already in `json_line`'s format."""
        self._flush()
        self._out.write(data)
        self.rows += rows

    def _flush(self) -> None:
        if self._buffer:
            self._out.write(b"".join(self._buffer))
            self._buffer.clear()

    def close(self) -> dict:
        self._flush()
        self._out.close()
        return {"sha256": self._out.sha256.hexdigest(), "bytes": self._out.bytes}


class ParquetWriter:
    BATCH_ROWS = 5000
    BATCH_BYTES = 8 << 20

    def __init__(self, path: Path, schema_name: str):
        self._path = path
        self._schema = SCHEMAS[schema_name]
        self._writer = pq.ParquetWriter(path, self._schema, compression="zstd")
        self._batch: list[dict] = []
        self._lines: list[bytes] = []
        self._lines_bytes = 0
        self.rows = 0

    def write(self, row: dict) -> None:
        self._flush_lines()
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= self.BATCH_ROWS:
            self._flush()

    def write_lines(self, data: bytes, rows: int) -> None:
        """JSON Lines in `json_line`'s format, parsed by Arrow's JSON reader against the schema."""
        self._flush()
        self._lines.append(data)
        self._lines_bytes += len(data)
        self.rows += rows
        if self._lines_bytes >= self.BATCH_BYTES:
            self._flush_lines()

    def write_table(self, table: pa.Table) -> None:
        """Rows already in Arrow columns, with this writer's schema."""
        self._flush()
        self._flush_lines()
        self._writer.write_table(table)
        self.rows += table.num_rows

    def _flush(self) -> None:
        if self._batch:
            self._writer.write_table(pa.Table.from_pylist(self._batch, schema=self._schema))
            self._batch.clear()

    def _flush_lines(self) -> None:
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        self._lines_bytes = 0
        table = read_json_lines(data, self._schema)
        self._writer.write_table(table.select(self._schema.names).cast(self._schema))

    def close(self) -> dict:
        self._flush()
        self._flush_lines()
        self._writer.close()
        return file_digest(self._path)


WRITERS = {"jsonl": JsonlWriter, "parquet": ParquetWriter}


def read_json_lines(data: bytes, schema: pa.Schema) -> pa.Table:
    """JSON Lines parsed by Arrow against `schema`, in 1 MB blocks parsed in parallel (a longer
    line, e.g. a prompt of several 100,000-character messages, is read whole: a test checks)."""
    return pa_json.read_json(
        io.BytesIO(data),
        read_options=pa_json.ReadOptions(block_size=1 << 20),
        parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )


def file_digest(path: Path) -> dict:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return {"sha256": sha.hexdigest(), "bytes": size}
