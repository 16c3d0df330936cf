"""The intro's prompt and the benchmark's measure of what the intro adds to the question."""

from __future__ import annotations

import re

from benchmarks.intro_words import added_words, first_prompt
from serving.answer import INTRO_PREFIX, intro_prompt


def test_the_prompt_ends_on_the_question_and_the_primed_reply() -> None:
    prompt = intro_prompt("Un  concert\nde jazz ?")
    assert prompt.endswith(f"Question : Un concert de jazz ?\nRéponse : {INTRO_PREFIX}")


def test_the_prompt_gives_no_count_and_its_examples_state_none() -> None:
    """Nothing in it depends on the search (ADR 0009), so no example may show a number its
    question did not ask (a count, a date): the model would copy it as a fact."""
    prompt = intro_prompt("Un concert ?")
    assert "Sélection" not in prompt
    pairs = re.findall(r"Question : (.*)\nRéponse : (Voici .*)\n", prompt)
    assert len(pairs) >= 3
    for question, reply in pairs:
        assert set(re.findall(r"\d+", reply)) <= set(re.findall(r"\d+", question)), reply


def test_added_words_are_those_neither_asked_nor_stock() -> None:
    question = "Un concert à Paris ?"
    assert added_words(question, "Voici des concerts à Paris.") == []
    assert added_words(question, "Voici quelques idées de sorties à Paris.") == []
    assert added_words(question, "Voici des concerts à Paris pour ce soir.") == [
        "ce",
        "pour",
        "soir",
    ]
    assert "5" not in first_prompt(question, 4) and "Sélection : 4" in first_prompt(question, 4)
