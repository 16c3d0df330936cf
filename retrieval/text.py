"""French text normalisation shared by ingest (keys) and query parsing (matching)."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[a-z0-9]+")


def fold(text: str) -> str:
    """Lowercase, no accents, punctuation to spaces: 'Romans-sur-Isère' → 'romans sur isere'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORD.findall(bare))


def stem(word: str) -> str:
    """A light French plural stripper: 'concerts' → 'concert', 'festivaux' → 'festival'.

    Milvus Lite's BM25 analyzer does no French stemming; this is enough to match the
    singular and plural forms users type against titles and keywords.
    """
    if len(word) > 4 and word.endswith("aux"):
        return word[:-3] + "al"
    if len(word) > 3 and word[-1] in "sx" and word[-2] != word[-1]:
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Folded, stemmed words of `text`, in order."""
    return [stem(w) for w in fold(text).split()]
