"""Pieces of retrieval with known answers: metrics, places, relaxations, feature reranking."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from retrieval.evaluate import ndcg_at, precision_at, recall_at
from retrieval.places import areas, department_of
from retrieval.query import parse_query
from retrieval.records import Event
from retrieval.rerank import FeatureReranker, ScoredEvent, dedupe, is_job_session
from retrieval.search import candidate_filter, relaxations
from retrieval.settings import RetrievalSettings

pytestmark = pytest.mark.unit
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2025, 6, 4, 15, 30, tzinfo=PARIS)


def event(uid: str, title: str = "Concert", days: float = 1, **kw: object) -> Event:
    start = NOW + timedelta(days=days)
    return Event(
        uid=uid, source="t", title=title, start=start, end=start + timedelta(hours=2), **kw
    )  # type: ignore[arg-type]


def test_metrics_match_hand_computed_values() -> None:
    relevant = {"a": 2, "b": 1, "c": 1}
    ranked = ["a", "x", "b", "y", "z"]
    dcg = 3 / math.log2(2) + 1 / math.log2(4)
    idcg = 3 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranked, relevant) == pytest.approx(dcg / idcg)
    assert recall_at(ranked, relevant) == pytest.approx(2 / 3)
    assert precision_at(ranked, relevant) == pytest.approx(2 / 5)
    # more than 10 relevant: recall is out of 10
    many = {str(i): 1 for i in range(20)}
    assert recall_at([str(i) for i in range(10)], many) == 1.0
    assert ndcg_at([], relevant) == 0.0


def test_departments_and_regions_from_iso_3166() -> None:
    assert areas()["drome"].departments == ("26",)
    assert {"51", "67", "68", "10"} <= set(areas()["grand est"].departments)
    assert department_of("", "Le Village - 26240 Claveyson") == "26"
    assert department_of("75015") == "75"
    assert department_of("", "no postal code") == ""


def test_query_areas_become_department_filters() -> None:
    parsed = parse_query("Ateliers vélo dans la Drôme au printemps 2025", NOW, ["Valence"])
    assert parsed.departments == ("26",) and parsed.terms == ("ateli", "velo")
    assert 'dept in ["26"]' in candidate_filter(parsed).expr()
    region = parse_query("Concerts d'orgue dans le Grand Est", NOW, [])
    assert "51" in region.departments and region.terms == ("concert", "orgu")


def test_near_a_named_city_uses_the_location_when_given() -> None:
    with_location = parse_query("Balades nature près de Die", NOW, ["Die"], location=(44.75, 5.37))
    assert with_location.near is not None and with_location.cities == ()
    without = parse_query("Balades nature près de Die", NOW, ["Die"])
    assert without.near is None and without.cities == ("Die",)


def test_relaxation_order_radius_then_time_then_theme() -> None:
    parsed = parse_query("jazz près de moi ce soir", NOW, [], location=(48.86, 2.34))
    steps = [applied for _, applied in relaxations(parsed)]
    assert steps[0] == ()
    assert steps[1] == ("rayon élargi à 20 km",)
    assert steps[2][-1] == "rayon élargi à 40 km"
    assert steps[3][-1] == "période élargie aux dates à venir"
    assert steps[4][-1] == "thème ignoré"


def test_feature_reranker_prefers_title_match_closeness_and_culture() -> None:
    parsed = parse_query("concert de jazz près de moi", NOW, [], location=(48.86, 2.34))
    settings = RetrievalSettings()

    def jazz(uid: str, km: float, **kw: object) -> ScoredEvent:
        return ScoredEvent(
            event(uid, "Concert de jazz", **kw), 0, dense=0.8, bm25=5, lexical=1.0, distance_km=km
        )

    off = ScoredEvent(event("off", "Atelier poterie"), 0, dense=0.85, distance_km=0.5)
    job = jazz("job", 0.5, description="Information collective France Travail")
    candidates = [jazz("far", 9), jazz("near", 0.5), off, job]
    ranked = [c.event.uid for c in FeatureReranker(settings).rerank(parsed, candidates)]
    assert ranked[:2] == ["near", "far"]
    assert ranked.index("job") > ranked.index("far")


def test_job_sessions_are_recognised() -> None:
    assert is_job_session(event("1", "Job dating France Travail"))
    assert is_job_session(event("2", "Information collective", description="recrutement"))
    assert not is_job_session(event("3", "Concert d'orgue"))


def test_dedupe_keeps_the_best_of_identical_events() -> None:
    a = ScoredEvent(event("1", "Jazz à la Cité", city="Paris"), 2.0)
    b = ScoredEvent(event("2", "JAZZ À LA CITÉ", city="Paris"), 1.0)
    c = ScoredEvent(event("3", "Jazz à la Cité", city="Paris", days=8), 0.5)
    assert [s.event.uid for s in dedupe([a, b, c])] == ["1", "3"]
