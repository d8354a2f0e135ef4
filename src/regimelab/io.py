"""Atomic, deterministic file output and content hashing.

Every artifact is first written to a temporary file in the target folder and
then moved into place with :func:`os.replace`, so an interrupted stage leaves
either the old file or nothing, never half a file. Writers avoid anything that
varies between runs (timestamps, random names inside the file), so the same
data gives the same bytes and ``dvc repro`` stays a no-op.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` on success.

    The parent folder is created. On any exception the temporary file is
    removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def replace_dir(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Move the finished folder ``source`` onto ``target``, replacing what was there.

    For outputs that a library writes file by file (DVCLive's curves): they are
    written into ``source`` next to ``target`` and swapped in at the end, so an
    interrupted stage never leaves a mix of old and new files at ``target``.
    """
    source, target = Path(source), Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    if old.exists():
        shutil.rmtree(old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(obj: Any) -> Any:
    """Convert numpy and pandas scalars so ``json`` can write them; NaN becomes null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, pd.Timedelta):
        return str(obj)
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj


def json_text(obj: Any) -> str:
    """``obj`` as indented, valid JSON: numpy scalars converted, NaN and inf as null."""
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as indented JSON (numpy scalars converted, NaN as null), atomically."""
    text = json_text(obj)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a frame to Parquet, atomically and byte-for-byte reproducibly.

    The index is dropped (every table here carries its keys as columns) and
    the file is written in one row group with zstd compression.
    """
    table = pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=max(len(df), 1))


def read_parquet(path: str | os.PathLike[str], columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_parquet`."""
    return pd.read_parquet(path, columns=columns)


def write_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a frame to CSV (gzip when the name ends in ``.gz``), atomically."""
    target = Path(path)
    data = df.to_csv(index=False).encode("utf-8")
    with atomic_path(target) as tmp:
        if target.suffix == ".gz":
            # No name and mtime=0 in the gzip header: the same frame gives the same bytes.
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                       mtime=0) as gz:
                gz.write(data)
        else:
            tmp.write_bytes(data)


def write_npz(arrays: dict[str, np.ndarray], path: str | os.PathLike[str]) -> None:
    """Write arrays as an ``.npz`` that ``np.load(..., allow_pickle=False)`` reads, atomically.

    ``np.savez`` stamps each member with the current time, so the same arrays
    would give different bytes; here every member has a fixed date. Object
    arrays are refused: an artifact must load without unpickling.
    """
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            array = np.asarray(arrays[name])
            if array.dtype.hasobject:
                raise TypeError(f"{name}: object arrays cannot be saved without pickle")
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue())


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an ``.npz`` without allowing pickle."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
