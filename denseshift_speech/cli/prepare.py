"""`denseshift-speech prepare {librispeech,speech-commands} DATA_FOLDER SAVE_FOLDER`."""
from __future__ import annotations

import json
import logging

from ..data.audio_checks import DataError


def add_parser(subparsers):
    p = subparsers.add_parser(
        "prepare", help="write SpeechBrain CSV manifests for LibriSpeech / Speech Commands",
        description="Check every file and write SpeechBrain CSV manifests. Bad files are "
                    "skipped and listed in SAVE_FOLDER/bad_files.txt unless --strict.")
    sub = p.add_subparsers(dest="corpus", metavar="CORPUS")
    sub.required = True
    ls = sub.add_parser("librispeech", help="<split>.csv with ID,duration,wav,spk_id,wrd")
    ls.add_argument("data_folder")
    ls.add_argument("save_folder")
    ls.add_argument("--train-splits", nargs="*", default=["train-clean-100"])
    ls.add_argument("--dev-splits", nargs="*", default=["dev-clean"])
    ls.add_argument("--test-splits", nargs="*", default=["test-clean", "test-other"])
    ls.add_argument("--merge-name", default=None,
                    help="also write <name>.csv merging all train splits")
    ls.add_argument("--resample", action="store_true",
                    help="convert wrong-rate / multi-channel files instead of refusing them")
    ls.add_argument("--strict", action="store_true", help="fail on the first bad file")
    ls.set_defaults(func=_run_librispeech)
    sc = sub.add_parser("speech-commands", help="train/valid/test.csv with "
                        "ID,duration,wav,start,stop,command,spk_id")
    sc.add_argument("data_folder")
    sc.add_argument("save_folder")
    sc.add_argument("--num-classes", type=int, default=12, help="12 or 35")
    sc.add_argument("--percentage-unknown", type=float, default=10.0)
    sc.add_argument("--percentage-silence", type=float, default=10.0)
    sc.add_argument("--balance", choices=["none", "undersample", "oversample"], default="none")
    sc.add_argument("--seed", type=int, default=1234)
    sc.add_argument("--resample", action="store_true")
    sc.add_argument("--strict", action="store_true")
    sc.set_defaults(func=_run_speech_commands)
    return p


def run_data_step(fn):
    """Run a corpus step (``prepare``, ``synth``) for the command line: its log on the
    terminal, a DataError as one user error (exit 2), its stats as JSON."""
    from ..errors import UserError
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = fn()
    except DataError as err:
        raise UserError(str(err)) from err
    print(json.dumps(out, indent=1) if out is not None else "already prepared; skipped")
    return 0


def _run_librispeech(a):
    from ..data.librispeech import prepare_librispeech
    return run_data_step(lambda: prepare_librispeech(
        a.data_folder, a.save_folder, tr_splits=a.train_splits, dev_splits=a.dev_splits,
        te_splits=a.test_splits, merge_lst=a.train_splits if a.merge_name else None,
        merge_name=a.merge_name, resample=a.resample, strict=a.strict))


def _run_speech_commands(a):
    from ..data.speech_commands import prepare_speech_commands
    return run_data_step(lambda: prepare_speech_commands(
        a.data_folder, a.save_folder, num_classes=a.num_classes,
        percentage_unknown=a.percentage_unknown, percentage_silence=a.percentage_silence,
        balance=a.balance, seed=a.seed, resample=a.resample, strict=a.strict))
