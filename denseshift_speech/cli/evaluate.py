"""`denseshift-speech evaluate`: run a model file on an evaluation set of real recordings.

    denseshift-speech evaluate results/kws_ds3/model.dsp speech_commands_v0.02_test/
    denseshift-speech evaluate results/conformer_ds3/model.dsp free_spoken_digits/recordings
    denseshift-speech evaluate MODEL utterances.csv --json eval.json --limit 200

MODEL: a keyword spotter (recipes/speech_commands) or an ASR conformer
(recipes/librispeech) model.dsp, packed or fp32; the file says which.
DATA, told apart by its layout:
  * a Speech Commands folder: one sub-folder of clips per word (<speaker>_nohash_<n>.wav),
    maybe _unknown_ and _silence_ (the 12-class test set); with testing_list.txt (a whole
    corpus) only the listed clips;
  * a Free Spoken Digit folder of <digit>_<speaker>_<n>.wav files (the reference is the
    digit's word, "zero".."nine");
  * a CSV with a header row wav,transcript (paths relative to the CSV), or a recipe
    manifest (ID,duration,wav,spk_id,wrd).
A keyword spotter reports accuracy (a word folder that is not one of its classes counts as
its unknown class, _silence_ as its silence class; the mapping is printed); an ASR model
reports WER and the share of utterances transcribed exactly right (case and punctuation
ignored), decoded with full context by the best decoding the file supports (the LM-fused
beam search when the run's LM sits beside it, else greedy; --decoding overrides).  ASR
skips _unknown_ and _silence_ clips (no single reference word).  Audio follows `stream`'s
input policy: resampled to the model's rate, downmixed, empty or unreadable files refused
(naming the file), non-finite samples zeroed and counted.
"""
from __future__ import annotations

import argparse
import json

# speakers listed one per line up to this many; beyond, a summary (all of them in --json)
MAX_SPEAKER_LINES = 20


def add_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="accuracy / WER of a model file on real recordings",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model.dsp: a keyword spotter or an ASR conformer")
    p.add_argument("data", help="Speech Commands folder, Free Spoken Digit folder or CSV")
    p.add_argument("--json", metavar="FILE", help="write every figure and per-clip row here")
    p.add_argument("--limit", type=int, default=0,
                   help="evaluate at most N clips, taken in turn from each folder (0: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--batch-size", type=int, default=32, help="clips per model call (32)")
    p.add_argument("--kernel-path", choices=["int8", "exact", "shift"], default=None,
                   help="packed kernel path (default: the one recorded in the model file)")
    p.add_argument("--fp32", action="store_true",
                   help="decode the packed weights to dense fp32 layers (the compute twin)")
    p.add_argument("--decoding", choices=["greedy", "beam_lm"], default=None,
                   help="ASR: greedy CTC or the LM-fused beam search (default: beam_lm when "
                        "the LM is found, else greedy)")
    p.add_argument("--lm-arpa", metavar="FILE",
                   help="ASR: the ARPA LM (default: save/lm_<order>gram.arpa beside the model)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..errors import UserError
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.limit < 0:
        raise UserError(f"--limit must be >= 0, got {args.limit}")
    import torch
    torch.set_num_threads(args.threads)
    from ..streaming.audio import AudioError
    from ..streaming.evaluate import evaluate
    from ..streaming.model import ModelFileError
    try:
        result = evaluate(args.model, args.data, limit=args.limit or None, fp32=args.fp32,
                          kernel_path=args.kernel_path, decoding=args.decoding,
                          lm_arpa=args.lm_arpa, batch_size=args.batch_size)
    except (ModelFileError, AudioError) as err:
        raise UserError(str(err)) from None
    print("\n".join(report_lines(result)))
    if args.json:
        from ..fsio import atomic_open
        with atomic_open(args.json) as f:
            json.dump(result, f, indent=1)
        print(f"every figure and per-clip row: {args.json}")
    return 0


# ------------------------------------------------------------------ printing -----------

def _model_line(r) -> str:
    kind = (f"keyword spotter, {len(r['labels'])} classes" if r["task"] == "kws"
            else "ASR conformer")
    packed = f"packed {'/'.join(map(str, r['bits']))}-bit" if r["packed"] else "fp32 file"
    native = "native kernel" if r["native_kernel"] else "no native kernel"
    path = f", kernel path {'/'.join(r['kernel_path'])}" if r["kernel_path"] else ""
    return f"model     {r['model']} ({kind}; {packed}; compute {r['compute']}, {native}{path})"


def _input_lines(r) -> list:
    i = r["input"]
    lines = [f"data      {r['data']} ({r['layout'].replace('_', ' ')} layout)"]
    lines += [f"  note    {note}" for note in r["data_notes"] + r.get("skipped", [])]
    done = [f"{i[k]} {what}" for k, what in (("resampled", "resampled to the model's rate"),
                                             ("downmixed", "downmixed to mono"),
                                             ("silent", "silent"),
                                             ("padded", "zero-padded to the model's shortest input"))
            if i.get(k)]
    if i.get("nonfinite_clips"):
        done.append(f"{i['nonfinite_clips']} with non-finite samples "
                    f"({i['nonfinite_samples']} zeroed)")
    if done:
        lines.append(f"  input   clips: {', '.join(done)}")
    return lines


def _mapping_lines(r) -> list:
    lines = ["folder -> class (clips evaluated of the folder's):"]
    for folder, row in r["mapping"].items():
        target = row["class"] if row["class"] is not None else "(skipped)"
        done = r["per_folder"].get(folder, {}).get("clips", 0)
        lines.append(f"  {folder:>12} -> {target:<10} {done:5d} of {row['clips']:<5d} ({row['why']})")
    return lines


def _table(title, rows: dict, columns) -> list:
    """``columns``: (header, format spec such as ">9", function of a row giving the cell)."""
    head = f"  {title:<14}" + "".join(f" {h:{spec}}" for h, spec, _ in columns)
    def line(key, row):
        return f"  {str(key)[:14]:<14}" + "".join(f" {cell(row):{spec}}" for _, spec, cell in columns)
    return [head] + [line(key, row) for key, row in rows.items()]


def _speaker_lines(rows: dict, rate_key: str, title: str) -> list:
    if len(rows) <= MAX_SPEAKER_LINES:
        return None
    rates = sorted(row[rate_key] for row in rows.values())
    mid = rates[len(rates) // 2]
    return [f"  {title}: {len(rows)} speakers, {rate_key.replace('_', ' ')} median {mid:.1f} %, "
            f"lowest {rates[0]:.1f} %, highest {rates[-1]:.1f} % (each one in --json)"]


KWS_COLUMNS = (("clips", ">7", lambda r: str(r["clips"])),
               ("correct", ">7", lambda r: str(r["correct"])),
               ("accuracy", ">9", lambda r: f"{r['accuracy']:.2f} %"))
ASR_COLUMNS = (("utts", ">6", lambda r: str(r["utterances"])),
               ("exact", ">8", lambda r: f"{r['exact_rate']:.1f} %"),
               ("WER", ">8", lambda r: f"{r['wer']:.1f} %"))


def _kws_lines(r) -> list:
    lines = _mapping_lines(r)
    lines.append(f"accuracy  {r['accuracy']:.2f} % ({r['correct']} of {r['clips']} clips)")
    lines += _table("class", r["per_class"], KWS_COLUMNS)
    lines += (_speaker_lines(r["per_speaker"], "accuracy", "per speaker")
              or _table("speaker", r["per_speaker"], KWS_COLUMNS))
    return lines


def _asr_lines(r) -> list:
    lines = [f"decoding  {r['decoding_reason']}",
             f"WER       {r['wer']:.2f} % ({r['word_errors']} errors over {r['ref_words']} "
             f"reference words)",
             f"exact     {r['exact_rate']:.2f} % of utterances exactly right ({r['exact']} of "
             f"{r['utterances']})"]
    if "per_word" in r:
        top = (("  most often heard", "<", lambda row: "  " + ", ".join(
            f"{h} ({n})" for h, n in row["top_hypotheses"][:2])),)
        lines += _table("word", r["per_word"], ASR_COLUMNS + top)
    lines += (_speaker_lines(r["per_speaker"], "exact_rate", "per speaker")
              or _table("speaker", r["per_speaker"], ASR_COLUMNS))
    return lines


def report_lines(r: dict) -> list:
    """The printed report of a :func:`~denseshift_speech.streaming.evaluate.evaluate` result."""
    lines = [_model_line(r)] + _input_lines(r)
    lines += _kws_lines(r) if r["task"] == "kws" else _asr_lines(r)
    audio = r["input"].get("audio_seconds", 0.0)
    lines.append(f"time      {r['compute_seconds']:.2f} s of compute for {audio:.1f} s of audio "
                 f"(real-time factor {r['rtf'] or 0:.4f}) on {r['threads']} thread(s)")
    return lines
