"""Streaming sessions: utterances, manifests (hypothesis beside reference), summaries, sweeps.

:func:`stream_manifest` streams a recipe manifest, as ``denseshift-speech stream MODEL
--manifest CSV`` (which ``make demo`` runs after training and export) does::

    from denseshift_speech.streaming import stream_manifest
    stream_manifest("results/demo/conformer_ds3/model.dsp",
                    "results/demo/conformer_ds3/test-clean.csv", limit=5)

Decoding: the best the model file supports unless told otherwise
(:func:`.lm_search.default_decoding`: the LM-fused beam search when the run's LM sits
beside the model file, else greedy CTC); summaries say which, and why.
"""
from __future__ import annotations

import contextlib
import csv
import os
import sys
import time

import torch

from .. import kernels
from .audio import AudioError, read_audio
from .decoder import (DEFAULT_CHUNK_SIZE, DEFAULT_LEFT_CONTEXT, StreamBatch, StreamingDecoder,
                      StreamStats, _percentile, decode_full)
from .lm_search import DecodingChoice, StreamingLMSearch, default_decoding
from .model import StreamingModel, load_model

AUTO = "auto"  # lm_search="auto": the best decoding the model file supports


def resolve_lm_search(model: StreamingModel, lm_search=AUTO, decoding: DecodingChoice | None = None):
    """(LM search or None, :class:`~.lm_search.DecodingChoice`) for ``lm_search``:

    * ``"auto"``: :func:`~.lm_search.default_decoding` of the model file (the LM beside it
      when there is one, else greedy);
    * None: greedy;
    * a :class:`~.lm_search.StreamingLMSearch`: that search.

    ``decoding``: the choice that built ``lm_search`` (the CLI's), kept as the label.
    """
    if isinstance(lm_search, str):
        if lm_search != AUTO:
            raise ValueError(f"lm_search must be {AUTO!r}, None or a StreamingLMSearch, got {lm_search!r}")
        decoding = default_decoding(model.path, model.hparams)
        lm_search = (StreamingLMSearch.for_model(model, decoding.lm_path)
                     if decoding.decoding == "beam_lm" else None)
    if decoding is None:
        decoding = (DecodingChoice("greedy", None, "greedy: no LM search given") if lm_search is None
                    else DecodingChoice("beam_lm", None, "beam_lm: the LM search given"))
    return lm_search, decoding


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edit distance, reference word count), by jiwer."""
    import jiwer
    r, h = ref.split(), hyp.split()
    if not r:  # jiwer refuses an empty reference: every hypothesis word is an insertion
        return len(h), 0
    out = jiwer.process_words(" ".join(r), " ".join(h) if h else "")
    return out.substitutions + out.deletions + out.insertions, len(r)


@contextlib.contextmanager
def count_packed_calls(model: StreamingModel):
    """Count forward calls of the packed modules that run the ``denseshift`` op."""
    counter = {"calls": 0}

    def hook(*_):
        counter["calls"] += 1

    handles = [m.register_forward_hook(hook) for m in model.packed_modules()]
    try:
        yield counter
    finally:
        for h in handles:
            h.remove()


def piece_bounds(decoder: StreamingDecoder, n: int, piece_samples: int | None = None):
    """Boundaries of the pieces a waveform of ``n`` samples is fed in.

    Default: one chunk per piece, shifted by the front-end's lookahead (a few ms), so each
    piece completes exactly one encoder chunk and nothing waits for the next piece.
    """
    if piece_samples:
        return list(range(0, n, int(piece_samples))) + [n]
    step, first = decoder.chunk_samples, decoder.chunk_samples + decoder.lookahead_samples
    return [0] + list(range(first, n, step)) + [n]


def stream_samples(decoder: StreamingDecoder, samples: torch.Tensor, realtime: bool = False,
                   on_update=None, piece_samples: int | None = None):
    """Feed a waveform in pieces (see :func:`piece_bounds`), paced in real time if asked.

    Returns the final Hypothesis; ``decoder.stats`` holds the timings.
    """
    decoder.reset()
    sr = decoder.model.sample_rate
    samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
    bounds = piece_bounds(decoder, samples.numel(), piece_samples)
    t0 = time.perf_counter()
    for a, b in zip(bounds, bounds[1:]):
        if realtime:  # the piece is complete once its last sample has "arrived"
            delay = t0 + b / sr - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        hyp = decoder.accept(samples[a:b])
        if hyp is not None and on_update is not None:
            on_update(hyp)
    hyp = decoder.finish()
    if on_update is not None:
        on_update(hyp)
    return hyp


def stream_many(model: StreamingModel, waves, streams: int = 4,
                chunk_size: int = DEFAULT_CHUNK_SIZE,
                left_context_chunks: int = DEFAULT_LEFT_CONTEXT, lm_search=None,
                endpoint=None, on_final=None):
    """Decode ``waves`` (mono float32 at the model's rate) on ``streams`` concurrent streams
    of one :class:`~.decoder.StreamBatch`: each stream takes the next waveform when its own
    ends, every stream advances one chunk-sized piece per round (see :func:`piece_bounds`),
    and the chunks ready in a round are encoded in one call.

    ``lm_search``: None (greedy) or a :class:`~.lm_search.StreamingLMSearch`, forked per
    stream.  ``on_final(index, hypothesis, decoder)`` is called as each waveform ends.
    Returns ``(hypotheses, stats, batch)``: the final :class:`~.decoder.Hypothesis` and the
    :class:`~.decoder.StreamStats` of each waveform, in input order, and the batch (its
    ``stats``: encoder calls, chunks, throughput of all streams together).
    """
    waves = [torch.as_tensor(w, dtype=torch.float32).reshape(-1) for w in waves]
    n = max(1, min(int(streams), len(waves)))
    searches = None if lm_search is None else [lm_search] + [lm_search.fork() for _ in range(n - 1)]
    batch = StreamBatch.create(model, n, chunk_size, left_context_chunks, lm_searches=searches,
                               endpoint=endpoint)
    todo = list(range(len(waves)))[::-1]
    item, bounds, pos = [None] * n, [None] * n, [0] * n
    hyps, stats = [None] * len(waves), [None] * len(waves)

    def start(lane):
        item[lane] = None
        if todo:
            i = todo.pop()
            batch.reset(lane)
            item[lane], pos[lane] = i, 0
            bounds[lane] = piece_bounds(batch.decoders[lane], waves[i].numel())

    for lane in range(n):
        start(lane)
    while any(i is not None for i in item):
        pieces = [None] * n
        for lane, i in enumerate(item):
            if i is not None and pos[lane] < len(bounds[lane]) - 1:
                a, b = bounds[lane][pos[lane]], bounds[lane][pos[lane] + 1]
                pieces[lane] = waves[i][a:b]
                pos[lane] += 1
        if any(p is not None for p in pieces):
            batch.accept(pieces)
        ending = [lane for lane, i in enumerate(item)
                  if i is not None and pos[lane] >= len(bounds[lane]) - 1]
        if not ending:
            continue
        for lane, hyp in batch.finish(ending).items():
            i, dec = item[lane], batch.decoders[lane]
            hyps[i], stats[i] = hyp, dec.stats
            if on_final is not None:
                on_final(i, hyp, dec)
            start(lane)
    return hyps, stats, batch


def merge_stats(stats_list) -> StreamStats:
    out = StreamStats()
    for s in stats_list:
        out.audio_seconds += s.audio_seconds
        out.compute_seconds += s.compute_seconds
        out.chunks += s.chunks
        out.chunk_latencies += s.chunk_latencies
        out.nonfinite_samples += s.nonfinite_samples
        out.nonfinite_events += s.nonfinite_events
        out.first_partial_delays += s.first_partial_delays
        out.final_delays += s.final_delays
    return out


def summary(model: StreamingModel, decoder: StreamingDecoder, stats: StreamStats,
            packed_calls: int, decoding: DecodingChoice | None = None) -> dict:
    """The end-of-stream summary (what ``--json`` prints, plus the transcript(s)).

    ``decoding``: how it was decoded and why (default: from ``decoder.lm_search``)."""
    native_ran = bool(kernels.native_available() and packed_calls > 0)
    _, decoding = resolve_lm_search(model, decoder.lm_search, decoding)
    return {
        "model": model.path,
        "model_file_bytes": model.file_bytes,
        "fp32_equivalent_bytes": model.fp32_equivalent_bytes,
        "size_ratio_vs_fp32": round(model.fp32_equivalent_bytes / max(model.file_bytes, 1), 2),
        "packed": model.packed, "bits": model.bits,
        "compute": "fp32 (packed weights decoded)" if model.fp32 else
                   ("denseshift packed" if model.packed else "fp32"),
        "native_kernel": native_ran,
        "native_kernel_available": kernels.native_available(),
        "kernel_isa": kernels.selected_isa() if native_ran else None,
        "packed_kernel_calls": int(packed_calls),
        "threads": torch.get_num_threads(),
        "chunk_size_frames": decoder.chunk_size,
        "chunk_seconds": round(decoder.chunk_seconds, 4),
        "lookahead_ms": round(1000 * decoder.lookahead_samples / model.sample_rate, 2),
        "left_context_chunks": decoder.left_context_chunks,
        "audio_seconds": round(stats.audio_seconds, 3),
        "compute_seconds": round(stats.compute_seconds, 4),
        "rtf": round(stats.rtf, 5),
        "chunks": stats.chunks,
        "chunk_latency_ms_median": round(1000 * _percentile(stats.chunk_latencies, 50), 2),
        "chunk_latency_ms_p95": round(1000 * _percentile(stats.chunk_latencies, 95), 2),
        # start of speech -> first partial; end of speech -> final text (median, p95)
        "first_partial_ms_median": round(1000 * _percentile(stats.first_partial_delays, 50), 1),
        "first_partial_ms_p95": round(1000 * _percentile(stats.first_partial_delays, 95), 1),
        "final_ms_median": round(1000 * _percentile(stats.final_delays, 50), 1),
        "final_ms_p95": round(1000 * _percentile(stats.final_delays, 95), 1),
        "nonfinite_samples_zeroed": stats.nonfinite_samples,
        "decoding": decoding.decoding,
        "decoding_reason": decoding.reason,
        "lm_arpa": decoding.lm_path,
    }


def batch_summary(model: StreamingModel, batch: StreamBatch, stats_list, packed_calls: int,
                  decoding: DecodingChoice | None = None) -> dict:
    """:func:`summary` of several streams served by one :class:`~.decoder.StreamBatch`,
    plus ``streams``, its encoder calls and the throughput of all streams together."""
    s = summary(model, batch.decoders[0], merge_stats(stats_list), packed_calls, decoding)
    b = batch.stats
    s.update({"streams": len(batch), "encoder_calls": b.encoder_calls, "batched_chunks": b.chunks,
              "chunks_per_call": round(b.chunks_per_call, 3),
              "throughput_x_realtime": round(b.throughput, 2)})
    return s


def format_summary(s: dict) -> str:
    size = f"{s['model_file_bytes'] / 1e6:.2f} MB"
    if s["packed"]:
        size += (f" (packed {'/'.join(map(str, s['bits']))}-bit; the same weights as fp32: "
                 f"{s['fp32_equivalent_bytes'] / 1e6:.2f} MB, {s['size_ratio_vs_fp32']:.1f}x)")
    native = "yes" if s["native_kernel"] else "no"
    if s["native_kernel"]:
        native += f" ({s['kernel_isa']}, {s['packed_kernel_calls']} packed-layer calls)"
    elif s["packed"] and not s["native_kernel_available"]:
        native += " (native op not built: pure-PyTorch reference ran)"
    elif not s["packed"] or s["compute"].startswith("fp32"):
        native += " (fp32 compute)"
    lines = [
        "summary:",
        f"  audio            {s['audio_seconds']:.2f} s",
        f"  compute          {s['compute_seconds']:.3f} s on {s['threads']} thread(s)",
        f"  real-time factor {s['rtf']:.4f}",
        f"  chunk            {s['chunk_size_frames']} frames = {s['chunk_seconds'] * 1000:.0f} ms "
        f"(+{s['lookahead_ms']:.0f} ms lookahead), left context {s['left_context_chunks']} chunks",
        f"  chunk latency    median {s['chunk_latency_ms_median']:.1f} ms, "
        f"p95 {s['chunk_latency_ms_p95']:.1f} ms ({s['chunks']} chunks)",
        f"  first partial    median {s['first_partial_ms_median']:.0f} ms, p95 "
        f"{s['first_partial_ms_p95']:.0f} ms after the start of speech",
        f"  final text       median {s['final_ms_median']:.0f} ms, p95 {s['final_ms_p95']:.0f} ms "
        f"after the end of speech",
        f"  model file       {size}",
        f"  compute path     {s['compute']}",
        f"  native kernel    {native}",
    ]
    if s.get("streams", 1) > 1:
        lines.append(f"  streams          {s['streams']} at once: {s['encoder_calls']} encoder calls "
                     f"for {s['batched_chunks']} chunks ({s['chunks_per_call']:.2f} per call), "
                     f"{s['throughput_x_realtime']:.1f}x real time for all streams together")
    if s.get("decoding_reason"):
        lines.append(f"  decoding         {s['decoding_reason']}")
    if s.get("nonfinite_samples_zeroed"):
        lines.append(f"  non-finite input {s['nonfinite_samples_zeroed']} samples zeroed")
    if "wer_stream" in s:
        lines.append(f"  WER streaming    {s['wer_stream']:.2f}% over {s['ref_words']} words")
    if s.get("wer_full") is not None:
        ratio = s.get("wer_ratio")
        lines.append(f"  WER full context {s['wer_full']:.2f}%"
                     + (f" (streaming/full = {ratio:.2f})" if ratio is not None else ""))
    return "\n".join(lines)


def read_manifest(path, limit: int | None = None) -> list:
    """Rows (dict with ID, wav, wrd) of a recipe CSV (ID,duration,wav,spk_id,wrd)."""
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such manifest")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"ID", "wav"} - set(reader.fieldnames or [])
        if missing:
            raise AudioError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))} "
                             "(expected ID,duration,wav,spk_id,wrd)")
        rows = list(reader)
    return rows[:limit] if limit else rows


def full_context_text(model, samples, lm_search=None) -> str:
    """The recipe's offline decoding of one utterance (non-finite samples zeroed): greedy
    CTC, or the LM-fused beam search of ``lm_search`` over the whole utterance."""
    tokens, _, logits = decode_full(model, torch.nan_to_num(samples, 0.0, 0.0, 0.0),
                                    floor="utterance")
    if lm_search is not None:
        return offline_lm_text(lm_search, logits)
    return model.tokenizer.decode_ids(tokens) if tokens else ""


def offline_lm_text(lm_search, logits) -> str:
    """LM-fused prefix beam search over a whole utterance's CTC logits (1, T, V)."""
    lp = torch.log_softmax(logits.float(), -1)[0].cpu().numpy()
    hyps = lm_search.searcher.decode_log_probs(lp, lp.shape[0])
    return hyps[0].text if hyps else ""


def stream_manifest(model, manifest, limit: int | None = 5,
                    chunk_size: int = DEFAULT_CHUNK_SIZE,
                    left_context_chunks: int = DEFAULT_LEFT_CONTEXT, fp32: bool = False,
                    full_context: bool = True, realtime: bool = False, threads: int | None = 1,
                    out="stdout", show_partials: bool = False, lm_search=AUTO,
                    decoding: DecodingChoice | None = None, streams: int = 1) -> dict:
    """Stream ``limit`` utterances of a recipe manifest; print hypothesis beside reference.

    ``streams`` > 1: the utterances are decoded that many at a time as concurrent streams
    (:func:`stream_many`; no partials shown), and the summary has the throughput.

    ``lm_search``: ``"auto"`` (the best decoding the model file supports: the LM beside
    it, else greedy), None (greedy) or a :class:`~.lm_search.StreamingLMSearch`; the
    full-context reference is decoded with the same search.  ``decoding``: the
    :class:`~.lm_search.DecodingChoice` behind a given search, for the summary.

    ``model``: a path or a loaded :class:`StreamingModel`.  ``out``: a text stream,
    ``"stdout"`` or None (silent).  ``full_context``: also decode
    each utterance offline with full context (the recipe's evaluation) for the WER
    comparison.  Returns the summary dict with ``utterances`` and WERs (percent).
    """
    out = sys.stdout if out == "stdout" else out   # None: silent
    if threads:
        torch.set_num_threads(int(threads))
    if not isinstance(model, StreamingModel):
        model = load_model(model, fp32=fp32)
    rows = read_manifest(os.fspath(manifest), limit)
    lm_search, decoding = resolve_lm_search(model, lm_search, decoding)
    dec = StreamingDecoder(model, chunk_size, left_context_chunks, lm_search=lm_search)
    utts, stats, errs, errs_full, n_ref = [], [], 0, 0, 0

    def say(text=""):
        if out is not None:
            print(text, file=out, flush=True)

    say(f"streaming {len(rows)} utterance(s) of {manifest} with {model.path} "
        f"(chunk {dec.chunk_size} frames = {dec.chunk_seconds * 1000:.0f} ms, "
        f"left context {dec.left_context_chunks} chunks)")
    batch = None
    with count_packed_calls(model) as calls:
        audios = [read_audio(row["wav"], model.sample_rate) for row in rows] if streams > 1 else None
        if audios is not None:
            hyps, stats, batch = stream_many(model, [a.samples for a in audios], streams, chunk_size,
                                             left_context_chunks, lm_search)
        for k, row in enumerate(rows):
            if audios is None:
                audio = read_audio(row["wav"], model.sample_rate)
                on_update = (lambda h: say(f"    ... {h.display()}")) if show_partials else None
                hyp = stream_samples(dec, audio.samples, realtime, on_update)
                stats.append(dec.stats)
            else:
                audio, hyp = audios[k], hyps[k]
            ref = row.get("wrd", "") or ""
            e, n = word_errors(ref, hyp.text)
            errs += e
            n_ref += n
            utt = {"id": row["ID"], "wav": row["wav"], "ref": ref, "hyp": hyp.text,
                   "word_errors": e, "ref_words": n, "audio_seconds": round(audio.seconds, 3),
                   "notes": audio.notes}
            say(f"  {row['ID']}")
            say(f"    REF : {ref}")
            say(f"    HYP : {hyp.text}")
            if full_context:
                full = full_context_text(model, audio.samples, lm_search)
                ef, _ = word_errors(ref, full)
                errs_full += ef
                utt["hyp_full_context"] = full
                say(f"    FULL: {full}")
            utts.append(utt)
    if batch is not None:
        s = batch_summary(model, batch, stats, calls["calls"], decoding)
    else:
        s = summary(model, dec, merge_stats(stats), calls["calls"], decoding)
    s["utterances"] = utts
    s["ref_words"] = n_ref
    s["wer_stream"] = round(100.0 * errs / max(n_ref, 1), 2)
    s["wer_full"] = round(100.0 * errs_full / max(n_ref, 1), 2) if full_context else None
    if full_context:
        s["wer_ratio"] = round(s["wer_stream"] / s["wer_full"], 3) if s["wer_full"] else None
    say(format_summary(s))
    return s


def sweep(model: StreamingModel, manifest, configs, limit: int | None = None,
          out="stdout", lm_search=AUTO) -> list:
    """Latency/WER trade-off: one row per (chunk_size, left_context_chunks) config.

    Full-context WER (the recipe's offline decoding) is computed once, as the reference;
    both sides decode as ``lm_search`` says (see :func:`stream_manifest`).
    """
    out = sys.stdout if out == "stdout" else out   # None: silent
    lm_search, _ = resolve_lm_search(model, lm_search)
    rows = read_manifest(os.fspath(manifest), limit)
    audios = [(r, read_audio(r["wav"], model.sample_rate)) for r in rows]
    n_ref = errs_full = 0
    for r, a in audios:
        e, n = word_errors(r.get("wrd", ""), full_context_text(model, a.samples, lm_search))
        errs_full += e
        n_ref += n
    wer_full = 100.0 * errs_full / max(n_ref, 1)
    results = []
    for chunk, left in configs:
        dec = StreamingDecoder(model, chunk, left, lm_search=lm_search)
        errs, stats = 0, []
        for r, a in audios:
            hyp = stream_samples(dec, a.samples)
            stats.append(dec.stats)
            errs += word_errors(r.get("wrd", ""), hyp.text)[0]
        st = merge_stats(stats)
        wer = 100.0 * errs / max(n_ref, 1)
        row = {"chunk_size_frames": chunk, "left_context_chunks": left,
               "decoding": "greedy" if lm_search is None else "beam_lm",
               "chunk_ms": round(1000 * dec.chunk_seconds), "wer_stream": round(wer, 2),
               "wer_full": round(wer_full, 2),
               "wer_ratio": round(wer / wer_full, 3) if wer_full else None,
               "rtf": round(st.rtf, 5),
               "chunk_latency_ms_median": round(1000 * _percentile(st.chunk_latencies, 50), 2),
               "chunk_latency_ms_p95": round(1000 * _percentile(st.chunk_latencies, 95), 2),
               "first_partial_ms_median": round(1000 * _percentile(st.first_partial_delays, 50), 1),
               "final_ms_median": round(1000 * _percentile(st.final_delays, 50), 1)}
        results.append(row)
        if out is not None:
            print(f"chunk {chunk:3d} ({row['chunk_ms']:4d} ms) left {left:2d}: WER stream "
                  f"{row['wer_stream']:6.2f}% full {row['wer_full']:6.2f}% ratio {row['wer_ratio']} "
                  f"RTF {row['rtf']:.4f} latency median {row['chunk_latency_ms_median']:.1f} ms "
                  f"p95 {row['chunk_latency_ms_p95']:.1f} ms, first partial {row['first_partial_ms_median']:.0f} ms, "
                  f"final {row['final_ms_median']:.0f} ms", file=out, flush=True)
    return results


def compare_fp32(path, manifest, limit: int | None = 10, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 left_context_chunks: int = DEFAULT_LEFT_CONTEXT, repeats: int = 3,
                 out="stdout") -> dict:
    """Packed DenseShift vs its fp32 compute twin, side by side in one run.

    Both models stream the same utterances, alternating model per utterance and repeat
    (so background load hits both alike); per-chunk compute is the minimum over repeats
    of each utterance's compute seconds per chunk, then summed over utterances.
    """
    out = sys.stdout if out == "stdout" else out
    packed = load_model(path)
    twin = load_model(path, fp32=True)
    rows = read_manifest(os.fspath(manifest), limit)
    audios = [read_audio(r["wav"], packed.sample_rate).samples for r in rows]
    decs = {"packed": StreamingDecoder(packed, chunk_size, left_context_chunks),
            "fp32": StreamingDecoder(twin, chunk_size, left_context_chunks)}
    best = {k: [float("inf")] * len(audios) for k in decs}
    chunks = [0] * len(audios)
    audio_s = sum(a.numel() for a in audios) / packed.sample_rate
    lat = {k: [] for k in decs}
    same = True
    with count_packed_calls(packed) as calls:
        for _ in range(max(1, repeats)):
            for i, a in enumerate(audios):
                texts = {}
                for name, dec in decs.items():
                    texts[name] = stream_samples(dec, a).tokens
                    best[name][i] = min(best[name][i], dec.stats.compute_seconds)
                    chunks[i] = dec.stats.chunks
                    lat[name] += dec.stats.chunk_latencies
                same &= texts["packed"] == texts["fp32"]
    n_chunks = sum(chunks)
    res = {"model": packed.path, "utterances": len(audios), "audio_seconds": round(audio_s, 3),
           "chunks": n_chunks, "threads": torch.get_num_threads(),
           "chunk_size_frames": chunk_size, "left_context_chunks": left_context_chunks,
           "native_kernel": bool(kernels.native_available() and calls["calls"] > 0),
           "same_tokens": bool(same)}
    for name in decs:
        comp = sum(best[name])
        res[f"{name}_compute_seconds"] = round(comp, 4)
        res[f"{name}_rtf"] = round(comp / audio_s, 5)
        res[f"{name}_ms_per_chunk"] = round(1000 * comp / max(n_chunks, 1), 3)
        res[f"{name}_latency_ms_median"] = round(1000 * _percentile(lat[name], 50), 2)
        res[f"{name}_latency_ms_p95"] = round(1000 * _percentile(lat[name], 95), 2)
    res["packed_over_fp32_compute"] = round(res["packed_compute_seconds"]
                                            / max(res["fp32_compute_seconds"], 1e-9), 3)
    res["model_file_bytes"] = packed.file_bytes
    res["fp32_equivalent_bytes"] = packed.fp32_equivalent_bytes
    if out is not None:
        print(f"packed vs fp32 twin over {len(audios)} utterances ({audio_s:.1f} s, {n_chunks} chunks, "
              f"{res['threads']} thread(s)): packed {res['packed_ms_per_chunk']:.2f} ms/chunk "
              f"(RTF {res['packed_rtf']:.4f}), fp32 {res['fp32_ms_per_chunk']:.2f} ms/chunk "
              f"(RTF {res['fp32_rtf']:.4f}), ratio packed/fp32 {res['packed_over_fp32_compute']:.3f}, "
              f"same tokens: {same}, native kernel: {res['native_kernel']}", file=out, flush=True)
    return res
