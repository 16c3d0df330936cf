"""How an answer is made: facts rendered from records, a short sentence from the model.

Gemma-3-270M is a base model: it continues text, it does not follow instructions, and it
invents freely. So it only writes the opening sentence, primed by few-shot examples and by
"Voici"; every title, date, venue and link comes from the retrieved records.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from retrieval.search import ScoredEvent, SearchResult

PARIS = ZoneInfo("Europe/Paris")
INTRO_PREFIX = "Voici"
INTRO_STOP = ("\n", "Question :")

# The intro is told the question only, never the events or their number (ADR 0009), so it
# can start while the search runs (PULS_INTRO_DURING_SEARCH). Plain paraphrases: a base
# model copies its examples' flourishes ("pour faire le plein d'images") into most answers,
# and the last example's words into answers it cannot phrase ("Voici des concerts près de
# chez vous." for stars): benchmarks/intro_words.py.
_FEW_SHOT = """Question : Un concert près de moi ?
Réponse : Voici des concerts près de chez vous.

Question : Un atelier pour enfants à Nantes demain ?
Réponse : Voici des ateliers pour enfants à Nantes demain.

Question : Que faire à Bordeaux samedi soir ?
Réponse : Voici quelques idées de sorties à Bordeaux pour samedi soir.

Question : Une randonnée dans les Vosges en mai 2026 ?
Réponse : Voici des randonnées dans les Vosges en mai 2026.

Question : Une exposition de photographie à Lyon ce week-end ?
Réponse : Voici des expositions de photographie à Lyon ce week-end.

"""

_DAYS = ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")
_MONTHS = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.",
           "nov.", "déc.")  # fmt: skip


def intro_prompt(question: str) -> str:
    """The few-shot completion prompt; the model continues after "Réponse : Voici".

    The question alone: the search's results would only have given it their number, and
    without them the engine can be asked while the search runs."""
    question = " ".join(question.split())
    return f"{_FEW_SHOT}Question : {question}\nRéponse : {INTRO_PREFIX}"


def format_when(start: datetime, end: datetime) -> str:
    """'sam. 21 juin 2025, 21:00' or 'du 3 mai 2025 au 28 sept. 2025', in Paris time."""
    s, e = start.astimezone(PARIS), end.astimezone(PARIS)
    day = f"{_DAYS[s.weekday()]} {s.day} {_MONTHS[s.month - 1]} {s.year}"
    if s.date() == e.date():
        return f"{day}, {s:%H:%M}"
    return f"du {s.day} {_MONTHS[s.month - 1]} {s.year} au {e.day} {_MONTHS[e.month - 1]} {e.year}"


def render_event(rank: int, scored: ScoredEvent) -> str:
    """One markdown list line: title, when, where, distance, link."""
    event = scored.event
    place = ", ".join(p for p in (event.venue, event.city) if p)
    parts = [f"{rank}. **{event.title}** — {format_when(event.start, event.end)}"]
    if place:
        parts.append(place)
    if scored.distance_km is not None:
        parts.append(f"à {scored.distance_km:.1f} km".replace(".", ","))
    line = " · ".join(parts)
    return f"{line}\n   {event.url}" if event.url else line


def render_events(result: SearchResult) -> str:
    """The list of events, preceded by what was relaxed to find them, if anything."""
    lines = [render_event(i, s) for i, s in enumerate(result.events, start=1)]
    if result.relaxed:
        note = "Rien ne correspondait exactement ; recherche élargie : " + ", ".join(result.relaxed)
        lines.insert(0, f"_{note}._\n")
    return "\n".join(lines)


def no_result_message(result: SearchResult) -> str:
    """A deterministic answer when nothing matched: say what was searched, invent nothing."""
    parsed = result.parsed
    places = [*parsed.cities, *parsed.areas]
    where = f" à {', '.join(places)}" if places else ""
    if parsed.near is not None:
        where = f" à moins de {parsed.near.radius_km:g} km"
    return (
        f"Je n'ai trouvé aucun événement correspondant{where} ({parsed.window.label}). "
        "Essayez d'élargir la période ou le lieu."
    )
