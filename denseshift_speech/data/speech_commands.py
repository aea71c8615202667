"""Google Speech Commands preparation: ``train.csv``, ``valid.csv``, ``test.csv`` with
columns ``ID,duration,wav,start,stop,command,spk_id`` (``start``/``stop`` in samples),
from the real v0.02 corpus or the synthetic one (same layout: ``<word>/<spk>_nohash_<n>.wav``,
``validation_list.txt``, ``testing_list.txt``, ``_background_noise_/``).  When the
corpus has ``testing_other_list.txt`` (the embedded one's clips by an engine never used
in training, under ``_other_engine_/``), ``test_other.csv`` holds them too.

Classes: the chosen command words, ``unknown`` (a sample of the other words, sized as a
percentage of the split's command items) and ``silence`` (1-second segments cut from the
``_background_noise_`` files; each noise file is divided 80/10/10 % between
train/valid/test so no segment is shared).  When the list files are missing, the split is
the dataset README's hash of the speaker id (``which_set``).  Bad files are skipped and
listed in ``bad_files.txt`` (count logged) unless ``strict=True``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field

import soundfile as sf

from .manifest import already_prepared, write_csv
from .audio_checks import BadAudioError, DataError, inspect_audio, load_fixed

log = logging.getLogger(__name__)

CORE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
V2_WORDS = CORE_WORDS + ("zero", "one", "two", "three", "four", "five", "six", "seven",
                         "eight", "nine", "bed", "bird", "cat", "dog", "happy", "house",
                         "marvin", "sheila", "tree", "wow", "backward", "forward", "follow",
                         "learn", "visual")
HEADER = ["ID", "duration", "wav", "start", "stop", "command", "spk_id"]
SPLITS = ("train", "valid", "test")
OPT_FILE = "opt_speech_commands_prepare.json"
BG_DIR = "_background_noise_"
# The embedded corpus' held-out-engine test clips (paths relative to the corpus root),
# prepared into test_other.csv when the list exists.
OTHER_LIST = "testing_other_list.txt"
OTHER_SPLIT = "test_other"
MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1  # from the dataset README
# the share of each background noise file each split cuts its 'silence' segments from
SILENCE_REGIONS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0),
                   OTHER_SPLIT: (0.9, 1.0)}


def which_set(filename, validation_percentage=10, testing_percentage=10):
    """The dataset README's split rule: hash of the part before ``_nohash_``."""
    base = os.path.basename(filename)
    hash_name = re.sub(r"_nohash_.*$", "", base)
    h = int(hashlib.sha1(hash_name.encode("utf-8")).hexdigest(), 16)
    pct = (h % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if pct < validation_percentage:
        return "valid"
    if pct < validation_percentage + testing_percentage:
        return "test"
    return "train"


def prepare_speech_commands(data_folder, save_folder, words=CORE_WORDS, num_classes=None,
                            percentage_unknown=10.0, percentage_silence=10.0,
                            validation_percentage=10, testing_percentage=10,
                            balance="none", max_per_class=None, skip_prep=False,
                            strict=False, seed=1234, expected_sr=16000, resample=False,
                            check="full", silence_seconds=1.0):
    """Write ``train.csv``, ``valid.csv``, ``test.csv`` (and ``classes.txt``).

    ``num_classes``: ``None`` -> ``words`` + ``unknown`` + ``silence`` (the last two only
    when their percentage is > 0); ``12`` -> the 10 core words + unknown + silence;
    ``35`` -> the 35 v0.02 words, no unknown/silence class.
    ``balance`` (train only): ``"none"``, ``"undersample"`` (cut every class to the
    smallest), ``"oversample"`` (repeat rows of small classes up to the largest, IDs
    suffixed ``_rep<k>``).  ``max_per_class`` caps each class in train.
    ``resample``: wrong-rate / multi-channel clips are refused unless ``True`` (then a
    16 kHz mono copy is written under ``<save_folder>/fixed_audio/``).
    Returns ``{"classes": [...], split: {class: count}, "bad": n}`` or ``None`` if skipped.
    """
    if skip_prep:
        return None
    data_folder, save_folder = os.path.abspath(data_folder), os.path.abspath(save_folder)
    words, percentage_unknown, percentage_silence = _class_words(
        tuple(words), num_classes, percentage_unknown, percentage_silence)
    _check_choices(balance, check)
    options = {"data_folder": data_folder, "words": list(words),
               "percentage_unknown": float(percentage_unknown),
               "percentage_silence": float(percentage_silence),
               "validation_percentage": validation_percentage,
               "testing_percentage": testing_percentage, "balance": balance,
               "max_per_class": max_per_class, "strict": bool(strict), "seed": seed,
               "expected_sr": expected_sr, "resample": bool(resample), "check": check,
               "silence_seconds": silence_seconds}
    if already_prepared(save_folder, OPT_FILE, options, _outputs(data_folder, save_folder)):
        log.info("Speech Commands manifests in %s already prepared; skipping", save_folder)
        return None
    word_dirs = _word_dirs(data_folder, words)
    os.makedirs(save_folder, exist_ok=True)
    if os.path.exists(os.path.join(save_folder, OPT_FILE)):  # written again when complete
        os.remove(os.path.join(save_folder, OPT_FILE))
    audio = _AudioCheck(save_folder, expected_sr, resample, check == "full", strict)
    split_of = _SplitOf(data_folder, validation_percentage, testing_percentage)
    items = _word_items(data_folder, word_dirs, words, split_of, audio,
                        skip_unknown=percentage_unknown <= 0)
    split_of.warn_dangling()
    seg = int(round(silence_seconds * expected_sr))
    noises = (_noises(data_folder, audio, seg, silence_seconds) if percentage_silence > 0
              else [])
    rng = random.Random(seed)
    rows = {s: _split_rows(s, items[s], noises, rng, percentage_unknown, percentage_silence,
                           seg, expected_sr) for s in split_of.splits}
    rows["train"] = _balance(rows["train"], balance, max_per_class, rng)
    classes = list(words) + (["unknown"] if percentage_unknown > 0 else []) + \
        (["silence"] if percentage_silence > 0 else [])
    return _write_outputs(save_folder, rows, classes, audio.bad, options)


def _class_words(words: tuple, num_classes, percentage_unknown, percentage_silence) -> tuple:
    """(words, percentage_unknown, percentage_silence) as ``num_classes`` has them."""
    if num_classes == 12:
        if len(words) != 10:
            words = CORE_WORDS
    elif num_classes == 35:
        words, percentage_unknown, percentage_silence = V2_WORDS, 0.0, 0.0
    elif num_classes is not None:
        expect = len(words) + (percentage_unknown > 0) + (percentage_silence > 0)
        if num_classes != expect:
            raise DataError(f"num_classes={num_classes} does not match {len(words)} words "
                            f"+ unknown/silence ({expect} classes); use 12, 35 or None")
    return words, percentage_unknown, percentage_silence


def _check_choices(balance: str, check: str) -> None:
    if balance not in ("none", "undersample", "oversample"):
        raise DataError(f"balance must be none, undersample or oversample, not {balance!r}")
    if check not in ("full", "header"):
        raise DataError(f"check must be 'full' or 'header', not {check!r}")


def _outputs(data_folder: str, save_folder: str) -> list:
    """The manifests a preparation writes (test_other.csv when the corpus has its list)."""
    outputs = [os.path.join(save_folder, f"{s}.csv") for s in SPLITS]
    if os.path.isfile(os.path.join(data_folder, OTHER_LIST)):
        outputs.append(os.path.join(save_folder, f"{OTHER_SPLIT}.csv"))
    return outputs


def _word_dirs(data_folder: str, words: tuple) -> list:
    """The corpus' word folders (every command word's among them), sorted."""
    if not os.path.isdir(data_folder):
        raise DataError(f"Speech Commands data folder not found: {data_folder}")
    word_dirs = sorted(d for d in os.listdir(data_folder)
                       if os.path.isdir(os.path.join(data_folder, d))
                       and not d.startswith(("_", ".")))
    missing = [w for w in words if w not in word_dirs]
    if missing:
        raise DataError(f"command word folder(s) {missing} not found in {data_folder} "
                        f"(word folders there: {', '.join(word_dirs) or 'none'})")
    return word_dirs


@dataclass
class _AudioCheck:
    """How the files are checked, where converted copies go, and the files refused."""
    save_folder: str
    expected_sr: int
    resample: bool
    full: bool
    strict: bool
    bad: list = field(default_factory=list)  # (path, reason)

    def reject(self, path: str, reason: str) -> None:
        if self.strict:
            raise BadAudioError(path, reason)
        self.bad.append((path, reason))

    def usable(self, path: str, rel: str, **limits):
        """(wav, frames) of a file that passes the checks -- a 16 kHz mono copy under
        ``fixed_audio/<rel>`` when it needed converting --, else None (refused)."""
        info = inspect_audio(path, expected_sr=self.expected_sr, resample=self.resample,
                             full=self.full, **limits)
        if not info.ok:
            self.reject(path, info.reason)
            return None
        if not info.needs_fix:
            return path, info.frames
        fixed = os.path.join(self.save_folder, "fixed_audio", *rel.split("/"))
        os.makedirs(os.path.dirname(fixed), exist_ok=True)
        y = load_fixed(path, self.expected_sr)
        sf.write(fixed, y, self.expected_sr, subtype="PCM_16")
        return fixed, len(y)


class _SplitOf:
    """The split of a clip (relative path): test_other for the held-out-engine list's
    clips; else as the validation/testing lists say, or without them by the hash of the
    speaker id."""

    def __init__(self, data_folder: str, validation_percentage, testing_percentage):
        self.percentages = (validation_percentage, testing_percentage)
        self.lists = _valid_test_lists(data_folder, *self.percentages)
        other_list = os.path.join(data_folder, OTHER_LIST)
        self.other = sorted(_read_list(other_list)) if os.path.isfile(other_list) else []
        self.other_set = set(self.other)
        self.splits = SPLITS + ((OTHER_SPLIT,) if self.other else ())
        self.present = set()  # the listed clips found, for warn_dangling

    def __call__(self, rel: str, fn: str) -> str:
        if rel in self.other_set:
            return OTHER_SPLIT
        if self.lists is None:
            return which_set(fn, *self.percentages)
        self.present.add(rel)
        return ("test" if rel in self.lists["test"] else
                "valid" if rel in self.lists["valid"] else "train")

    def warn_dangling(self) -> None:
        if self.lists is None:
            return
        dangling = sorted((self.lists["valid"] | self.lists["test"]) - self.present)
        if dangling:
            log.warning("%d entries of the validation/testing lists name files that do not "
                        "exist (ignored), e.g. %s", len(dangling), dangling[0])


def _read_list(path: str) -> set:
    with open(path, encoding="utf-8") as fh:
        return {ln.strip().replace("\\", "/") for ln in fh if ln.strip()}


def _valid_test_lists(data_folder: str, validation_percentage, testing_percentage):
    """``{"valid": clips, "test": clips}`` from the corpus' list files; None (with a
    warning) unless it has both."""
    lists = {}
    for s, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
        p = os.path.join(data_folder, name)
        if os.path.isfile(p):
            lists[s] = _read_list(p)
    if len(lists) == 2:
        return lists
    log.warning("%s: validation_list.txt / testing_list.txt missing; splitting by the "
                "hash of the speaker id (%d%% valid, %d%% test)", data_folder,
                validation_percentage, testing_percentage)
    return None


def _word_items(data_folder: str, word_dirs: list, words: tuple, split_of: _SplitOf,
                audio: _AudioCheck, skip_unknown: bool) -> dict:
    """split -> {"known": rows, "unknown": rows} of the word clips that pass the checks
    (none of the other words' when ``skip_unknown``)."""
    items = {s: {"known": [], "unknown": []} for s in split_of.splits}
    # the held-out-engine list names clips outside the word folders
    clips = [(w, fn, f"{w}/{fn}") for w in word_dirs
             for fn in sorted(os.listdir(os.path.join(data_folder, w)))]
    clips += [(rel.split("/")[-2], rel.split("/")[-1], rel) for rel in split_of.other
              if rel.count("/") >= 1]
    for w, fn, rel in clips:
        if not fn.lower().endswith(".wav"):
            continue  # README, .DS_Store, ...
        path = os.path.join(data_folder, rel)
        split = split_of(rel, fn)
        if split == OTHER_SPLIT and not os.path.isfile(path):
            audio.reject(path, f"listed in {OTHER_LIST} but missing")
            continue
        if w not in words and skip_unknown:
            continue
        checked = audio.usable(path, rel, min_duration=0.05, max_duration=1.5)
        if checked is not None:
            row = _clip_row(w, fn, split, *checked, words, audio.expected_sr)
            items[split]["known" if w in words else "unknown"].append(row)
    return items


def _clip_row(w: str, fn: str, split: str, wav: str, frames: int, words: tuple,
              sr: int) -> list:
    spk = re.sub(r"_nohash_.*$", "", fn[:-4])
    prefix = "other_" if split == OTHER_SPLIT else ""
    return [f"{prefix}{w}_{fn[:-4]}", f"{frames / sr:.4f}", wav, 0, frames,
            w if w in words else "unknown", spk]


def _noises(data_folder: str, audio: _AudioCheck, seg: int, silence_seconds) -> list:
    """(path, frames) of the background noise files to cut ``seg``-sample 'silence'
    segments from."""
    bg = os.path.join(data_folder, BG_DIR)
    if not os.path.isdir(bg):
        raise DataError(f"{bg} not found: it is needed for the 'silence' class "
                        "(or set percentage_silence=0)")
    noises = []
    for fn in sorted(os.listdir(bg)):
        if not fn.lower().endswith(".wav"):
            continue
        checked = audio.usable(os.path.join(bg, fn), f"{BG_DIR}/{fn}")
        if checked is None:
            continue
        path, frames = checked
        if frames < seg:
            audio.reject(path, f"background noise file shorter than {silence_seconds} s")
            continue
        noises.append((path, frames))
    if not noises:
        raise DataError(f"no usable background noise file in {bg} for the 'silence' class")
    return noises


def _split_rows(s: str, items: dict, noises: list, rng: random.Random, percentage_unknown,
                percentage_silence, seg: int, sr: int) -> list:
    """A split's rows: its command clips, a sample of the other words' as 'unknown', and
    'silence' segments, each sized as a percentage of the command clips."""
    known = items["known"]
    n_unk = int(round(len(known) * percentage_unknown / 100.0))
    pool = items["unknown"]
    unk = rng.sample(pool, min(n_unk, len(pool)))
    n_sil = int(round(len(known) * percentage_silence / 100.0))
    sil = [_silence_row(s, k, noises, rng, seg, sr) for k in range(n_sil)]
    return known + sorted(unk) + sil


def _silence_row(s: str, k: int, noises: list, rng: random.Random, seg: int, sr: int) -> list:
    """A ``seg``-sample segment of a random noise file, from the split's own region of it
    (so that no segment is in two splits)."""
    path, frames = noises[rng.randrange(len(noises))]
    a, b = (int(frames * f) for f in SILENCE_REGIONS[s])
    if b - a < seg:  # short file: use all of it
        a, b = 0, frames
    start = rng.randint(a, b - seg)
    return [f"silence_{s}_{k:05d}", f"{seg / sr:.4f}", path, start, start + seg, "silence",
            "silence"]


def _write_outputs(save_folder: str, rows: dict, classes: list, bad: list,
                   options: dict) -> dict:
    """The manifests, classes.txt, bad_files.txt and, last (it marks the preparation
    complete), the options file; return the summary."""
    summary = {"classes": classes, "bad": len(bad)}
    for s, split_rows in rows.items():
        write_csv(os.path.join(save_folder, f"{s}.csv"), HEADER, split_rows)
        counts = {}
        for r in split_rows:
            counts[r[5]] = counts.get(r[5], 0) + 1
        summary[s] = counts
        log.info("%s: %d items %s", s, len(split_rows), counts)
    with open(os.path.join(save_folder, "classes.txt"), "w") as fh:
        fh.writelines(c + "\n" for c in classes)
    with open(os.path.join(save_folder, "bad_files.txt"), "w") as fh:
        fh.writelines(f"{p}\t{r}\n" for p, r in bad)
    if bad:
        log.warning("%d bad files skipped (listed in %s)", len(bad),
                    os.path.join(save_folder, "bad_files.txt"))
        for p, r in bad[:10]:
            log.warning("  skipped %s: %s", p, r)
    with open(os.path.join(save_folder, OPT_FILE), "w") as fh:
        json.dump(options, fh, indent=1)
    return summary


def _balance(rows, balance, max_per_class, rng):
    by = {}
    for r in rows:
        by.setdefault(r[5], []).append(r)
    if not by:
        return rows
    if balance == "undersample":
        n = min(len(v) for v in by.values())
        by = {c: rng.sample(v, n) if len(v) > n else v for c, v in by.items()}
    elif balance == "oversample":
        n = max(len(v) for v in by.values())
        for c, v in by.items():
            extra = []
            k = 0
            while len(v) + len(extra) < n:
                src = v[k % len(v)]
                extra.append([f"{src[0]}_rep{k // len(v) + 1}"] + src[1:])
                k += 1
            by[c] = v + extra
    if max_per_class:
        by = {c: (rng.sample(v, max_per_class) if len(v) > max_per_class else v)
              for c, v in by.items()}
    out = []
    for c in by:
        out += sorted(by[c], key=lambda r: r[0])
    return out


