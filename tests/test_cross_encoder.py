"""The cross-encoder reranker's plumbing, with a tiny BERT cross-encoder built here.

The gpu profile loads a real reranker (e.g. BAAI/bge-reranker-v2-m3) from a local
directory; no such model can be downloaded here, so the `tiny_cross_encoder` fixture
(tests/tiny_models.py) builds a 1-layer BERT with random weights, loaded through
sentence-transformers' `CrossEncoder`. It checks the wiring (pairs in, scores out,
ordering, context features), not ranking quality.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from retrieval.query import parse_query
from retrieval.records import Event
from retrieval.rerank import CrossEncoderReranker, ScoredEvent
from retrieval.settings import RetrievalSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2025, 6, 4, 15, 30, tzinfo=PARIS)


def candidate(uid: str, title: str, distance: float = 1.0) -> ScoredEvent:
    start = NOW + timedelta(days=1)
    event = Event(uid=uid, source="t", title=title, start=start, end=start + timedelta(hours=2))
    return ScoredEvent(event=event, score=0.0, distance_km=distance)


def test_cross_encoder_orders_by_its_own_scores(tiny_cross_encoder: Path) -> None:
    reranker = CrossEncoderReranker(str(tiny_cross_encoder), RetrievalSettings(), device="cpu")
    parsed = parse_query("concert de jazz", NOW, [])
    candidates = [
        candidate(str(i), t)
        for i, t in enumerate(["concert jazz", "atelier poterie", "expo orgue"])
    ]
    ranked = reranker.rerank(parsed, candidates)
    predicted = reranker.model.predict([(parsed.text, c.event.passage()) for c in candidates])
    expected = [candidates[i].event.uid for i in sorted(range(3), key=lambda i: -predicted[i])]
    assert [c.event.uid for c in ranked] == expected
    assert all("cross_encoder" in c.features for c in ranked)
    assert (
        ranked[0].features["cross_encoder"] == 1.0 and ranked[-1].features["cross_encoder"] == 0.0
    )


def test_cross_encoder_keeps_place_features(tiny_cross_encoder: Path) -> None:
    settings = RetrievalSettings(weight_geo=100.0)
    reranker = CrossEncoderReranker(str(tiny_cross_encoder), settings, device="cpu")
    parsed = parse_query("concert près de moi", NOW, [], location=(48.86, 2.34))
    far, near = candidate("far", "concert jazz", 9.0), candidate("near", "atelier poterie", 0.2)
    assert [c.event.uid for c in reranker.rerank(parsed, [far, near])] == ["near", "far"]


def test_the_reranker_is_chosen_by_configuration(tiny_cross_encoder: Path) -> None:
    from retrieval.build import ConfigError, open_reranker
    from retrieval.rerank import FeatureReranker

    assert isinstance(open_reranker(RetrievalSettings()), FeatureReranker)
    chosen = open_reranker(
        RetrievalSettings(
            reranker="cross-encoder", reranker_model=str(tiny_cross_encoder), reranker_device="cpu"
        )
    )
    assert isinstance(chosen, CrossEncoderReranker)
    with pytest.raises(ConfigError, match="PULS_RERANKER_MODEL"):
        open_reranker(RetrievalSettings(reranker="cross-encoder"))


def test_the_configured_dtype_loads_the_weights_in_it(tiny_cross_encoder: Path) -> None:
    """float16 reranked 2.5-3x faster than float32 on an H100 (docs/adr/0008); here on the
    CPU, bfloat16 weights must load as such and score close to float32's."""
    import torch

    from retrieval.build import open_reranker

    def reranker(dtype: str | None) -> CrossEncoderReranker:
        settings = RetrievalSettings(
            reranker="cross-encoder",
            reranker_model=str(tiny_cross_encoder),
            reranker_device="cpu",
            reranker_dtype=dtype,
        )
        chosen = open_reranker(settings)
        assert isinstance(chosen, CrossEncoderReranker)
        return chosen

    full, half = reranker(None), reranker("bfloat16")
    assert {p.dtype for p in full.model.parameters()} == {torch.float32}
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    pairs = [("concert de jazz", "concert jazz"), ("concert de jazz", "expo orgue")]
    full_scores, half_scores = full.model.predict(pairs), half.model.predict(pairs)
    assert half_scores == pytest.approx(full_scores, abs=0.05)


class RecordingModel:
    """The tiny cross-encoder, keeping the pairs it was asked to score."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.pairs: list[tuple[str, str]] = []

    def predict(self, pairs: list[tuple[str, str]]) -> list[float]:
        self.pairs += pairs
        return list(self.model.predict(pairs))  # type: ignore[attr-defined]


def test_only_the_feature_rankings_head_is_cross_encoded(tiny_cross_encoder: Path) -> None:
    """`reranker_depth` bounds the GPU work: the best candidates by features are scored by
    the model, the others follow them in feature order."""
    from retrieval.rerank import FeatureReranker, load_cross_encoder

    settings = RetrievalSettings(reranker_depth=2, weight_geo=100.0)
    model = RecordingModel(load_cross_encoder(str(tiny_cross_encoder), "cpu", None))
    reranker = CrossEncoderReranker(model, settings)
    parsed = parse_query("concert près de moi", NOW, [], location=(48.86, 2.34))
    titles = ["concert jazz", "atelier poterie", "expo orgue", "concert orgue"]
    candidates = [
        candidate(f"d{d}", t, distance=d) for d, t in zip([4, 1, 3, 2], titles, strict=True)
    ]
    by_features = [c.event.uid for c in FeatureReranker(settings).rerank(parsed, candidates)]
    assert by_features == ["d1", "d2", "d3", "d4"]  # nearest first, geo dominating
    ranked = [c.event.uid for c in reranker.rerank(parsed, candidates)]
    assert sorted(model.pairs) == sorted(
        (parsed.text, c.event.passage()) for c in candidates if c.event.uid in {"d1", "d2"}
    )
    assert sorted(ranked[:2]) == ["d1", "d2"] and ranked[2:] == ["d3", "d4"]
