"""`denseshift-speech stream`: streaming decoding of an exported model on a CPU.

    denseshift-speech stream results/conformer_ds3/model.dsp --wav utt.flac
    denseshift-speech stream MODEL --wav a.flac --wav b.flac --json
    denseshift-speech stream MODEL --manifest results/conformer_ds3/test-clean.csv --limit 5
    denseshift-speech stream MODEL --manifest test-clean.csv --sweep 8:4,16:4,32:4
    denseshift-speech stream MODEL --manifest test-clean.csv --compare-fp32 --limit 10
    denseshift-speech stream MODEL --mic --seconds 10
    denseshift-speech stream MODEL --wav a.flac --wav b.flac --wav c.flac --streams 3 --threads 2

Input policy: other sample rates are resampled to the model's rate, multi-channel audio is
downmixed (mean), empty files are refused, silent files are decoded and flagged,
non-finite samples are zeroed chunk by chunk and reported.

Decoding: the best the model file supports -- CTC prefix beam search fused with the
run's word n-gram LM when that LM is found (save/lm_<order>gram.arpa beside the model
file, as the recipe writes it, or --lm-arpa FILE), greedy CTC when there is none;
--decoding greedy|beam_lm overrides.  The summary (and --json) says which ran, and why.

Several streams (--streams N): the inputs are decoded N at a time as concurrent streams,
each with its own caches and search; the chunks ready together go through the encoder in
one batched call.  Transcripts are those of one-by-one decoding; the summary adds the
throughput of all streams together (seconds of audio per second of compute).
"""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers):
    from ..streaming.defaults import DEFAULT_CHUNK_SIZE, DEFAULT_LEFT_CONTEXT
    p = subparsers.add_parser(
        "stream", help="stream audio through an exported model, chunk by chunk",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="exported model file (model.dsp: packed DenseShift or fp32)")
    src = p.add_argument_group("input (one of)")
    src.add_argument("--wav", action="append", default=[], metavar="FILE",
                     help="audio file (any soundfile format); repeat for several")
    src.add_argument("--manifest", metavar="CSV",
                     help="recipe CSV (ID,duration,wav,spk_id,wrd): hypothesis beside reference")
    src.add_argument("--mic", action="store_true",
                     help="microphone input (needs the sounddevice package and a microphone)")
    p.add_argument("--limit", type=int, default=5, help="utterances of --manifest (default 5; 0: all)")
    p.add_argument("--seconds", type=float, default=None, help="--mic: stop after this long")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                   help=f"encoder frames per chunk, 40 ms each (default {DEFAULT_CHUNK_SIZE})")
    p.add_argument("--left-context", type=int, default=DEFAULT_LEFT_CONTEXT,
                   help=f"chunks of attention left context (default {DEFAULT_LEFT_CONTEXT})")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--streams", type=int, default=1, metavar="N",
                   help="decode the inputs (--wav files, --manifest utterances) N at a time as "
                        "concurrent streams, their chunks batched into one encoder call; the "
                        "summary gives the throughput (default 1: one after another)")
    p.add_argument("--kernel-path", choices=["int8", "exact", "shift"], default=None,
                   help="packed kernel path (default: the one recorded in the model file)")
    p.add_argument("--decoding", choices=["greedy", "beam_lm"], default=None,
                   help="greedy CTC, or CTC prefix beam search fused with a word n-gram LM "
                        "(default: beam_lm when the LM is found, see --lm-arpa; else greedy)")
    p.add_argument("--endpoint", action="store_true",
                   help="cut long audio into segments at pauses (trailing blank CTC frames); "
                        "each segment is finalized and printed with start/end times")
    p.add_argument("--endpoint-silence", type=float, default=0.8, metavar="SEC",
                   help="--endpoint: seconds of blank after speech that end a segment (0.8)")
    p.add_argument("--max-segment", type=float, default=30.0, metavar="SEC",
                   help="--endpoint: longest segment before a forced cut (30)")
    p.add_argument("--lm-arpa", metavar="FILE",
                   help="the ARPA LM of beam_lm decoding (default: save/lm_<order>gram.arpa "
                        "beside the model file, as the recipe writes it)")
    p.add_argument("--realtime", action="store_true",
                   help="pace file input in real time (default: as fast as possible)")
    p.add_argument("--fp32", action="store_true",
                   help="decode the packed weights to dense fp32 layers (full-precision compute "
                        "twin, same values) for comparison")
    p.add_argument("--full-context", action="store_true",
                   help="also decode each input offline with full context (the recipe's "
                        "evaluation) and report both")
    p.add_argument("--sweep", metavar="C:L,...",
                   help="with --manifest: latency/WER trade-off over chunk:left-context configs")
    p.add_argument("--compare-fp32", action="store_true",
                   help="with --manifest: packed vs its fp32 twin, side by side (compute per "
                        "chunk, RTF, ratio)")
    p.add_argument("--repeats", type=int, default=3, help="--compare-fp32 repeats (default 3)")
    p.add_argument("--json", action="store_true",
                   help="print only the summary and transcript(s) as one JSON object")
    p.set_defaults(func=run)
    return p


def _parse_sweep(text):
    from ..errors import UserError
    configs = []
    for item in text.split(","):
        try:
            c, _, l = item.partition(":")
            configs.append((int(c), int(l) if l else 4))
        except ValueError:
            raise UserError(f"--sweep: {item!r} is not CHUNK:LEFT (e.g. 16:4)") from None
    return configs


def run(args) -> int:
    from ..errors import UserError
    sources = sum([bool(args.wav), bool(args.manifest), bool(args.mic)])
    if sources != 1:
        raise UserError("give exactly one input: --wav FILE (repeatable), --manifest CSV or --mic")
    if args.chunk_size < 1:
        raise UserError(f"--chunk-size must be >= 1 frame, got {args.chunk_size}")
    if args.left_context < 0:
        raise UserError(f"--left-context must be >= 0 chunks, got {args.left_context}")
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.streams < 1:
        raise UserError(f"--streams must be >= 1, got {args.streams}")
    if args.streams > 1:
        clash = [flag for flag, on in (("--mic", args.mic), ("--sweep", args.sweep),
                                       ("--compare-fp32", args.compare_fp32),
                                       ("--realtime", args.realtime)) if on]
        if clash:
            raise UserError(f"--streams {args.streams} decodes files as fast as possible; "
                            f"it does not combine with {', '.join(clash)}")
    if (args.sweep or args.compare_fp32) and not args.manifest:
        raise UserError("--sweep and --compare-fp32 need --manifest")
    if args.mic:
        _check_mic()

    import torch
    torch.set_num_threads(args.threads)
    from ..streaming.audio import AudioError
    from ..streaming.model import ModelFileError, load_model
    try:
        model = load_model(args.model, fp32=args.fp32, kernel_path=args.kernel_path)
    except ModelFileError as err:
        raise UserError(str(err)) from None
    try:
        args.lm_search, args.decoding_choice = _lm_search(args, model)
        if args.manifest:
            return _run_manifest(args, model)
        if args.mic:
            return _run_mic(args, model)
        return _run_files(args, model)
    except AudioError as err:
        raise UserError(str(err)) from None


def _endpointing(args):
    """--endpoint settings, or None (the whole input is one segment)."""
    if not args.endpoint:
        return None
    from ..errors import UserError
    from ..streaming.decoder import Endpointing
    try:
        return Endpointing(args.endpoint_silence, args.max_segment)
    except ValueError as err:
        raise UserError(f"--endpoint: {err}") from None


def _lm_search(args, model):
    """(the LM-fused search or None for greedy, the DecodingChoice): --decoding when given,
    else the best the model file supports (streaming.lm_search.choose_decoding)."""
    from ..errors import UserError
    from ..streaming.lm_search import DecodingChoice, LMSearchError, StreamingLMSearch, choose_decoding
    if args.compare_fp32:  # a compute comparison: the two models' greedy tokens
        if args.decoding == "beam_lm":
            raise UserError("--compare-fp32 compares greedy tokens; drop --decoding beam_lm")
        return None, DecodingChoice("greedy", None, "greedy: --compare-fp32 compares the packed "
                                                    "and fp32 models' greedy tokens")
    flag = (f"--decoding {args.decoding}" if args.decoding else "--lm-arpa" if args.lm_arpa
            else "the LM beside the model (--decoding greedy decodes without it)")
    try:
        choice = choose_decoding(args.model, args.decoding, model.hparams, args.lm_arpa)
        if choice.decoding != "beam_lm":
            return None, choice
        return StreamingLMSearch.for_model(model, choice.lm_path), choice
    except LMSearchError as err:
        raise UserError(f"{flag}: {err}") from None


def _run_manifest(args, model) -> int:
    from ..streaming.run import compare_fp32, stream_manifest, sweep
    if args.compare_fp32:
        res = compare_fp32(args.model, args.manifest, args.limit or None, args.chunk_size,
                           args.left_context, args.repeats, out=None if args.json else sys.stdout)
        res["decoding"], res["decoding_reason"] = "greedy", args.decoding_choice.reason
        print(json.dumps(res) if args.json else f"decoding: {res['decoding_reason']}")
        return 0
    if args.sweep:
        out = None if args.json else sys.stdout
        if out is not None:
            print(f"decoding: {args.decoding_choice.reason}", file=out)
        rows = sweep(model, args.manifest, _parse_sweep(args.sweep), args.limit or None,
                     out=out, lm_search=args.lm_search)
        if args.json:
            c = args.decoding_choice
            print(json.dumps({"model": model.path, "manifest": args.manifest, "decoding": c.decoding,
                              "decoding_reason": c.reason, "lm_arpa": c.lm_path, "sweep": rows}))
        return 0
    s = stream_manifest(model, args.manifest, args.limit or None, args.chunk_size,
                        args.left_context, full_context=True, realtime=args.realtime,
                        threads=None, out=None if args.json else sys.stdout,
                        lm_search=args.lm_search, decoding=args.decoding_choice,
                        streams=args.streams)
    if args.json:
        print(json.dumps(s))
    return 0


class LiveView:
    """What a person watching sees: on a terminal, the partial hypothesis on one line
    redrawn in place, with each finalized segment printed above it; elsewhere (a pipe, a
    log) one plain line per update, as before."""

    def __init__(self, out, decoder, tty: bool | None = None):
        self.out, self.decoder, self.shown = out, decoder, 0
        self.tty = out.isatty() if tty is None else tty

    def _line(self, text: str, newline: bool = False):
        self.out.write("\r\033[K" + text + ("\n" if newline else ""))
        self.out.flush()

    def _segments(self):
        while self.shown < len(self.decoder.segments):
            seg = self.decoder.segments[self.shown]
            self.shown += 1
            if self.tty:
                self._line(f"[{seg['start']:7.2f}-{seg['end']:7.2f} s] {seg['text']}", newline=True)

    def update(self, h):
        self._segments()
        if self.tty:
            self._line(h.display() or "...")
        else:
            tag = "final  " if h.is_final else "partial"
            print(f"  {h.audio_seconds:6.2f}s {tag} {h.display()}", file=self.out, flush=True)

    def close(self, final_text: str):
        """After finish(): the last segment(s), or the final text without endpointing."""
        had = len(self.decoder.segments)
        self._segments()
        if self.tty and not had:
            self._line(final_text, newline=True)
        elif self.tty:
            self._line("", newline=False)


def _run_files(args, model) -> int:
    import torch

    from ..streaming.audio import read_audio
    from ..streaming.decoder import StreamingDecoder, decode_full
    from ..streaming.run import count_packed_calls, merge_stats, stream_samples, summary
    audios = [read_audio(path, model.sample_rate) for path in args.wav]  # check all first
    if args.streams > 1:
        return _run_files_streams(args, model, audios)
    dec = StreamingDecoder(model, args.chunk_size, args.left_context, lm_search=args.lm_search,
                           endpoint=_endpointing(args))
    stats, utts = [], []
    with count_packed_calls(model) as calls:
        for audio in audios:
            for note in audio.notes:
                print(f"denseshift-speech stream: note: {audio.path}: {note}", file=sys.stderr)
            if not args.json:
                print(f"{audio.path} ({audio.seconds:.2f} s)", flush=True)

            view = LiveView(sys.stdout, dec)
            hyp = stream_samples(dec, audio.samples, args.realtime, None if args.json else view.update)
            if not args.json:
                view.close(hyp.text)
            for start, n in dec.stats.nonfinite_events:
                print(f"denseshift-speech stream: warning: {audio.path}: {n} non-finite samples "
                      f"(NaN/inf) at {start:.2f} s replaced by zeros", file=sys.stderr)
            stats.append(dec.stats)
            utt = {"wav": audio.path, "transcript": hyp.text, "audio_seconds": round(audio.seconds, 3),
                   "input_notes": audio.notes,
                   "nonfinite_samples_zeroed": dec.stats.nonfinite_samples}
            if dec.endpoint is not None:
                utt["segments"] = list(dec.segments)
                utt["transcript"] = " ".join(seg["text"] for seg in dec.segments if seg["text"])
                if not args.json and not view.tty:
                    for seg in dec.segments:
                        print(f"  segment {seg['start']:8.2f}-{seg['end']:8.2f} s: {seg['text']}")
            if args.full_context:
                tokens, _, _ = decode_full(model, torch.nan_to_num(audio.samples, 0.0, 0.0, 0.0),
                                           floor="utterance")
                utt["transcript_full_context"] = model.tokenizer.decode_ids(tokens) if tokens else ""
                if not args.json:
                    print(f"  full context: {utt['transcript_full_context']}")
            utts.append(utt)
    s = summary(model, dec, merge_stats(stats), calls["calls"], args.decoding_choice)
    if len(utts) == 1:
        s["transcript"] = utts[0]["transcript"]
    s["utterances"] = utts
    return _print_summary(s, args.json)


def _run_files_streams(args, model, audios) -> int:
    """--wav ... --streams N: the files as N concurrent streams (streaming.run.stream_many)."""
    import torch

    from ..streaming.decoder import decode_full
    from ..streaming.run import batch_summary, count_packed_calls, stream_many
    utts = [None] * len(audios)
    for audio in audios:
        for note in audio.notes:
            print(f"denseshift-speech stream: note: {audio.path}: {note}", file=sys.stderr)

    def done(i, hyp, dec):
        audio = audios[i]
        for start, n in dec.stats.nonfinite_events:
            print(f"denseshift-speech stream: warning: {audio.path}: {n} non-finite samples "
                  f"(NaN/inf) at {start:.2f} s replaced by zeros", file=sys.stderr)
        utt = {"wav": audio.path, "transcript": hyp.text, "audio_seconds": round(audio.seconds, 3),
               "input_notes": audio.notes, "nonfinite_samples_zeroed": dec.stats.nonfinite_samples}
        if dec.endpoint is not None:
            utt["segments"] = list(dec.segments)
            utt["transcript"] = " ".join(seg["text"] for seg in dec.segments if seg["text"])
        utts[i] = utt
        if not args.json:
            print(f"{audio.path} ({audio.seconds:.2f} s): {utt['transcript']}", flush=True)

    with count_packed_calls(model) as calls:
        _, stats, batch = stream_many(model, [a.samples for a in audios], args.streams,
                                      args.chunk_size, args.left_context, args.lm_search,
                                      _endpointing(args), on_final=done)
    for audio, utt in zip(audios, utts):
        if args.full_context:
            tokens, _, _ = decode_full(model, torch.nan_to_num(audio.samples, 0.0, 0.0, 0.0),
                                       floor="utterance")
            utt["transcript_full_context"] = model.tokenizer.decode_ids(tokens) if tokens else ""
    s = batch_summary(model, batch, stats, calls["calls"], args.decoding_choice)
    s["utterances"] = utts
    return _print_summary(s, args.json)


def _print_summary(s: dict, as_json: bool) -> int:
    from ..streaming.run import format_summary
    print(json.dumps(s) if as_json else format_summary(s))
    return 0


def _check_mic():
    from ..errors import UserError
    try:
        import sounddevice as sd
    except ImportError:
        raise UserError("--mic needs the 'sounddevice' Python package (pip install sounddevice) "
                        "and a microphone; use --wav FILE instead") from None
    except OSError as err:  # PortAudio library missing
        raise UserError(f"--mic: sounddevice cannot load PortAudio ({err}); use --wav FILE") from None
    try:
        sd.query_devices(kind="input")
    except Exception as err:
        raise UserError(f"--mic: no microphone (input device) found ({err}); use --wav FILE") from None


def _run_mic(args, model) -> int:
    import time

    import sounddevice as sd
    import torch

    from ..streaming.decoder import StreamingDecoder
    from ..streaming.run import count_packed_calls, format_summary, summary
    dec = StreamingDecoder(model, args.chunk_size, args.left_context, lm_search=args.lm_search,
                           endpoint=_endpointing(args))
    view = LiveView(sys.stdout, dec)
    if not args.json:
        print(f"listening at {model.sample_rate} Hz (Ctrl-C to stop)...", file=sys.stderr)
    t_end = time.monotonic() + args.seconds if args.seconds else None
    with count_packed_calls(model) as calls:
        try:
            with sd.InputStream(samplerate=model.sample_rate, channels=1, dtype="float32",
                                blocksize=dec.chunk_samples) as stream:
                first = True
                while t_end is None or time.monotonic() < t_end:
                    n = dec.chunk_samples + (dec.lookahead_samples if first else 0)
                    first = False
                    data, _ = stream.read(n)
                    hyp = dec.accept(torch.from_numpy(data[:, 0].copy()))
                    if hyp is not None and not args.json:
                        view.update(hyp)
        except KeyboardInterrupt:
            pass
        except Exception as err:  # PortAudioError etc.
            from ..errors import UserError
            raise UserError(f"--mic: cannot record ({err})") from None
        hyp = dec.finish()
    s = summary(model, dec, dec.stats, calls["calls"], args.decoding_choice)
    s["transcript"] = hyp.text
    if dec.endpoint is not None:
        s["segments"] = list(dec.segments)
        s["transcript"] = " ".join(seg["text"] for seg in dec.segments if seg["text"])
    if args.json:
        print(json.dumps(s))
    else:
        view.close(hyp.text)
        if not view.tty:
            print(f"  final   {hyp.text}")
        print(format_summary(s))
    return 0
