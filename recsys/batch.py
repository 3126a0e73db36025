"""Batch recommendations: top-K for many users at once, and the streamed export of a whole run.

:func:`top_k_rows` (from :mod:`recsys.topk`) is the one ranking rule shared with :meth:`Recommender.recommend` (through
:func:`recsys.models.rerank.mmr_rerank` at diversity 0): highest score first, ties by the lower item
index, ``-inf`` / NaN never chosen. :func:`recommend_batch` applies it to a block of users with each
user's known (training) items masked, the same mask ``recommend`` uses. :func:`export_recommendations`
walks every user in chunks and writes one Parquet row group (or CSV block) per chunk to a temporary file
beside the target, renamed at the end: memory holds one chunk, and a killed export never leaves a half
file under the final name.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import temp_prefix
from .topk import top_k_rows

Progress = Callable[[str, int, int], None]
MAX_K = int(np.iinfo(np.int16).max)  # ranks are stored as int16


def seen_block_mask(model: Any, user_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row positions, item indices) of the users' training items, the pairs ``recommend`` masks."""
    if model.seen is None or len(user_rows) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    block = model.seen[np.asarray(user_rows, dtype=np.int64)].tocsr()
    positions = np.repeat(np.arange(len(user_rows)), np.diff(block.indptr))
    return positions, block.indices.astype(np.int64)


def recommend_batch(
    model: Any,
    user_rows: Sequence[int] | np.ndarray,
    k: int,
    exclude_seen: bool = True,
    exposure: Any = None,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ``(items [n, k'], scores [n, k'])`` for user rows, as :meth:`Recommender.recommend` ranks them
    at diversity 0 without groups (known items masked when ``exclude_seen``); a row with fewer than ``k``
    rankable items is padded with item -1 / score ``-inf``.

    ``exposure``: exposure-aware re-ranking of every row, either ``(membership, target, strength)`` (as
    ``recommend`` takes it) or a :class:`recsys.models.rerank.ExposureBalancer` to keep across calls. Either
    way the rows are ranked one after the other with the group's leftover slots carried from one user's list
    to the next (a target of 0.2 slots per list gets a slot in about every fifth list), not balanced per list
    as a single ``recommend`` is. Strength 0 is the plain ranking. ``keep`` (``[n_items]`` bool): only those items
    are ranked (``recommend``'s keep-mask filter; e.g. the items still in the catalogue), and never one the
    catalogue marked as not for sale (:meth:`Recommender.for_sale`)."""
    rows = np.asarray(user_rows, dtype=np.int64)
    scores = np.asarray(model.score(rows), dtype=np.float64)
    keep = model.for_sale() if keep is None else model.for_sale() & np.asarray(keep, dtype=bool)
    scores[:, ~keep] = -np.inf
    if exclude_seen:
        positions, items = seen_block_mask(model, rows)
        scores[positions, items] = -np.inf
    if exposure is None:
        return top_k_rows(scores, k)
    from .models.rerank import ExposureBalancer

    balancer = exposure if isinstance(exposure, ExposureBalancer) else ExposureBalancer(*exposure)
    if balancer.strength <= 0:  # the plain ranking, counted so that the balancer's share stays right
        items, values = top_k_rows(scores, k)
        for row in items:
            balancer.update(row)
        return items, values
    kk = int(min(max(k, 0), scores.shape[1]))
    items = np.full((len(rows), kk), -1, dtype=np.int64)
    values = np.full((len(rows), kk), -np.inf, dtype=np.float64)
    for r in range(len(rows)):
        top = balancer.rerank(scores[r], kk)
        items[r, : len(top)] = top
        values[r, : len(top)] = scores[r, top]
    return items, values


@dataclass
class ExportSummary:
    path: Path
    users: int
    rows: int
    k: int
    chunks: int
    chunk_size: int
    format: str
    seconds: float
    columns: list[str] = field(default_factory=list)
    exposure: dict[str, float] | None = None  # with exposure re-ranking: target, strength, share of the slots

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": str(self.path),
            "users": self.users,
            "rows": self.rows,
            "k": self.k,
            "chunks": self.chunks,
            "chunk_size": self.chunk_size,
            "format": self.format,
            "seconds": round(self.seconds, 3),
            "columns": self.columns,
        }
        if self.exposure is not None:
            out["exposure"] = self.exposure
        return out


def share_columns(model: Any) -> list[str]:
    return [f"share_{m}" for m in list(model.modalities)]


def _chunk_frames(
    model: Any,
    user_rows: np.ndarray,
    k: int,
    chunk_size: int,
    shares: bool,
    exclude_seen: bool,
    balancer: Any = None,
    keep: np.ndarray | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    user_ids = np.asarray(model.user_ids).astype(str)
    item_ids = np.asarray(model.item_ids).astype(str)
    for start in range(0, len(user_rows), chunk_size):
        rows = user_rows[start : start + chunk_size]
        items, scores = recommend_batch(model, rows, k, exclude_seen, exposure=balancer, keep=keep)
        valid = items >= 0
        counts = valid.sum(axis=1)
        ranks = np.tile(np.arange(1, items.shape[1] + 1, dtype=np.int16), (len(rows), 1))
        columns = {
            "user_id": np.repeat(user_ids[rows], counts),
            "rank": ranks[valid],
            "item_id": item_ids[items[valid]],
            "score": scores[valid].astype(np.float32),
        }
        if shares:
            modalities = list(model.modalities)
            block = np.zeros((int(counts.sum()), len(modalities)), dtype=np.float32)
            at = 0
            for row, row_items, count in zip(rows, items, counts):
                if count:
                    parts = model.explain_scores(int(row), row_items[:count].tolist())
                    if parts.get("shares") is not None:
                        block[at : at + count] = np.asarray(parts["shares"], dtype=np.float32)
                at += count
            for m, name in enumerate(share_columns(model)):
                columns[name] = block[:, m]
        yield columns


def _arrow_schema(names: list[str]) -> Any:
    import pyarrow as pa

    types = {"user_id": pa.string(), "rank": pa.int16(), "item_id": pa.string(), "score": pa.float32()}
    return pa.schema([(name, types.get(name, pa.float32())) for name in names])


class _ParquetSink:
    def __init__(self, path: Path, names: list[str]):
        import pyarrow.parquet as pq

        self.schema = _arrow_schema(names)
        self.writer = pq.ParquetWriter(str(path), self.schema)

    def write(self, columns: dict[str, np.ndarray]) -> None:
        import pyarrow as pa

        self.writer.write_table(pa.Table.from_pydict(columns, schema=self.schema))  # one row group per chunk

    def close(self) -> None:
        self.writer.close()


class _CsvSink:
    def __init__(self, path: Path, names: list[str]):
        self.handle = open(path, "w", encoding="utf-8", newline="")
        self.header = True

    def write(self, columns: dict[str, np.ndarray]) -> None:
        import pandas as pd

        from .export import spreadsheet_safe

        spreadsheet_safe(pd.DataFrame(columns)).to_csv(self.handle, header=self.header, index=False)
        self.header = False

    def close(self) -> None:
        self.handle.close()


def export_format(out: str | Path) -> str:
    """ "csv" for a ``.csv`` file, "parquet" for ``.parquet`` / ``.pq`` or no suffix; anything else is refused
    (a Parquet file named recs.xlsx opens in no spreadsheet)."""
    suffix = Path(out).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in ("", ".parquet", ".pq"):
        return "parquet"
    raise ValueError(
        f"{Path(out).name}: an export is written as Parquet (.parquet) or CSV (.csv), not {suffix}; a spreadsheet "
        f"opens the CSV ({Path(out).with_suffix('.csv').name})"
    )


def export_recommendations(
    model: Any,
    out: str | os.PathLike,
    k: int = 50,
    user_rows: Sequence[int] | None = None,
    chunk_size: int = 2048,
    shares: bool = False,
    exclude_seen: bool = True,
    progress: Progress | None = None,
    exposure: tuple[np.ndarray, float, float] | None = None,
    keep: np.ndarray | None = None,
) -> ExportSummary:
    """Write top-``k`` for ``user_rows`` (default: every user of the model) to ``out`` (``.csv``: CSV with
    spreadsheet-safe text; anything else: Parquet), ``chunk_size`` users at a time. Columns: ``user_id``,
    ``rank`` (int16, from 1), ``item_id``, ``score`` (float32) and, with ``shares`` (models that explain by
    modality), ``share_<modality>``. Written to a temporary file beside ``out``, renamed at the end.
    ``exposure = (membership, target, strength)``: exposure-aware re-ranking with the group's leftover
    carried from each user's list to the next, over every chunk (:func:`recommend_batch`); the summary then
    gives the group's share of the exported slots. ``keep``: only those items are exported (see
    :func:`recommend_batch`)."""
    if not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, not {k}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk size must be at least 1, not {chunk_size}")
    if shares and not (hasattr(model, "explains_by_modality") and model.explains_by_modality()):
        raise ValueError(
            f"modality shares need a model that explains by modality (the attention fusion model); "
            f"this one is {getattr(model, 'name', type(model).__name__)}"
        )
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give a file name such as {out / 'recs.parquet'}")
    fmt = export_format(out)
    # every user, in the order of their ids (a model's rows follow its users' histories, see users_in_history_order)
    rows = (
        np.argsort(np.asarray(model.user_ids).astype(str), kind="stable").astype(np.int64)
        if user_rows is None
        else np.asarray(user_rows, dtype=np.int64)
    )
    names = ["user_id", "rank", "item_id", "score"] + (share_columns(model) if shares else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f"{temp_prefix(out)}{uuid.uuid4().hex[:8]}.tmp"
    balancer = None
    if exposure is not None:
        from .models.rerank import ExposureBalancer

        membership, target, strength = exposure
        if len(membership) != model.n_items:
            raise ValueError(f"the exposure membership has {len(membership)} items, the model {model.n_items}")
        balancer = ExposureBalancer(membership, target, strength)
    started = time.perf_counter()
    total_rows = chunks = 0
    sink = None
    try:
        sink = (_CsvSink if fmt == "csv" else _ParquetSink)(tmp, names)
        if progress:
            progress("export", 0, len(rows))
        for columns in _chunk_frames(model, rows, int(k), int(chunk_size), shares, exclude_seen, balancer, keep):
            sink.write(columns)
            chunks += 1
            total_rows += len(columns["user_id"])
            if progress:
                progress("export", min(chunks * int(chunk_size), len(rows)), len(rows))
        sink.close()
        sink = None
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        if sink is not None:
            try:
                sink.close()
            except Exception:  # the first failure is the one to report
                pass
        tmp.unlink(missing_ok=True)
        raise
    return ExportSummary(
        path=out.resolve(),
        users=len(rows),
        rows=total_rows,
        k=int(k),
        chunks=chunks,
        chunk_size=int(chunk_size),
        format=fmt,
        seconds=time.perf_counter() - started,
        columns=names,
        exposure=None
        if balancer is None
        else {"target": balancer.target, "strength": balancer.strength, "share": balancer.share},
    )


def read_user_ids(path: str | os.PathLike) -> list[str]:
    """User ids from a text file, one a line (blank lines skipped; a first line ``user_id`` is a header);
    repeats kept once, in file order."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8-sig").splitlines()]
    lines = [line for line in lines if line]
    if lines and lines[0] == "user_id":
        lines = lines[1:]
    return list(dict.fromkeys(lines))


__all__ = ["top_k_rows", "recommend_batch", "export_format", "export_recommendations", "read_user_ids", "ExportSummary"]
