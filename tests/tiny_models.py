"""Tiny BERT checkpoints built inside the tests, for the gpu profile's model plumbing.

Production loads real models (BAAI/bge-m3, BAAI/bge-reranker-v2-m3) from a local directory;
none can be downloaded here. These helpers write a 1-layer BERT with random weights and a
vocabulary of a few words, saved like a hub checkpoint, so sentence-transformers loads it
from disk through the same code path. They test the wiring, never model quality.
"""

from __future__ import annotations

from pathlib import Path

WORDS = "query passage concert jazz atelier poterie paris expo orgue de a le la".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_tiny_bert(directory: Path, hidden_size: int, num_labels: int | None = None) -> Path:
    """A BERT encoder (`num_labels=None`) or a sequence classifier with a tokenizer."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        BertTokenizer,
    )

    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL, *WORDS]), "utf-8")
    BertTokenizer(str(vocab)).save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=num_labels or 1,
    )
    model = BertModel(config) if num_labels is None else BertForSequenceClassification(config)
    model.save_pretrained(directory)
    return directory


def save_tiny_sentence_transformer(base: Path, directory: Path, dim: int) -> Path:
    """A sentence-transformers directory: the tiny BERT plus mean pooling, `dim` wide."""
    from sentence_transformers import SentenceTransformer, models

    word = models.Transformer(str(save_tiny_bert(base, hidden_size=dim)))
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(directory))
    return directory
