"""Retrieval quality on a graded query set, with the metrics of shared/eval/README.md.

Per query, then averaged over queries:
- NDCG@10: gains 2^grade - 1, log2(rank + 1) discount, ideal = the graded relevant set sorted.
- Recall@10: relevant uids found in the top 10 / min(number relevant, 10).
- P@5: relevant uids in the top 5 / 5.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from retrieval.search import Mode, Retriever

CUTOFF = 10
PRECISION_AT = 5
MODES: tuple[Mode, ...] = ("hybrid", "bm25", "dense")


class EvalSetError(ValueError):
    """The query file is missing, not JSON lines, or lacks a required field."""


@dataclass(frozen=True)
class EvalQuery:
    id: str
    query: str
    now: datetime
    relevant: dict[str, int]
    location: tuple[float, float] | None = None


def ndcg_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int = CUTOFF) -> float:
    dcg = sum(
        (2 ** relevant.get(uid, 0) - 1) / math.log2(i + 2) for i, uid in enumerate(ranked[:k])
    )
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2**grade - 1) / math.log2(i + 2) for i, grade in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int = CUTOFF) -> float:
    wanted = {uid for uid, grade in relevant.items() if grade > 0}
    if not wanted:
        return 0.0
    return len(wanted & set(ranked[:k])) / min(len(wanted), k)


def precision_at(
    ranked: Sequence[str], relevant: Mapping[str, int], k: int = PRECISION_AT
) -> float:
    return sum(1 for uid in ranked[:k] if relevant.get(uid, 0) > 0) / k


def metrics(ranked: Sequence[str], relevant: Mapping[str, int]) -> dict[str, float]:
    return {
        "ndcg@10": ndcg_at(ranked, relevant),
        "recall@10": recall_at(ranked, relevant),
        "p@5": precision_at(ranked, relevant),
    }


def load_queries(path: Path) -> list[EvalQuery]:
    """Read the JSON-lines query set; each line needs id, query, now and relevant."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalSetError(f"{path}: {exc.strerror or exc}") from exc
    queries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            location = row.get("location")
            queries.append(
                EvalQuery(
                    id=str(row["id"]),
                    query=row["query"],
                    now=datetime.fromisoformat(row["now"]),
                    relevant={str(k): int(v) for k, v in row["relevant"].items()},
                    location=(location["lat"], location["lon"]) if location else None,
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EvalSetError(f"{path}: line {number}: {type(exc).__name__}: {exc}") from exc
    return queries


def _mean(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    keys = ("ndcg@10", "recall@10", "p@5")
    return {k: round(sum(r[k] for r in rows) / len(rows), 4) if rows else 0.0 for k in keys}


def evaluate(retriever: Retriever, queries: Sequence[EvalQuery]) -> dict[str, Any]:
    """The hybrid system and the BM25-only and dense-only baselines, side by side."""
    per_mode: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    per_query = []
    for q in queries:
        row: dict[str, Any] = {"id": q.id, "query": q.query, "n_relevant": len(q.relevant)}
        for mode in MODES:
            result = retriever.search(q.query, q.now, q.location, top_k=CUTOFF, mode=mode)
            ranked = [s.event.uid for s in result.events]
            scores = metrics(ranked, q.relevant)
            per_mode[mode].append(scores)
            if mode == "hybrid":
                row.update({k: round(v, 4) for k, v in scores.items()})
                row["ranked"] = ranked
                row["relaxed"] = list(result.relaxed)
            else:
                row[mode] = {k: round(v, 4) for k, v in scores.items()}
        per_query.append(row)
    return {
        "n": len(queries),
        "metrics": _mean(per_mode["hybrid"]),
        "baselines": {"bm25": _mean(per_mode["bm25"]), "dense": _mean(per_mode["dense"])},
        "per_query": per_query,
    }
