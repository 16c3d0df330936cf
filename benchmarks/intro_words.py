"""How often the model's intro says what the question did not: the shipped prompt beside the
first one (which also gave the number of events), on the same questions, in one run.

    python -m benchmarks.intro_words [--dev ../shared/eval/retrieval-dev.jsonl] [--limit 50]

Gemma-3-270M is a base model that copies its few-shot examples. An intro word that is in
neither the question nor the stock words of an intro ("voici", "des", "sorties", ...) is an
addition: a flourish copied from an example ("pour faire le plein d'images"), a time or a
place the question did not ask ("pour ce soir"), a theme it did not name. Counted on the
analysed words (folded, stemmed: `retrieval.text.terms`), with the stack's sampling at
temperature 0. A proxy, not a judge: a correct paraphrase with a new word counts too.
JSON goes to benchmarks/results/intro-words-<utc>.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.load.prompts import DEFAULT_PROMPTS, load_prompts
from retrieval.text import terms
from serving.answer import INTRO_PREFIX, INTRO_STOP, intro_prompt
from serving.llm.llama_cpp import packaged_gguf

RESULTS = Path(__file__).resolve().parent / "results"
DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "retrieval-dev.jsonl"
MAX_TOKENS = 40
STOCK = frozenset(
    terms("voici des quelques idées idée sorties sortie événements événement chez vous")
)
# The prompt before ADR 0009 (the number of events in the prompt; 5, as most pages have).
FIRST_FEW_SHOT = """Question : Une exposition de photographie à Lyon ce week-end ?
Sélection : 3 événements
Réponse : Voici 3 expositions de photographie à Lyon ce week-end, pour faire le plein d'images.

Question : Un atelier pour enfants à Nantes demain ?
Sélection : 2 événements
Réponse : Voici 2 ateliers pour les enfants à Nantes demain, parfaits pour une sortie en famille.

Question : Que faire ce soir près de moi ?
Sélection : 4 événements
Réponse : Voici 4 idées de sorties près de chez vous pour ce soir.

"""


def first_prompt(question: str, count: int = 5) -> str:
    question = " ".join(question.split())
    head = f"Question : {question}\nSélection : {count} événements\nRéponse : {INTRO_PREFIX}"
    return FIRST_FEW_SHOT + head


def added_words(question: str, intro: str) -> list[str]:
    """The intro's analysed words that are neither the question's nor stock intro words
    (nor the number of events the first prompt gave)."""
    return sorted(set(terms(intro)) - set(terms(question)) - STOCK - {"5"})


def _questions(dev: Path | None, limit: int) -> list[str]:
    questions = [p.query for p in load_prompts(DEFAULT_PROMPTS)]
    if dev is not None and dev.exists():
        with dev.open(encoding="utf-8") as f:
            questions += [json.loads(line)["query"] for line in f if line.strip()][:limit]
    return [" ".join(q.split()) for q in questions]


def measure(questions: list[str], prompts: dict[str, Callable[[str], str]]) -> dict[str, Any]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(packaged_gguf()), n_ctx=2048, logits_all=False, verbose=False)
    report: dict[str, Any] = {}
    for name, make in prompts.items():
        rows = []
        for question in questions:
            out = llm.create_completion(make(question), max_tokens=MAX_TOKENS, temperature=0.0,
                                        seed=1, stop=list(INTRO_STOP))  # fmt: skip
            intro = INTRO_PREFIX + out["choices"][0]["text"]
            rows.append({"question": question, "intro": intro,
                         "added": added_words(question, intro)})  # fmt: skip
        report[name] = {
            "questions": len(rows),
            "with_added_words": sum(bool(r["added"]) for r in rows),
            "added_words": sum(len(r["added"]) for r in rows),
            "rows": rows,
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=DEV, help="Extra questions (JSON Lines).")
    parser.add_argument("--limit", type=int, default=50, help="Questions taken from --dev.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    questions = _questions(args.dev, args.limit)
    measured = measure(questions, {"shipped": intro_prompt, "first": first_prompt})
    report = {"benchmark": "intro_words", "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "model": "packaged Gemma-3-270M Q4_K_M", "temperature": 0.0, **measured}  # fmt: skip
    out = args.out or RESULTS / f"intro-words-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    summary = {k: {m: v[m] for m in ("questions", "with_added_words", "added_words")}
               for k, v in measured.items()}  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
