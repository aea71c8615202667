"""`denseshift-speech synth {librispeech,speech-commands} OUT_DIR`: the command line of
:mod:`denseshift_speech.data.synth`, which does the work."""
from __future__ import annotations

from ..data.synth import (DEVICE_SHARE, LM_SENTENCES, LM_TEXT, TRAIN_ENGINES,
                          synthesize_librispeech, synthesize_speech_commands)
# prepare's runner does what a synthesis needs too: the log shown, a DataError the
# user's (exit 2), the stats printed (a synthesis always returns them)
from .prepare import run_data_step


def add_parser(subparsers):
    p = subparsers.add_parser(
        "synth", help="write an offline synthetic corpus (several speech engines) in a "
                      "real dataset's layout",
        description="Write a synthetic corpus with offline speech engines (espeak-ng, "
                    "flite, mbrola, pico, rhvoice and the neural kokoro and piper; "
                    "festival for the held-out-engine test "
                    "split) in the LibriSpeech or Google Speech Commands v0.02 layout. "
                    "Deterministic from --seed; re-running with the same options on a "
                    "finished corpus does nothing.")
    sub = p.add_subparsers(dest="corpus", metavar="CORPUS")
    sub.required = True
    _librispeech_parser(sub)
    _speech_commands_parser(sub)
    return p


def _librispeech_parser(sub):
    ls = sub.add_parser("librispeech", help="ASR corpus, LibriSpeech layout")
    ls.add_argument("out_dir")
    _whole_numbers(ls, seed=0, train_utts=1500, dev_utts=150, test_utts=150,
                   test_other_utts=150, train_speakers=40, dev_speakers=8, test_speakers=8,
                   test_other_speakers=6)
    ls.add_argument("--train-engines", default=",".join(TRAIN_ENGINES),
                    help="comma-separated engines of train/dev/test-clean (espeak-ng first)")
    ls.add_argument("--device-share", type=float, default=DEVICE_SHARE,
                    help="share of single words, short commands and digit strings "
                         f"(default {DEVICE_SHARE})")
    ls.add_argument("--lm-sentences", type=int, default=LM_SENTENCES,
                    help=f"sentences of n-gram LM text ({LM_TEXT}; default {LM_SENTENCES})")
    ls.add_argument("--jobs", type=int, default=None, help="parallel engine processes")
    ls.add_argument("--force", action="store_true", help="synthesize even if already done")
    ls.set_defaults(func=_run_librispeech)


def _speech_commands_parser(sub):
    sc = sub.add_parser("speech-commands", help="keyword-spotting corpus, Speech Commands layout")
    sc.add_argument("out_dir")
    _whole_numbers(sc, seed=0, train_speakers=40, valid_speakers=6, test_speakers=6)
    sc.add_argument("--test-other-speakers", type=int, default=6,
                    help="festival speakers of testing_other_list.txt")
    sc.add_argument("--train-engines", default=",".join(TRAIN_ENGINES))
    sc.add_argument("--repeats", type=int, default=2, help="takes of each core word per speaker")
    sc.add_argument("--filler-prob", type=float, default=0.5)
    sc.add_argument("--noise-seconds", type=float, default=60.0)
    sc.add_argument("--words", default=None,
                    help="comma-separated word list (default: the 35 v0.02 words)")
    sc.add_argument("--jobs", type=int, default=None)
    sc.add_argument("--force", action="store_true")
    sc.set_defaults(func=_run_speech_commands)


def _whole_numbers(parser, **defaults):
    """``--<name> N`` options without help, in the order given (``_`` spelled ``-``)."""
    for name, default in defaults.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=default)


def _names(csv: str) -> tuple:
    return tuple(n.strip() for n in csv.split(",") if n.strip())


def _run_librispeech(args):
    return run_data_step(lambda: synthesize_librispeech(
        args.out_dir, seed=args.seed, train_utts=args.train_utts, dev_utts=args.dev_utts,
        test_utts=args.test_utts, test_other_utts=args.test_other_utts,
        train_speakers=args.train_speakers, dev_speakers=args.dev_speakers,
        test_speakers=args.test_speakers, test_other_speakers=args.test_other_speakers,
        train_engines=_names(args.train_engines), lm_sentences=args.lm_sentences,
        device_share=args.device_share, jobs=args.jobs, force=args.force))


def _run_speech_commands(args):
    kw = {"words": _names(args.words)} if args.words else {}
    return run_data_step(lambda: synthesize_speech_commands(
        args.out_dir, seed=args.seed, train_speakers=args.train_speakers,
        valid_speakers=args.valid_speakers, test_speakers=args.test_speakers,
        test_other_speakers=args.test_other_speakers,
        train_engines=_names(args.train_engines), repeats=args.repeats,
        filler_prob=args.filler_prob, noise_seconds=args.noise_seconds, jobs=args.jobs,
        force=args.force, **kw))
