"""Evaluate a model file on a folder or list of real recordings: accuracy for a keyword
spotter, WER and "exactly right" rate for an ASR conformer (``denseshift-speech evaluate``).

Evaluation sets, told apart by their layout (:func:`detect_layout`):

* ``speech_commands``: a Google Speech Commands folder, one sub-folder of clips per word
  (``<word>/<speaker>_nohash_<n>.wav``), possibly ``_unknown_`` (other words, named
  ``<word>_<speaker>_nohash_<n>.wav``) and ``_silence_`` (background noise) as in the
  12-class test set.  A whole corpus with ``testing_list.txt`` is evaluated on that list.
* ``free_spoken_digits``: a folder of ``<digit>_<speaker>_<n>.wav`` files (FSDD, 8 kHz);
  the reference is the digit's English word.
* ``csv``: a CSV with a header row ``wav,transcript`` (paths relative to the CSV), or a
  recipe manifest ``ID,duration,wav,spk_id,wrd``.

A keyword spotter classifies each clip among its classes; the folder (or digit word) names
the reference class, mapped by :func:`map_folder`.  An ASR model decodes each clip with
full context (the recipe's offline decoding), equal-length clips in one batch, with the
best decoding the file supports (:func:`~.lm_search.choose_decoding`).  Audio follows the
``stream`` input policy (:mod:`.audio`): resampled to the model's rate, downmixed, empty
or unreadable files refused naming the file, non-finite samples zeroed and counted.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import os
import re
import time

import torch

from ..errors import UserError
from .audio import read_audio
from .model import ModelFileError, load_model, read_header

LAYOUTS = ("speech_commands", "free_spoken_digits", "csv")
EXPECTED = ("expected a Speech Commands folder (one sub-folder of .wav clips per word, "
            "<speaker>_nohash_<n>.wav), a Free Spoken Digit folder (<digit>_<speaker>_<n>.wav "
            "files) or a CSV with a header row wav,transcript")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
UNKNOWN_FOLDER, SILENCE_FOLDER = "_unknown_", "_silence_"
# Speech Commands folders that hold no test clips (noise, the synthetic corpus' extras)
# start with "_"; of those, only these two are classes.
SPECIAL_FOLDERS = (UNKNOWN_FOLDER, SILENCE_FOLDER)
TEST_LIST = "testing_list.txt"
DIGIT_FILE = re.compile(r"^(\d)_([^_]+)_(\d+)\.wav$", re.IGNORECASE)
LIBRISPEECH_FILE = re.compile(r"^(\d+)-\d+-\d+\.\w+$")
NO_SPEAKER = "(none)"
BATCH_SIZE = 32


@dataclasses.dataclass
class Clip:
    path: str
    group: str          # folder (speech_commands), digit word (digits), "" (csv)
    reference: str      # the words said: folder word, digit word, transcript ("" if none)
    speaker: str


@dataclasses.dataclass
class EvalSet:
    path: str
    layout: str
    clips: list
    notes: list         # how the set was read (restrictions, skipped folders)


# --------------------------------------------------------------------- layouts ---------

def _is_wav(name: str) -> bool:
    return name.lower().endswith(".wav") and not name.startswith(".")


def _wav_files(folder: str) -> list:
    return sorted(n for n in os.listdir(folder)
                  if _is_wav(n) and os.path.isfile(os.path.join(folder, n)))


def _clip_folders(path: str) -> tuple[list, list]:
    """(word/class folders with .wav clips, other "_..._" folders with .wav files)."""
    folders, ignored = [], []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(".") or not os.path.isdir(full) or not _wav_files(full):
            continue
        if name.startswith("_") and name not in SPECIAL_FOLDERS:
            ignored.append(name)
        else:
            folders.append(name)
    return folders, ignored


def _found(path: str) -> str:
    """What a folder holds, in words (for the layout error)."""
    names = [n for n in os.listdir(path) if not n.startswith(".")]
    if not names:
        return "the folder is empty"
    files = [n for n in names if os.path.isfile(os.path.join(path, n))]
    dirs = [n for n in names if os.path.isdir(os.path.join(path, n))]
    wavs = [n for n in files if _is_wav(n)]
    return (f"found {len(files)} file(s) ({len(wavs)} .wav) and {len(dirs)} sub-folder(s), "
            "none holding a .wav clip" if not wavs else
            f"found {len(wavs)} .wav file(s)")


def detect_layout(path) -> str:
    """Which of :data:`LAYOUTS` ``path`` is; :class:`UserError` naming what was found
    otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or folder")
    if os.path.isfile(path):
        if path.lower().endswith(".csv"):
            return "csv"
        raise UserError(f"{path}: a file that is not a .csv; {EXPECTED}")
    folders, _ = _clip_folders(path)
    top = _wav_files(path)
    if folders and top:
        raise UserError(f"{path}: both .wav files at the top ({len(top)}) and word sub-folders "
                        f"({', '.join(folders[:5])}); {EXPECTED}, not a mix")
    if folders:
        return "speech_commands"
    if top:
        odd = [n for n in top if not DIGIT_FILE.match(n)]
        if not odd:
            return "free_spoken_digits"
        raise UserError(f"{path}: {len(top)} .wav files at the top, {len(odd)} of them not "
                        f"named <digit>_<speaker>_<n>.wav (e.g. {odd[0]}); {EXPECTED}")
    raise UserError(f"{path}: {_found(path)}; {EXPECTED}")


def _nohash_speaker(filename: str, folder: str) -> str:
    """Speaker of a Speech Commands clip: the part before ``_nohash_``; ``_unknown_``
    clips carry their word in front (``<word>_<speaker>_nohash_<n>``)."""
    if "_nohash_" not in filename:
        return NO_SPEAKER          # _silence_ clips: cut from background noise
    speaker = filename.split("_nohash_")[0]
    if folder == UNKNOWN_FOLDER and "_" in speaker:
        speaker = speaker.split("_", 1)[1]
    return speaker


def _test_list(path: str):
    """The clips of ``testing_list.txt`` (a whole corpus: evaluate its test split), or None."""
    listed = os.path.join(path, TEST_LIST)
    if not os.path.isfile(listed):
        return None
    with open(listed, encoding="utf-8") as f:
        return {line.strip().replace("\\", "/") for line in f if line.strip()}


def _read_speech_commands(path: str) -> EvalSet:
    folders, ignored = _clip_folders(path)
    listed = _test_list(path)
    notes = []
    if ignored:
        notes.append(f"ignored folder(s) {', '.join(ignored)} (not clips of a class)")
    if listed is not None:
        notes.append(f"{TEST_LIST} found: only the {len(listed)} clips it lists are evaluated")
    clips = []
    for folder in folders:
        for name in _wav_files(os.path.join(path, folder)):
            if listed is not None and f"{folder}/{name}" not in listed:
                continue
            word = "" if folder in SPECIAL_FOLDERS else folder
            clips.append(Clip(os.path.join(path, folder, name), folder, word,
                              _nohash_speaker(name, folder)))
    return EvalSet(path, "speech_commands", clips, notes)


def _read_digits(path: str) -> EvalSet:
    clips = []
    for name in _wav_files(path):
        digit, speaker, _ = DIGIT_FILE.match(name).groups()
        word = DIGIT_WORDS[int(digit)]
        clips.append(Clip(os.path.join(path, name), word, word, speaker))
    return EvalSet(path, "free_spoken_digits", clips, [])


def _csv_speaker(row: dict, wav: str) -> str:
    """The row's spk_id / speaker column, else the speaker in a known file-name pattern."""
    for column in ("spk_id", "speaker"):
        if row.get(column):
            return row[column]
    name = os.path.basename(wav)
    for pattern, group in ((DIGIT_FILE, 2), (LIBRISPEECH_FILE, 1)):
        m = pattern.match(name)
        if m:
            return m.group(group)
    if "_nohash_" in name:
        return _nohash_speaker(name, "")
    return NO_SPEAKER


def _read_csv(path: str) -> EvalSet:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        text_column = next((c for c in ("transcript", "wrd") if c in header), None)
        if "wav" not in header or text_column is None:
            raise UserError(f"{path}: header row {','.join(header) or '(none)'} lacks the "
                            "columns wav and transcript; expected a header row wav,transcript "
                            "(or the recipe manifest's ID,duration,wav,spk_id,wrd)")
        reader.fieldnames = header
        rows = list(reader)
    folder = os.path.dirname(os.path.abspath(path))
    clips = []
    for line, row in enumerate(rows, start=2):
        wav = (row.get("wav") or "").strip()
        if not wav:
            raise UserError(f"{path}: line {line} has no wav path")
        wav = wav if os.path.isabs(wav) else os.path.join(folder, wav)
        clips.append(Clip(wav, "", (row.get(text_column) or "").strip(), _csv_speaker(row, wav)))
    return EvalSet(path, "csv", clips, [])


def read_eval_set(path) -> EvalSet:
    """The clips of an evaluation set (any of :data:`LAYOUTS`), in a stable order."""
    path = os.fspath(path)
    layout = detect_layout(path)
    reader = {"speech_commands": _read_speech_commands, "free_spoken_digits": _read_digits,
              "csv": _read_csv}[layout]
    found = reader(path)
    if not found.clips:
        raise UserError(f"{path}: no clips to evaluate ({layout.replace('_', ' ')} layout"
                        f"{'; ' + '; '.join(found.notes) if found.notes else ''})")
    return found


def _interleave(items: list, key) -> list:
    """``items`` reordered to take one of each ``key`` in turn (first-seen key order)."""
    queues = collections.OrderedDict()
    for item in items:
        queues.setdefault(key(item), collections.deque()).append(item)
    out = []
    while len(out) < len(items):
        out += [q.popleft() for q in queues.values() if q]
    return out


def take(items: list, limit: int | None, clip=lambda item: item) -> list:
    """At most ``limit`` items, taken in turn from each folder / digit and, within one,
    from each speaker, so a short run still covers every class and many voices; all of
    them, in their order, for ``limit`` None or 0.  ``clip``: an item's :class:`Clip`."""
    if not limit or limit >= len(items):
        return list(items)
    by_speaker = _interleave(items, lambda item: (clip(item).group, clip(item).speaker))
    grouped = sorted(by_speaker, key=lambda item: clip(item).group)  # stable: speakers stay mixed
    return _interleave(grouped, lambda item: clip(item).group)[:limit]


# ----------------------------------------------------------------- references --------

def _label_named(labels, names):
    return next((n for n in names if n in labels), None)


def map_folder(group: str, labels) -> tuple[str | None, str]:
    """(the keyword spotter's class for clips of folder/word ``group``, or None to skip
    them; why).  A class name maps to itself, ``_silence_`` to the silence class, and
    ``_unknown_`` or any other word to the unknown class, when the model has them."""
    unknown = _label_named(labels, ("unknown", UNKNOWN_FOLDER))
    silence = _label_named(labels, ("silence", SILENCE_FOLDER))
    if group in labels:
        return group, "a class of the model"
    if group == SILENCE_FOLDER:
        return (silence, "the model's silence class") if silence else \
            (None, "skipped: the model has no silence class")
    kind = "other words" if group == UNKNOWN_FOLDER else "not a class of the model"
    return (unknown, f"{kind}: the model's unknown class") if unknown else \
        (None, f"skipped: {kind}, and the model has no unknown class")


def kws_references(found: EvalSet, labels) -> tuple[list, list, dict]:
    """(clips kept, their reference class indices, {group: mapping row}) for a keyword
    spotter with classes ``labels``."""
    if found.layout == "csv":
        raise UserError(f"{found.path}: a CSV of transcripts is an ASR evaluation set; a keyword "
                        "spotter needs a Speech Commands folder (one sub-folder per word)")
    counts = collections.Counter(c.group for c in found.clips)
    mapping = {}
    for group in counts:
        label, why = map_folder(group, labels)
        mapping[group] = {"class": label, "clips": counts[group], "why": why}
    if not any(row["class"] == group for group, row in mapping.items()):
        words = ", ".join(list(counts)[:10])
        if found.layout == "free_spoken_digits":
            what = "spoken digits, and the digit words are not the keyword spotter's classes"
        else:
            what = f"none of its folders ({words}) names a class of the keyword spotter"
        raise UserError(f"{found.path}: {what} ({', '.join(labels)}); evaluate it with an "
                        "ASR model, or a spotter trained on these words")
    index = {label: i for i, label in enumerate(labels)}
    kept = [c for c in found.clips if mapping[c.group]["class"] is not None]
    return kept, [index[mapping[c.group]["class"]] for c in kept], mapping


def normalize_text(text: str) -> str:
    """Transcripts compared case-insensitively, punctuation (but the apostrophe) ignored:
    the recipes' LibriSpeech vocabulary is upper-case letters and apostrophes."""
    return " ".join(re.sub(r"[^A-Z0-9']+", " ", text.upper()).split())


def asr_references(found: EvalSet) -> tuple[list, list]:
    """(clips with words to transcribe, notes on the ones skipped)."""
    kept = [c for c in found.clips if normalize_text(c.reference)]
    skipped = collections.Counter(c.group or "(empty transcript)" for c in found.clips
                                  if not normalize_text(c.reference))
    notes = [f"skipped {group} ({n} clips): no reference words" for group, n in skipped.items()]
    if not kept:
        raise UserError(f"{found.path}: no clip with a reference transcript to evaluate "
                        f"({'; '.join(notes)})")
    return kept, notes


# ---------------------------------------------------------------------- audio ----------

def read_clips(clips, sample_rate: int) -> tuple[list, dict]:
    """(mono float32 waveforms at ``sample_rate``, non-finite samples zeroed; input
    counts).  Every file is read before the model runs, so a bad one stops the run at
    once, naming the file (:class:`~.audio.AudioError`)."""
    waves, counts = [], collections.Counter()
    for clip in clips:
        audio = read_audio(clip.path, sample_rate)
        samples = audio.samples
        bad = ~torch.isfinite(samples)
        if bool(bad.any()):
            counts["nonfinite_clips"] += 1
            counts["nonfinite_samples"] += int(bad.sum())
            samples = samples.masked_fill(bad, 0.0)
        counts["resampled"] += audio.file_sample_rate != sample_rate
        counts["downmixed"] += audio.channels > 1
        counts["silent"] += any(note.startswith("silent") for note in audio.notes)
        counts["audio_seconds"] += audio.seconds
        waves.append(samples)
    return waves, {k: (round(v, 3) if isinstance(v, float) else int(v)) for k, v in counts.items()}


def _batches(lengths, batch_size: int):
    """Index lists of equal-length items, at most ``batch_size`` each (padding never
    enters a batch, so each clip's result is the one it gets alone)."""
    by_length = collections.defaultdict(list)
    for i, n in enumerate(lengths):
        by_length[n].append(i)
    for n in sorted(by_length):
        idx = by_length[n]
        for k in range(0, len(idx), batch_size):
            yield idx[k:k + batch_size]


def _pad(wave: torch.Tensor, samples: int) -> torch.Tensor:
    return torch.nn.functional.pad(wave, (0, max(0, samples - wave.numel())))


# --------------------------------------------------------------- keyword spotter -------

def classify(model, waves, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Posteriors ``(clips, classes)``: each clip zero-padded to the spotter's 1-second
    input (longer clips kept whole), the normalization told the clip's true length, as in
    the recipe's batches."""
    padded = [_pad(w, model.clip_samples) for w in waves]
    out = torch.zeros(len(waves), len(model.labels))
    for idx in _batches([p.numel() for p in padded], batch_size):
        batch = torch.stack([padded[i] for i in idx])
        lengths = torch.tensor([waves[i].numel() / batch.shape[1] for i in idx])
        out[idx] = model.posteriors(batch, lengths)
    return out


def _rate(right: int, total: int) -> float:
    return round(100.0 * right / total, 2) if total else 0.0


def _accuracy_by(keys, right) -> dict:
    totals, hits = collections.Counter(keys), collections.Counter()
    for key, ok in zip(keys, right):
        hits[key] += bool(ok)
    return {k: {"clips": totals[k], "correct": hits[k], "accuracy": _rate(hits[k], totals[k])}
            for k in sorted(totals)}


def score_kws(clips, references, predictions, labels) -> dict:
    """Accuracy overall, per reference class, per folder and per speaker, and the
    confusion matrix (rows: reference class, columns: predicted)."""
    right = [r == p for r, p in zip(references, predictions)]
    confusion = [[0] * len(labels) for _ in labels]
    for r, p in zip(references, predictions):
        confusion[r][p] += 1
    return {
        "clips": len(clips), "correct": sum(right), "accuracy": _rate(sum(right), len(clips)),
        "per_class": _accuracy_by([labels[r] for r in references], right),
        "per_folder": _accuracy_by([c.group for c in clips], right),
        "per_speaker": _accuracy_by([c.speaker for c in clips], right),
        "confusion": {"labels": list(labels), "matrix": confusion},
    }


# ----------------------------------------------------------------------- ASR -----------

def _min_samples(model) -> int:
    """Shortest input the full-context front-end takes (its receptive field): shorter
    clips are zero-padded to it, as the streaming decoder does."""
    from speechbrain.utils.filter_analysis import stack_filter_properties
    return int(stack_filter_properties([model.compute_features, model.CNN]).window_size)


@torch.no_grad()
def ctc_logits(model, wavs: torch.Tensor) -> torch.Tensor:
    """Full-context CTC logits ``(batch, frames, vocab)`` of equal-length waveforms
    ``(batch, samples)``: :func:`~.decoder.decode_full` (recipe features, no chunk mask)
    for a batch; the features' dB floor is per utterance, so batching changes nothing."""
    ones = torch.ones(wavs.shape[0])
    src = model.CNN(model.normalize(model.compute_features(wavs), ones))
    src = src.reshape(src.shape[0], src.shape[1], -1)
    return model.ctc_lin(model.Transformer.encode(src, ones))


def greedy_text(model, logits: torch.Tensor) -> str:
    """Greedy CTC of one utterance's logits ``(frames, vocab)``: collapse repeats, drop
    blanks."""
    tokens, prev = [], model.blank_index
    for label in logits.argmax(-1).tolist():
        if label != model.blank_index and label != prev:
            tokens.append(label)
        prev = label
    return model.tokenizer.decode_ids(tokens) if tokens else ""


def transcribe(model, waves, lm_search=None, batch_size: int = BATCH_SIZE) -> list:
    """Full-context transcripts of ``waves``: greedy CTC, or the LM-fused beam search."""
    from .run import offline_lm_text
    shortest = _min_samples(model)
    padded = [_pad(w, shortest) for w in waves]
    texts = [""] * len(waves)
    for idx in _batches([p.numel() for p in padded], batch_size):
        logits = ctc_logits(model, torch.stack([padded[i] for i in idx]))
        for row, i in enumerate(idx):
            texts[i] = (offline_lm_text(lm_search, logits[row:row + 1]) if lm_search is not None
                        else greedy_text(model, logits[row]))
    return texts


def _wer_by(keys, errors, words, exact) -> dict:
    out = {}
    for key in sorted(set(keys)):
        rows = [i for i, k in enumerate(keys) if k == key]
        e, n, x = (sum(v[i] for i in rows) for v in (errors, words, exact))
        out[key] = {"utterances": len(rows), "exact": x, "exact_rate": _rate(x, len(rows)),
                    "word_errors": e, "ref_words": n, "wer": _rate(e, n)}
    return out


def score_asr(clips, hypotheses) -> dict:
    """WER and exactly-right rate overall, per speaker and, when every reference is one
    word, per word (with its most frequent hypotheses)."""
    from .run import word_errors
    refs = [normalize_text(c.reference) for c in clips]
    hyps = [normalize_text(h) for h in hypotheses]
    errors, words = zip(*(word_errors(r, h) for r, h in zip(refs, hyps)))
    exact = [int(r == h) for r, h in zip(refs, hyps)]
    out = {"utterances": len(clips), "exact": sum(exact), "exact_rate": _rate(sum(exact), len(clips)),
           "word_errors": sum(errors), "ref_words": sum(words), "wer": _rate(sum(errors), sum(words)),
           "per_speaker": _wer_by([c.speaker for c in clips], errors, words, exact)}
    if all(len(r.split()) == 1 for r in refs):
        out["per_word"] = _wer_by(refs, errors, words, exact)
        for word, row in out["per_word"].items():
            said = collections.Counter(h or "(nothing)" for r, h in zip(refs, hyps) if r == word)
            row["top_hypotheses"] = said.most_common(3)
    return out


# --------------------------------------------------------------------- driver ----------

def model_task(path) -> str:
    """"kws" or "asr": what the model file's metadata says it is."""
    task = read_header(path)["metadata"].get("task") or "asr"
    if task not in ("kws", "asr"):
        raise ModelFileError(f"{os.fspath(path)}: task {task!r}: neither a keyword spotter "
                             "(kws) nor an ASR model (asr)")
    return task


def load_any(path, fp32: bool = False, kernel_path: str | None = None):
    """The keyword spotter or the ASR model stored in ``path``."""
    if model_task(path) == "kws":
        from .kws import load_kws_model
        return load_kws_model(path, fp32=fp32, kernel_path=kernel_path)
    return load_model(path, fp32=fp32, kernel_path=kernel_path)


def describe_model(model) -> dict:
    from .. import kernels
    return {"model": model.path, "model_file_bytes": int(model.sizes.get("file_bytes", 0)),
            "packed": model.packed, "bits": model.bits,
            "compute": "fp32 (packed weights decoded)" if model.fp32 else
                       ("denseshift packed" if model.packed else "fp32"),
            "kernel_path": sorted({m.path for m in model.packed_modules()}) or None,
            "native_kernel_available": kernels.native_available(),
            "threads": torch.get_num_threads()}


def _timed(run, model):
    """(result of ``run()``, seconds, whether the packed native op ran)."""
    from .. import kernels
    from .run import count_packed_calls
    with count_packed_calls(model) as calls:
        t0 = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - t0
    return result, seconds, bool(kernels.native_available() and calls["calls"] > 0)


def _evaluate_kws(model, found: EvalSet, limit, batch_size) -> dict:
    clips, refs, mapping = kws_references(found, model.labels)
    picked = take(list(zip(clips, refs)), limit, clip=lambda pair: pair[0])
    clips, refs = [c for c, _ in picked], [r for _, r in picked]
    waves, inputs = read_clips(clips, model.sample_rate)
    probs, seconds, native = _timed(lambda: classify(model, waves, batch_size), model)
    predictions = probs.argmax(-1).tolist()
    result = {"task": "kws", "labels": list(model.labels), "mapping": mapping,
              **score_kws(clips, refs, predictions, model.labels)}
    result["per_clip"] = [
        {"wav": c.path, "folder": c.group, "speaker": c.speaker,
         "reference": model.labels[r], "predicted": model.labels[p],
         "probability": round(float(probs[i, p]), 4)}
        for i, (c, r, p) in enumerate(zip(clips, refs, predictions))]
    return {**result, "input": inputs, "compute_seconds": round(seconds, 3), "native_kernel": native}


def _evaluate_asr(model, found: EvalSet, limit, batch_size, decoding, lm_arpa) -> dict:
    from .lm_search import LMSearchError, StreamingLMSearch, choose_decoding
    clips, notes = asr_references(found)
    clips = take(clips, limit)
    try:
        choice = choose_decoding(model.path, decoding, model.hparams, lm_arpa)
        lm_search = (StreamingLMSearch.for_model(model, choice.lm_path)
                     if choice.decoding == "beam_lm" else None)
    except LMSearchError as err:
        raise UserError(f"beam_lm decoding: {err}") from None
    waves, inputs = read_clips(clips, model.sample_rate)
    shortest = _min_samples(model)
    short = sum(w.numel() < shortest for w in waves)
    if short:
        inputs["padded"] = short   # shorter than the front-end's window: zero-padded to it
    hyps, seconds, native = _timed(lambda: transcribe(model, waves, lm_search, batch_size), model)
    result = {"task": "asr", "decoding": choice.decoding, "decoding_reason": choice.reason,
              "lm_arpa": choice.lm_path, "skipped": notes, **score_asr(clips, hyps)}
    result["per_clip"] = [
        {"wav": c.path, "speaker": c.speaker, "reference": c.reference, "hypothesis": h,
         "exact": normalize_text(c.reference) == normalize_text(h)}
        for c, h in zip(clips, hyps)]
    return {**result, "input": inputs, "compute_seconds": round(seconds, 3), "native_kernel": native}


def evaluate(model_path, data_path, limit: int | None = None, fp32: bool = False,
             kernel_path: str | None = None, decoding: str | None = None,
             lm_arpa: str | None = None, batch_size: int = BATCH_SIZE) -> dict:
    """Run the model file ``model_path`` on the evaluation set ``data_path``; return every
    figure (see the module docstring): ``task``, ``layout``, counts, accuracy or WER,
    per-class / per-word / per-speaker tables, per-clip rows (``per_clip``), input notes
    and timing.  ``decoding`` (ASR): None (the best the file supports), "greedy" or
    "beam_lm"."""
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    model = load_any(model_path, fp32=fp32, kernel_path=kernel_path)
    found = read_eval_set(data_path)
    if hasattr(model, "labels"):
        if decoding or lm_arpa:
            raise UserError(f"{model.path}: a keyword spotter; the decoding and its LM are "
                            "settings of ASR models")
        result = _evaluate_kws(model, found, limit, batch_size)
    else:
        result = _evaluate_asr(model, found, limit, batch_size, decoding, lm_arpa)
    audio = result["input"].get("audio_seconds", 0.0)
    return {**describe_model(model), "data": os.fspath(data_path), "layout": found.layout,
            "data_notes": found.notes, **result,
            "rtf": round(result["compute_seconds"] / audio, 5) if audio else None}
