"""LibriSpeech preparation: ``<save_folder>/<split>.csv`` manifests with SpeechBrain's
columns ``ID,duration,wav,spk_id,wrd``, from the real corpus or the synthetic one
(identical layouts: ``<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` and
``<spk>-<chapter>.trans.txt``).

Every audio file and transcript is checked (:mod:`.audio_checks`); bad ones are skipped
and listed in ``<save_folder>/bad_files.txt`` with the reason (count in the log), or,
with ``strict=True``, the first one raises :class:`BadAudioError`.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re

import soundfile as sf

from .manifest import already_prepared, write_csv
from .audio_checks import (LIBRISPEECH_CHARS, BadAudioError, DataError, check_transcript,
                           inspect_audio, load_fixed)

log = logging.getLogger(__name__)

OPT_FILE = "opt_librispeech_prepare.json"
HEADER = ["ID", "duration", "wav", "spk_id", "wrd"]
_UID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def prepare_librispeech(data_folder, save_folder, tr_splits=(), dev_splits=(), te_splits=(),
                        select_n_sentences=None, merge_lst=None, merge_name=None,
                        create_lexicon=False, skip_prep=False, strict=False, expected_sr=16000, resample=False,
                        check="full", token_set=LIBRISPEECH_CHARS, min_duration=0.05,
                        max_duration=None):
    """Write ``<save_folder>/<split>.csv`` for every split in ``tr_splits + dev_splits +
    te_splits`` (and ``<merge_name>.csv``, the concatenation of ``merge_lst``).

    ``resample``: a file at another sample rate or with several channels is refused
    (listed as bad) unless ``resample=True``, in which case a 16 kHz mono FLAC copy is
    written under ``<save_folder>/fixed_audio/`` and the manifest points to it.
    ``check``: ``"full"`` decodes every file (catches truncation and NaN/inf),
    ``"header"`` only reads headers.  ``select_n_sentences``: keep the first N
    utterances (by ID) of each split.  Returns ``{split: {"kept": n, "bad": m}}``, or
    ``None`` when skipped.
    """
    if skip_prep:
        return None
    if create_lexicon:
        raise DataError("prepare_librispeech: create_lexicon=True is not supported "
                        "(no lexicon download offline); use create_lexicon=False")
    data_folder, save_folder = os.path.abspath(data_folder), os.path.abspath(save_folder)
    splits = list(tr_splits or []) + list(dev_splits or []) + list(te_splits or [])
    if not splits:
        raise DataError("prepare_librispeech: no split requested "
                        "(tr_splits, dev_splits and te_splits are all empty)")
    if merge_lst and not merge_name:
        raise DataError("prepare_librispeech: merge_lst given without merge_name")
    if check not in ("full", "header"):
        raise DataError(f"prepare_librispeech: check must be 'full' or 'header', not {check!r}")
    options = {"data_folder": data_folder, "splits": splits,
               "select_n_sentences": select_n_sentences,
               "merge_lst": list(merge_lst or []), "merge_name": merge_name,
               "strict": bool(strict), "expected_sr": expected_sr, "resample": bool(resample),
               "check": check, "token_set": "".join(sorted(token_set)) if token_set else None,
               "min_duration": min_duration, "max_duration": max_duration}
    outputs = [os.path.join(save_folder, f"{s}.csv") for s in splits]
    if merge_lst:
        outputs.append(os.path.join(save_folder, f"{merge_name}.csv"))
    if already_prepared(save_folder, OPT_FILE, options, outputs):
        log.info("LibriSpeech manifests in %s already prepared with these options; skipping",
                 save_folder)
        return None
    if not os.path.isdir(data_folder):
        raise DataError(f"LibriSpeech data folder not found: {data_folder}")
    for s in splits:
        if not os.path.isdir(os.path.join(data_folder, s)):
            found = sorted(d for d in os.listdir(data_folder)
                           if os.path.isdir(os.path.join(data_folder, d)))
            raise DataError(f"split {s!r} not found in {data_folder} (folders there: "
                            f"{', '.join(found) or 'none'})")
    os.makedirs(save_folder, exist_ok=True)
    opt_path = os.path.join(save_folder, OPT_FILE)
    if os.path.exists(opt_path):
        os.remove(opt_path)

    summary, all_bad = {}, []
    for s in splits:
        rows, bad = _prepare_split(data_folder, save_folder, s, select_n_sentences, strict,
                                   expected_sr, resample, check, token_set, min_duration,
                                   max_duration)
        write_csv(os.path.join(save_folder, f"{s}.csv"), HEADER, rows)
        summary[s] = {"kept": len(rows), "bad": len(bad)}
        all_bad += [(s, p, r) for p, r in bad]
        log.info("%s: %d utterances kept, %d bad files skipped", s, len(rows), len(bad))
        for p, r in bad[:10]:
            log.warning("  skipped %s: %s", p, r)
        if len(bad) > 10:
            log.warning("  ... and %d more (see bad_files.txt)", len(bad) - 10)
    with open(os.path.join(save_folder, "bad_files.txt"), "w") as fh:
        for s, p, r in all_bad:
            fh.write(f"{s}\t{p}\t{r}\n")
    if merge_lst:
        missing = [m for m in merge_lst if m not in splits]
        if missing:
            raise DataError(f"merge_lst names splits that were not prepared: {missing}")
        merged = []
        for m in merge_lst:
            with open(os.path.join(save_folder, f"{m}.csv"), newline="") as fh:
                merged += list(csv.DictReader(fh))
        write_csv(os.path.join(save_folder, f"{merge_name}.csv"), HEADER,
                  [[r[h] for h in HEADER] for r in merged])
        summary[merge_name] = {"kept": len(merged), "bad": 0}
    with open(opt_path, "w") as fh:
        json.dump(options, fh, indent=1)
    return summary




def _prepare_split(data_folder, save_folder, split, select_n, strict, expected_sr, resample,
                   check, token_set, min_duration, max_duration):
    """Rows ``[ID, duration, wav, spk_id, wrd]`` (sorted by ID) and ``[(path, reason)]``."""
    root = os.path.join(data_folder, split)
    bad = []

    def reject(path, reason):
        if strict:
            raise BadAudioError(path, reason)
        bad.append((path, reason))

    transcripts, flacs = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            if fn.endswith(".trans.txt"):
                try:
                    with open(full, encoding="utf-8") as fh:
                        lines = fh.read().splitlines()
                except (OSError, UnicodeDecodeError) as err:
                    reject(full, f"unreadable transcript file ({err})")
                    continue
                for n, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    parts = line.strip().split(" ", 1)
                    uid = parts[0]
                    text = parts[1].strip() if len(parts) > 1 else ""
                    wav = os.path.join(dirpath, uid + ".flac")
                    if uid in transcripts:
                        reject(f"{full}:{n}", f"duplicate utterance ID {uid}")
                        continue
                    transcripts[uid] = (text, wav, f"{full}:{n}")
            elif fn.endswith(".flac"):
                flacs[fn[:-5]] = full
            # anything else (README, .DS_Store, SPEAKERS.TXT...) is ignored

    rows = []
    for uid in sorted(set(transcripts) | set(flacs)):
        if uid not in transcripts:
            reject(flacs[uid], "no transcript line for this file")
            continue
        text, wav, where = transcripts[uid]
        m = _UID.match(uid)
        if not m:
            reject(where, f"utterance ID {uid!r} is not <speaker>-<chapter>-<utterance>")
            continue
        if uid not in flacs or os.path.abspath(flacs[uid]) != os.path.abspath(wav):
            reject(wav, f"audio file missing (transcript line {where})")
            continue
        ok, why = check_transcript(text, token_set)
        if not ok:
            reject(wav, f"{why} (transcript line {where})")
            continue
        info = inspect_audio(wav, expected_sr=expected_sr, resample=resample,
                             full=(check == "full"), min_duration=min_duration,
                             max_duration=max_duration)
        if not info.ok:
            reject(wav, info.reason)
            continue
        duration = info.duration
        if info.needs_fix:
            fixed = os.path.join(save_folder, "fixed_audio", split, uid + ".flac")
            os.makedirs(os.path.dirname(fixed), exist_ok=True)
            y = load_fixed(wav, expected_sr)
            sf.write(fixed, y, expected_sr, format="FLAC", subtype="PCM_16")
            log.info("converted %s (%s) -> %s", wav, info.reason, fixed)
            wav, duration = fixed, len(y) / expected_sr
        spk_id = f"{m.group(1)}-{m.group(2)}"
        rows.append([uid, f"{duration:.4f}", wav, spk_id, text])
    if select_n is not None:
        rows = rows[: int(select_n)]
    return rows, bad
