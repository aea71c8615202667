"""`denseshift-speech spot`: keyword spotting with an exported keyword spotter on a CPU.

    denseshift-speech spot results/kws_ds3/model.dsp --wav yes.wav     # a clip: class, posterior
    denseshift-speech spot MODEL --wav kitchen.wav                     # a stream: detections
    denseshift-speech spot MODEL --manifest results/kws_ds3/test.csv --limit 20
    denseshift-speech spot MODEL --folder speech_commands_v0.02_test --limit 50
    denseshift-speech spot MODEL --mic --seconds 30
    denseshift-speech spot MODEL --evaluate speech_commands_v0.02_test \\
        --negatives data/synth_speech_commands --plot sweep.png

Audio of at most one clip (the model's 1 s) is classified as one clip: the class and its
posterior.  Longer audio (and --mic) is a stream: a 1-second window moves by --hop, its
posteriors are averaged over --smooth, a keyword fires when that reaches --threshold,
then that keyword does not fire again for --refractory; each detection prints with its time (the end of the
window that fired) and score.  Features are kept across hops (each 10 ms frame computed
once); see denseshift_speech/streaming/spotter.py.

--evaluate DIR (a Speech Commands-layout folder): hit rate on DIR's clips joined with gaps
(keywords between unknown words and silence), false alarms per hour on the keyword-free
audio (DIR's _unknown_ / _silence_ / non-keyword clips, and those of each --negatives
folder with the held-out part of its _background_noise_), a threshold sweep (table; PNG
with --plot), the real-time factor and the model file's size.

Input policy (as `stream`): other sample rates are resampled to the model's rate,
multi-channel audio is downmixed (mean), empty files are refused, silent files are
classified and flagged, non-finite samples are zeroed and reported.
"""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers):
    from ..integrations.speechbrain.report import SPOTTING_FILE
    from ..streaming.defaults import (DEFAULT_SPOT_HOP, DEFAULT_SPOT_REFRACTORY,
                                      DEFAULT_SPOT_SMOOTH, DEFAULT_SPOT_THRESHOLD)
    p = subparsers.add_parser(
        "spot", help="keyword spotting with an exported keyword spotter: clips, streams, "
                     "microphone, evaluation", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="keyword-spotter file (model.dsp of recipes/speech_commands)")
    src = p.add_argument_group("input (one of)")
    src.add_argument("--wav", action="append", default=[], metavar="FILE",
                     help="audio file (any soundfile format); repeat for several")
    src.add_argument("--manifest", metavar="CSV",
                     help="recipe CSV (ID,duration,wav[,start,stop][,command]): each row")
    src.add_argument("--folder", metavar="DIR",
                     help="Speech Commands-layout folder: each clip, with its folder's class")
    src.add_argument("--mic", action="store_true",
                     help="microphone input (needs the sounddevice package and a microphone)")
    src.add_argument("--evaluate", metavar="DIR",
                     help="hit rate, false alarms per hour, threshold sweep and cost on a "
                          "Speech Commands-layout folder")
    p.add_argument("--hop", type=float, default=DEFAULT_SPOT_HOP, metavar="SEC",
                   help=f"window step (default {DEFAULT_SPOT_HOP})")
    p.add_argument("--smooth", type=float, default=DEFAULT_SPOT_SMOOTH, metavar="SEC",
                   help=f"posterior averaging span (default {DEFAULT_SPOT_SMOOTH}; 0: none)")
    p.add_argument("--threshold", type=float, default=DEFAULT_SPOT_THRESHOLD,
                   help=f"smoothed keyword posterior that fires (default {DEFAULT_SPOT_THRESHOLD})")
    p.add_argument("--refractory", type=float, default=DEFAULT_SPOT_REFRACTORY, metavar="SEC",
                   help=f"a keyword does not fire again this long after it fired (default "
                        f"{DEFAULT_SPOT_REFRACTORY})")
    p.add_argument("--limit", type=int, default=None,
                   help="clips of --manifest / --folder (default 20), of each --evaluate "
                        "stream (default all); 0: all")
    p.add_argument("--negatives", action="append", default=[], metavar="DIR",
                   help="--evaluate: another Speech Commands-layout folder whose non-keyword "
                        "clips and background noise join the keyword-free stream (repeatable)")
    p.add_argument("--thresholds", metavar="T,T,...",
                   help="--evaluate: thresholds of the sweep (default 0.05 to 0.995)")
    p.add_argument("--plot", metavar="PNG", help="--evaluate: write the sweep as a PNG plot")
    p.add_argument("--save", metavar="JSON",
                   help="--evaluate: also write the result to this file (the report shows a "
                        f"{SPOTTING_FILE} beside a run's results.json)")
    p.add_argument("--seed", type=int, default=0, help="--evaluate: order of the joined clips")
    p.add_argument("--seconds", type=float, default=None, help="--mic: stop after this long")
    p.add_argument("--realtime", action="store_true",
                   help="pace file input in real time (default: as fast as possible)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--kernel-path", choices=["int8", "exact", "shift"], default=None,
                   help="packed kernel path (default: the one recorded in the model file)")
    p.add_argument("--fp32", action="store_true",
                   help="decode the packed weights to dense fp32 layers (the compute twin)")
    p.add_argument("--json", action="store_true", help="print only one JSON object")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..errors import UserError
    sources = sum(map(bool, (args.wav, args.manifest, args.folder, args.mic, args.evaluate)))
    if sources != 1:
        raise UserError("give exactly one input: --wav FILE (repeatable), --manifest CSV, "
                        "--folder DIR, --mic or --evaluate DIR")
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.limit is not None and args.limit < 0:
        raise UserError(f"--limit must be >= 0, got {args.limit}")
    if args.limit is None and (args.manifest or args.folder):
        args.limit = 20
    if (args.negatives or args.thresholds or args.plot or args.save) and not args.evaluate:
        raise UserError("--negatives, --thresholds, --plot and --save need --evaluate")
    if args.mic:
        from .stream import _check_mic
        _check_mic()
    import torch
    torch.set_num_threads(args.threads)
    from ..streaming.audio import AudioError
    from ..streaming.evaluate import model_task
    from ..streaming.kws import load_kws_model
    from ..streaming.model import ModelFileError
    try:
        if model_task(args.model) == "asr":
            raise UserError(f"{args.model}: an ASR model (conformer CTC), not a keyword "
                            "spotter; `spot` runs keyword spotters (recipes/speech_commands), "
                            "ASR models run with `denseshift-speech stream`")
        model = load_kws_model(args.model, fp32=args.fp32, kernel_path=args.kernel_path)
    except ModelFileError as err:
        raise UserError(str(err)) from None
    settings = _settings(args, model)
    runner = (_run_evaluate if args.evaluate else _run_mic if args.mic else
              _run_folder if args.folder else _run_manifest if args.manifest else _run_files)
    try:
        return runner(args, model, settings)
    except AudioError as err:
        raise UserError(str(err)) from None


def _settings(args, model):
    from ..errors import UserError
    from ..streaming.spotter import SpotSettings
    try:
        return SpotSettings(args.hop, args.smooth, args.threshold, args.refractory).check(
            model.clip_samples / model.sample_rate)
    except ValueError as err:
        raise UserError(f"--hop/--smooth/--threshold/--refractory: {err}") from None


# --------------------------------------------------------------------- output ----------

class LiveSpotView:
    """What a person watching a stream sees: on a terminal, the current window's best class
    on one line redrawn in place, each detection printed above it; elsewhere (a pipe, a
    log) one line per detection."""

    def __init__(self, out, labels, tty: bool | None = None):
        self.out, self.labels = out, labels
        self.tty = out.isatty() if tty is None else tty

    def window(self, end_time, probs, smoothed):
        if not self.tty:
            return
        best = int(smoothed.argmax())
        bar = "#" * int(20 * float(smoothed[best]))
        self.out.write(f"\r\033[K  {end_time:8.2f} s  {self.labels[best]:>10s} "
                       f"{float(smoothed[best]):.2f} {bar}")
        self.out.flush()

    def detection(self, d):
        prefix = "\r\033[K" if self.tty else ""
        self.out.write(f"{prefix}  [{d.time:8.2f} s] {d.label} ({d.score:.3f})\n")
        self.out.flush()

    def close(self):
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()


def _describe(model, stats, calls) -> dict:
    from .. import kernels
    from ..streaming.evaluate import describe_model
    out = describe_model(model)
    out["native_kernel"] = bool(kernels.native_available() and calls > 0)
    out["packed_kernel_calls"] = int(calls)
    out["sizes"] = dict(model.sizes)
    return {**out, **stats}


def _weights(sizes: dict) -> str:
    """The packed weights against the same weights in fp32."""
    q, f32 = sizes.get("quantized_packed_bytes", 0), sizes.get("quantized_fp32_bytes", 0)
    return (f"weights {q:,} bytes packed vs {f32:,} bytes fp32, {f32 / max(q, 1):.1f}x smaller; "
            f"other tensors {sizes.get('float_bytes', 0):,} bytes")


def _format_summary(s: dict) -> str:
    size = f"{s['model_file_bytes'] / 1e3:.1f} kB"
    if s["packed"]:
        size += f" ({'/'.join(map(str, s['bits']))}-bit {_weights(s['sizes'])})"
    native = (f"yes ({s['packed_kernel_calls']} packed-layer calls)" if s["native_kernel"]
              else "no (fp32 compute)" if s["compute"].startswith("fp32") else "no")
    lines = ["summary:",
             f"  audio            {s['audio_seconds']:.2f} s",
             f"  compute          {s['compute_seconds']:.3f} s on {s['threads']} thread(s)",
             f"  real-time factor {s['rtf']:.4f}",
             f"  windows          {s['windows']} (per window median {s['window_ms_median']:.2f} "
             f"ms, p95 {s['window_ms_p95']:.2f} ms)",
             f"  model file       {size}",
             f"  compute path     {s['compute']}",
             f"  native kernel    {native}"]
    if s.get("nonfinite_samples_zeroed"):
        lines.append(f"  non-finite input {s['nonfinite_samples_zeroed']} samples zeroed")
    return "\n".join(lines)


def _note(audio):
    for note in audio.notes:
        print(f"denseshift-speech spot: note: {audio.path}: {note}", file=sys.stderr)


def _warn_nonfinite(path, stats):
    for start, n in stats.nonfinite_events:
        print(f"denseshift-speech spot: warning: {path}: {n} non-finite samples (NaN/inf) at "
              f"{start:.2f} s replaced by zeros", file=sys.stderr)


# ---------------------------------------------------------------------- modes ----------

def _clip_result(model, samples, path, seconds) -> dict:
    from ..streaming.spotter import classify_clip
    probs = classify_clip(model, samples)
    best = int(probs.argmax())
    return {"wav": path, "mode": "clip", "audio_seconds": round(seconds, 3),
            "class": model.labels[best], "posterior": round(float(probs[best]), 4),
            "posteriors": {label: round(float(p), 4) for label, p in zip(model.labels, probs)}}


def _stream_result(spotter, samples, path, seconds, args, view) -> dict:
    from ..streaming.spotter import feed
    spotter.reset()
    feed(spotter, samples, args.realtime, None if view is None else view.detection)
    for d in spotter.finish():
        if view is not None:
            view.detection(d)
    if view is not None:
        view.close()
    _warn_nonfinite(path, spotter.stats)
    return {"wav": path, "mode": "stream", "audio_seconds": round(seconds, 3),
            "detections": [d.as_dict() for d in spotter.detections],
            **{k: v for k, v in spotter.stats.as_dict().items() if k != "audio_seconds"}}


def _spot_each(args, model, settings, items) -> tuple:
    """Clip or stream result of each ``(path, samples, reference class or None)``."""
    from ..streaming.run import count_packed_calls
    from ..streaming.spotter import KeywordSpotter
    view = None if args.json else LiveSpotView(sys.stdout, model.labels)
    spotter = KeywordSpotter(model, settings, on_window=None if view is None else view.window)
    results, merged = [], _Totals()
    with count_packed_calls(model) as calls:
        for path, samples, reference in items:
            seconds = samples.numel() / model.sample_rate
            if samples.numel() <= model.clip_samples:
                res = _clip_result(model, samples, path, seconds)
                if not args.json:
                    print(f"{path} ({seconds:.2f} s): {res['class']} {res['posterior']:.3f}"
                          + (f"  (reference {reference})" if reference else ""), flush=True)
            else:
                if not args.json:
                    print(f"{path} ({seconds:.2f} s, streamed: 1 s window every "
                          f"{spotter.hop_seconds * 1000:.0f} ms)", flush=True)
                res = _stream_result(spotter, samples, path, seconds, args, view)
                merged.add(spotter.stats)
            if reference:
                res["reference"] = reference
            results.append(res)
        merged.calls = calls["calls"]
    return results, merged


class _Totals:
    """Stream statistics summed over several inputs."""

    def __init__(self):
        from ..streaming.spotter import SpotStats
        self.stats, self.calls = SpotStats(), 0

    def add(self, s):
        t = self.stats
        t.audio_seconds += s.audio_seconds
        t.compute_seconds += s.compute_seconds
        t.windows += s.windows
        t.window_latencies += s.window_latencies
        t.nonfinite_samples += s.nonfinite_samples


def _finish(args, model, settings, results, totals, extra=None) -> int:
    import dataclasses
    s = _describe(model, totals.stats.as_dict(), totals.calls)
    clips = [r for r in results if r["mode"] == "clip" and r.get("reference")]
    if clips:
        right = sum(r["class"] == r["reference"] for r in clips)
        s["clip_accuracy"] = round(100.0 * right / len(clips), 2)
    if args.json:
        print(json.dumps({**s, "settings": dataclasses.asdict(settings), "results": results,
                          **(extra or {})}))
        return 0
    if clips:
        print(f"clips: {sum(r['class'] == r['reference'] for r in clips)}/{len(clips)} right "
              f"({s['clip_accuracy']:.2f} %)")
    if totals.stats.windows:
        print(_format_summary(s))
    return 0


def _run_files(args, model, settings) -> int:
    from ..streaming.audio import read_audio
    audios = [read_audio(path, model.sample_rate) for path in args.wav]  # check all first
    for audio in audios:
        _note(audio)
    results, totals = _spot_each(args, model, settings,
                                 [(a.path, a.samples, None) for a in audios])
    for res, audio in zip(results, audios):
        res["input_notes"] = audio.notes
    return _finish(args, model, settings, results, totals)


def _manifest_items(args, model):
    """(wav, samples of the row's start:stop, reference class) per manifest row."""
    from ..streaming.audio import read_audio
    from ..streaming.evaluate import map_folder
    from ..streaming.run import read_manifest
    items = []
    for row in read_manifest(args.manifest, args.limit or None):
        audio = read_audio(row["wav"], model.sample_rate)
        _note(audio)
        scale = model.sample_rate / audio.file_sample_rate
        start = int(float(row.get("start") or 0) * scale)
        stop = int(float(row["stop"]) * scale) if row.get("stop") else audio.samples.numel()
        said = (row.get("command") or row.get("wrd") or "").strip()
        reference = map_folder(said, model.labels)[0] if said else None
        items.append((row["wav"], audio.samples[start:stop], reference))
    return items


def _run_manifest(args, model, settings) -> int:
    results, totals = _spot_each(args, model, settings, _manifest_items(args, model))
    return _finish(args, model, settings, results, totals)


def _run_folder(args, model, settings) -> int:
    from ..streaming.evaluate import kws_references, read_clips, read_eval_set, take
    found = read_eval_set(args.folder)
    clips, refs, mapping = kws_references(found, model.labels)
    picked = take(list(zip(clips, refs)), args.limit or None, clip=lambda pair: pair[0])
    waves, inputs = read_clips([c for c, _ in picked], model.sample_rate)
    if not args.json:
        for note in found.notes:
            print(f"denseshift-speech spot: note: {note}", file=sys.stderr)
    items = [(c.path, w, model.labels[r]) for (c, r), w in zip(picked, waves)]
    results, totals = _spot_each(args, model, settings, items)
    return _finish(args, model, settings, results, totals,
                   {"data": args.folder, "mapping": mapping, "input": inputs})


def _run_mic(args, model, settings) -> int:
    import time

    import sounddevice as sd
    import torch

    from ..errors import UserError
    from ..streaming.run import count_packed_calls
    from ..streaming.spotter import KeywordSpotter
    view = None if args.json else LiveSpotView(sys.stdout, model.labels)
    spotter = KeywordSpotter(model, settings, on_window=None if view is None else view.window)
    if not args.json:
        print(f"listening at {model.sample_rate} Hz for {', '.join(model.labels)} "
              "(Ctrl-C to stop)...", file=sys.stderr)
    t_end = time.monotonic() + args.seconds if args.seconds else None
    totals = _Totals()
    with count_packed_calls(model) as calls:
        try:
            with sd.InputStream(samplerate=model.sample_rate, channels=1, dtype="float32",
                                blocksize=spotter.features.hop) as stream:
                while t_end is None or time.monotonic() < t_end:
                    data, _ = stream.read(spotter.features.hop)
                    for d in spotter.accept(torch.from_numpy(data[:, 0].copy())):
                        if view is not None:
                            view.detection(d)
        except KeyboardInterrupt:
            pass
        except Exception as err:  # PortAudioError etc.
            raise UserError(f"--mic: cannot record ({err})") from None
        spotter.finish()
    if view is not None:
        view.close()
    totals.add(spotter.stats)
    totals.calls = calls["calls"]
    result = {"wav": None, "mode": "stream", "detections": [d.as_dict() for d in spotter.detections]}
    return _finish(args, model, settings, [result], totals)


# ------------------------------------------------------------------ evaluation ---------

def _thresholds(text):
    from ..errors import UserError
    from ..streaming.spotter import DEFAULT_THRESHOLDS
    if not text:
        return DEFAULT_THRESHOLDS
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        raise UserError(f"--thresholds: {text!r} is not a comma-separated list of numbers") from None
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if bad:
        raise UserError(f"--thresholds: {bad[0]} is not in (0, 1]")
    return values


def _format_evaluation(r: dict) -> str:
    kw, free, cost = r["keyword_stream"], r["keyword_free_stream"], r["cost"]
    st = r["settings"]
    lines = [
        f"keyword spotting on joined streams (threshold {st['threshold']}, smoothing "
        f"{st['smooth_seconds']} s, refractory {st['refractory_seconds']} s, hop "
        f"{r['hop_seconds'] * 1000:.0f} ms):",
        f"  hit rate            {kw['hit_rate']:.2f} % ({kw['hits']}/{kw['keywords']} keywords; "
        f"{kw['false_detections']} false and {kw['repeats']} repeated detections in "
        f"{kw['seconds'] / 60:.1f} min)",
        f"  clip accuracy       {kw['clip_accuracy']:.2f} % (the same keyword clips, each "
        "classified as one clip)",
        f"  false alarms        {free['false_alarms_per_hour']:.2f} per hour ({free['false_alarms']} "
        f"in {free['seconds'] / 60:.1f} min of keyword-free audio)",
        f"  real-time factor    {cost['rtf']:.4f} ({cost['windows']} windows, median "
        f"{cost['window_ms_median']:.2f} ms, p95 {cost['window_ms_p95']:.2f} ms, "
        f"{cost['threads']} thread(s))",
        f"  model file          {r['model_file_bytes']:,} bytes"
        + (f" ({'/'.join(map(str, r['bits']))}-bit {_weights(r['sizes'])})" if r["packed"] else "")
        + f"; compute {r['compute']}, native kernel {'yes' if r['native_kernel'] else 'no'}",
        "  per keyword         " + ", ".join(f"{k} {v['hit_rate']:.0f} %"
                                             for k, v in kw["per_keyword"].items()),
        "threshold sweep:",
        "  threshold  hit rate %  false alarms/h  false in keyword stream"]
    for row in r["sweep"]:
        lines.append(f"  {row['threshold']:9.3f}  {row['hit_rate']:10.2f}  "
                     f"{row['false_alarms_per_hour']:14.2f}  "
                     f"{row['false_detections_keyword_stream']:23d}")
    return "\n".join(lines)


def _run_evaluate(args, model, settings) -> int:
    from ..streaming.run import count_packed_calls
    from ..streaming.spotter import evaluate_spotting, plot_sweep
    thresholds = _thresholds(args.thresholds)
    say = None if args.json else (lambda text: print(text, file=sys.stderr, flush=True))
    with count_packed_calls(model) as calls:
        result = evaluate_spotting(model, args.evaluate, args.negatives, args.limit or None,
                                   settings, thresholds, seed=args.seed, progress=say)
    result = {**_describe(model, {}, calls["calls"]), **result}
    if args.plot:
        result["plot"] = plot_sweep(result["sweep"], args.plot,
                                    f"{args.model} on {args.evaluate}")
    if args.save:
        import os

        from ..fsio import atomic_open
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        with atomic_open(args.save) as fh:
            json.dump(result, fh, indent=1)
    if args.json:
        print(json.dumps(result))
    else:
        print(_format_evaluation(result))
        if args.plot:
            print(f"sweep plot: {args.plot}")
    return 0
