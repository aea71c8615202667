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
    words = tuple(words)
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
    if balance not in ("none", "undersample", "oversample"):
        raise DataError(f"balance must be none, undersample or oversample, not {balance!r}")
    if check not in ("full", "header"):
        raise DataError(f"check must be 'full' or 'header', not {check!r}")
    options = {"data_folder": data_folder, "words": list(words),
               "percentage_unknown": float(percentage_unknown),
               "percentage_silence": float(percentage_silence),
               "validation_percentage": validation_percentage,
               "testing_percentage": testing_percentage, "balance": balance,
               "max_per_class": max_per_class, "strict": bool(strict), "seed": seed,
               "expected_sr": expected_sr, "resample": bool(resample), "check": check,
               "silence_seconds": silence_seconds}
    outputs = [os.path.join(save_folder, f"{s}.csv") for s in SPLITS]
    if os.path.isfile(os.path.join(data_folder, OTHER_LIST)):
        outputs.append(os.path.join(save_folder, f"{OTHER_SPLIT}.csv"))
    if already_prepared(save_folder, OPT_FILE, options, outputs):
        log.info("Speech Commands manifests in %s already prepared; skipping", save_folder)
        return None
    if not os.path.isdir(data_folder):
        raise DataError(f"Speech Commands data folder not found: {data_folder}")
    word_dirs = sorted(d for d in os.listdir(data_folder)
                       if os.path.isdir(os.path.join(data_folder, d))
                       and not d.startswith(("_", ".")))
    missing = [w for w in words if w not in word_dirs]
    if missing:
        raise DataError(f"command word folder(s) {missing} not found in {data_folder} "
                        f"(word folders there: {', '.join(word_dirs) or 'none'})")
    os.makedirs(save_folder, exist_ok=True)
    if os.path.exists(os.path.join(save_folder, OPT_FILE)):
        os.remove(os.path.join(save_folder, OPT_FILE))

    bad = []

    def reject(path, reason):
        if strict:
            raise BadAudioError(path, reason)
        bad.append((path, reason))

    # ---- split assignment
    lists = {}
    for s, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
        p = os.path.join(data_folder, name)
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as fh:
                lists[s] = {ln.strip().replace("\\", "/") for ln in fh if ln.strip()}
    use_lists = len(lists) == 2
    if not use_lists:
        log.warning("%s: validation_list.txt / testing_list.txt missing; splitting by the "
                    "hash of the speaker id (%d%% valid, %d%% test)", data_folder,
                    validation_percentage, testing_percentage)
    else:
        present = set()

    # ---- word clips (the held-out-engine list names clips outside the word folders)
    other_list = os.path.join(data_folder, OTHER_LIST)
    other = []
    if os.path.isfile(other_list):
        with open(other_list, encoding="utf-8") as fh:
            other = sorted({ln.strip().replace("\\", "/") for ln in fh if ln.strip()})
    splits = SPLITS + ((OTHER_SPLIT,) if other else ())
    items = {s: {"known": [], "unknown": []} for s in splits}
    clips = [(w, fn, f"{w}/{fn}") for w in word_dirs
             for fn in sorted(os.listdir(os.path.join(data_folder, w)))]
    clips += [(rel.split("/")[-2], rel.split("/")[-1], rel) for rel in other
              if rel.count("/") >= 1]
    sr_ok = expected_sr
    other_set = set(other)
    for w, fn, rel in clips:
        if not fn.lower().endswith(".wav"):
            continue  # README, .DS_Store, ...
        path = os.path.join(data_folder, rel)
        if rel in other_set:
            if not os.path.isfile(path):
                reject(path, f"listed in {OTHER_LIST} but missing")
                continue
            split = OTHER_SPLIT
        elif use_lists:
            present.add(rel)
            split = ("test" if rel in lists["test"] else
                     "valid" if rel in lists["valid"] else "train")
        else:
            split = which_set(fn, validation_percentage, testing_percentage)
        if w not in words and percentage_unknown <= 0:
            continue
        info = inspect_audio(path, expected_sr=sr_ok, resample=resample,
                             full=(check == "full"), min_duration=0.05, max_duration=1.5)
        if not info.ok:
            reject(path, info.reason)
            continue
        frames, wav = info.frames, path
        if info.needs_fix:
            wav = os.path.join(save_folder, "fixed_audio", *rel.split("/"))
            os.makedirs(os.path.dirname(wav), exist_ok=True)
            y = load_fixed(path, expected_sr)
            sf.write(wav, y, expected_sr, subtype="PCM_16")
            frames = len(y)
        spk = re.sub(r"_nohash_.*$", "", fn[:-4])
        prefix = "other_" if split == OTHER_SPLIT else ""
        row = [f"{prefix}{w}_{fn[:-4]}", f"{frames / expected_sr:.4f}", wav, 0, frames,
               w if w in words else "unknown", spk]
        items[split]["known" if w in words else "unknown"].append(row)
    if use_lists:
        dangling = sorted((lists["valid"] | lists["test"]) - present)
        if dangling:
            log.warning("%d entries of the validation/testing lists name files that do not "
                        "exist (ignored), e.g. %s", len(dangling), dangling[0])

    # ---- silence segments from background noise
    rng = random.Random(seed)
    seg = int(round(silence_seconds * expected_sr))
    noises = []
    if percentage_silence > 0:
        bg = os.path.join(data_folder, BG_DIR)
        if not os.path.isdir(bg):
            raise DataError(f"{bg} not found: it is needed for the 'silence' class "
                            "(or set percentage_silence=0)")
        for fn in sorted(os.listdir(bg)):
            if not fn.lower().endswith(".wav"):
                continue
            path = os.path.join(bg, fn)
            info = inspect_audio(path, expected_sr=expected_sr, resample=resample,
                                 full=(check == "full"))
            if not info.ok:
                reject(path, info.reason)
                continue
            if info.needs_fix:
                fixed = os.path.join(save_folder, "fixed_audio", BG_DIR, fn)
                os.makedirs(os.path.dirname(fixed), exist_ok=True)
                y = load_fixed(path, expected_sr)
                sf.write(fixed, y, expected_sr, subtype="PCM_16")
                path, frames = fixed, len(y)
            else:
                frames = info.frames
            if frames < seg:
                reject(path, f"background noise file shorter than {silence_seconds} s")
                continue
            noises.append((path, frames))
        if not noises:
            raise DataError(f"no usable background noise file in {bg} for the 'silence' class")

    region = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0),
              OTHER_SPLIT: (0.9, 1.0)}
    rows = {}
    for s in splits:
        known = items[s]["known"]
        n_unk = int(round(len(known) * percentage_unknown / 100.0))
        pool = items[s]["unknown"]
        unk = rng.sample(pool, min(n_unk, len(pool)))
        sil = []
        for k in range(int(round(len(known) * percentage_silence / 100.0))):
            path, frames = noises[rng.randrange(len(noises))]
            a, b = (int(frames * f) for f in region[s])
            if b - a < seg:  # short file: use all of it
                a, b = 0, frames
            start = rng.randint(a, b - seg)
            sil.append([f"silence_{s}_{k:05d}", f"{seg / expected_sr:.4f}", path, start,
                        start + seg, "silence", "silence"])
        rows[s] = known + sorted(unk) + sil
    rows["train"] = _balance(rows["train"], balance, max_per_class, rng)

    classes = list(words) + (["unknown"] if percentage_unknown > 0 else []) + \
        (["silence"] if percentage_silence > 0 else [])
    summary = {"classes": classes, "bad": len(bad)}
    for s in splits:
        write_csv(os.path.join(save_folder, f"{s}.csv"), HEADER, rows[s])
        counts = {}
        for r in rows[s]:
            counts[r[5]] = counts.get(r[5], 0) + 1
        summary[s] = counts
        log.info("%s: %d items %s", s, len(rows[s]), counts)
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


