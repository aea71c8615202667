"""Synthetic speech corpora in the real datasets' layouts, spoken by several offline
speech engines (:mod:`.engines`) under varied acoustic conditions (:mod:`.augment`).

* :func:`synthesize_librispeech` -- an ASR corpus in the LibriSpeech layout
  (``<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` + ``<spk>-<chapter>.trans.txt``),
  16 kHz mono 16-bit FLAC:

  ================  ==================================================================
  train-clean-100   espeak-ng voices, and flite, mbrola, pico, rhvoice, kokoro (voices
                    and blends of two) and piper ones (ROLE_VOICES says which)
  dev-clean         held-out voices of espeak-ng, flite (kal16) and kokoro
  test-clean        other held-out voices of espeak-ng, flite (slt), mbrola (en1),
                    rhvoice (lyubov) and kokoro
  test-other        festival, an engine never used in training, in simulated rooms,
                    with noise and sometimes a telephone channel
  ================  ==================================================================

  plus ``librispeech-lm-norm.txt``: text for the n-gram LM, as LibriSpeech's LM corpus
  (utterances of the training words, none of them a dev or test one).  Besides grammar
  sentences, DEVICE_SHARE of each split are single words, short commands and digit
  strings, as people say to a device.

* :func:`synthesize_speech_commands` -- a keyword-spotting corpus in the Google Speech
  Commands v0.02 layout (``<word>/<speaker>_nohash_<n>.wav`` 1-second 16 kHz 16-bit WAVs,
  ``validation_list.txt``, ``testing_list.txt``, ``_background_noise_/``), plus
  festival clips under ``_other_engine_/<word>/`` listed in ``testing_other_list.txt``
  (outside the word folders, so a stock recipe that trains on every unlisted clip does
  not train on them).

A "speaker" is an engine, a voice and a rate/pitch profile; the voices are disjoint
between splits.  Each corpus also holds ``_augmentation_/`` (room impulse responses and
noise recordings) for on-the-fly augmentation in training.  Everything is a function of
the seed (and of the engines' versions, recorded in the marker file).  A finished corpus
holds a marker ``.denseshift_synth.json`` with the options; a second call with the same
options returns the recorded stats without synthesizing again, and a call after an
interrupted one keeps the files already written and finishes the rest.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import soundfile as sf

from ..fsio import atomic_open, atomic_path
from . import engines, grammar
from .audio_checks import DataError, speech_check
from .augment import Conditions, add_noise, make_noise, write_augmentation_sources
from .engines import Speaker

log = logging.getLogger(__name__)

# per corpus kind, raised when what that kind's synthesizer writes changes, so that an
# older corpus of the kind is written anew (librispeech 7 and 9: the LM text)
GENERATOR_VERSIONS = {"librispeech": 9, "speech-commands": 7}
MARKER = ".denseshift_synth.json"
PARTIAL = ".denseshift_synth.partial"
SR = 16000

TRAIN_ENGINES = ("espeak-ng", "flite", "mbrola", "pico", "rhvoice", "kokoro", "piper")
HELD_OUT_ENGINE = "festival"
# share of each split's speakers spoken by the training engines other than espeak-ng,
# dealt among those with voices for the split in proportion to ENGINE_WEIGHTS (1 where
# not listed: the neural voices sound most like people); espeak-ng speaks the rest
ENGINE_SHARE = 0.7
ENGINE_WEIGHTS = {"kokoro": 6, "piper": 2}
# Kokoro's 28 English voices: 20 train (and blends of two of them, further training
# speakers), 4 dev, 4 test, each group with American and British, female and male voices
KOKORO_TRAIN = ("af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore",
                "af_nicole", "af_sarah", "af_sky", "am_adam", "am_fenrir", "am_liam",
                "am_michael", "am_onyx", "am_puck", "am_santa", "bf_alice", "bf_emma",
                "bm_daniel", "bm_george")
KOKORO_BLENDS = tuple(f"{a}+{KOKORO_TRAIN[(k * 7 + 3) % 20]}@{0.3 + 0.1 * (k % 3):.2f}"
                      for k, a in enumerate(KOKORO_TRAIN))
# The voices each split role may use, per engine (roles: train, dev, test, other), so
# that no voice is in two splits.  espeak-ng's accent+variant pairs are dealt out by
# _speakers.  flite's kal, festival's kal_diphone and flite's, RHVoice's and festival's
# slt are recordings of the same two people (CMU's kal and ARCTIC slt): they stay out of
# training, so test-other has neither a voice nor a speaker from the training set
# (RHVoice's slt is in no split at all).  mbrola's us3 is in none either: it lacks
# diphones that espeak-ng's American phonemes need (51 of the grammar's 1,325 words lose
# sounds, "off" and "on" come out silent).  An engine with no voice for a role does not
# speak in that role's split.
ROLE_VOICES = {
    "flite": {"train": ("awb", "rms"), "dev": ("kal16",), "test": ("slt",)},
    "mbrola": {"train": ("mb-us1", "mb-us2"), "test": ("mb-en1",)},
    "pico": {"train": ("en-US", "en-GB")},
    "rhvoice": {"train": ("bdl", "clb", "alan", "evgeniy-eng"), "test": ("lyubov",)},
    "kokoro": {"train": KOKORO_TRAIN + KOKORO_BLENDS,
               "dev": ("af_river", "am_eric", "bf_lily", "bm_lewis"),
               "test": ("af_nova", "am_echo", "bf_isabella", "bm_fable")},
    "piper": {"train": ("joe",)},
    "festival": {"other": ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")},
}
LS_SPLITS = ("train-clean-100", "dev-clean", "test-clean", "test-other")
LS_ROLES = dict(zip(LS_SPLITS, ("train", "dev", "test", "other")))
GSC_CORE = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
GSC_FILLERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
               "nine", "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila",
               "tree", "wow", "backward", "forward", "follow", "learn", "visual")
NOISE_FILES = ("white_noise", "pink_noise", "brown_noise", "running_tap", "hum", "babble")
OTHER_ENGINE_DIR = "_other_engine_"
SPEAKERS_HEADER = "; Synthetic speakers, written by denseshift-speech synth."
# the text corpus for the n-gram LM, by the name of LibriSpeech's own (openslr.org/11)
LM_TEXT = "librispeech-lm-norm.txt"
LM_SENTENCES = 50000
# share of the ASR corpus' utterances that are single words, short commands and digit
# strings rather than grammar sentences
DEVICE_SHARE = 0.3
MAX_SPEAKERS = 1000


def trim(x: np.ndarray, rel_db: float = 40.0, pad: int = 0) -> np.ndarray:
    """Cut leading/trailing near-silence (frames 40 dB under the peak frame)."""
    n = 160
    m = len(x) // n
    if m == 0:
        return x
    e = 10 * np.log10(np.mean(x[: m * n].astype(np.float64).reshape(m, n) ** 2, 1) + 1e-12)
    act = np.nonzero(e > e.max() - rel_db)[0]
    if len(act) == 0:
        return x
    a, b = act[0] * n, min(len(x), (act[-1] + 1) * n)
    return x[max(0, a - pad): min(len(x), b + pad)]


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _rng(*keys) -> np.random.Generator:
    h = hashlib.sha256(repr(keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _write_atomic(path: str, data: np.ndarray, **kw) -> None:
    """Write a sound file under a temporary name, then rename: an interrupted run leaves
    only complete files behind (a resumed run keeps them)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path, suffix=".part") as tmp:
        sf.write(tmp, data, SR, **kw)


# ---------------------------------------------------------------------------------------
# speakers, marker, helpers

def _speakers(tag: str, counts: dict, profiles: dict, id_fn, train_engines,
              share: float) -> dict:
    """Speakers per role (``counts``: role -> number, held-out roles listed first).

    Role "other" speaks with the held-out engine's voices; the others mix espeak-ng with
    ``share`` of speakers by the other ``train_engines`` (dealt by ``_deal``), on the
    voices of ROLE_VOICES.  espeak-ng's accent+variant pairs come from one shuffled list in the
    order of ``counts``, ids from one list drawn up front, and every other draw from a
    stream of its own role, so the held-out roles are the same whatever the training
    count is.
    """
    rng = random.Random(tag)
    pairs = [f"{a}+{v}" for a in engines.ESPEAK_ACCENTS for v in engines.ESPEAK_VARIANTS]
    rng.shuffle(pairs)
    if sum(counts.values()) > MAX_SPEAKERS:
        raise DataError(f"asked for {sum(counts.values())} speakers; at most {MAX_SPEAKERS}")
    ids = iter(id_fn(rng, MAX_SPEAKERS))  # a fixed number: the draw must not depend on counts
    draws = iter([(rng.random(), rng.randint(25, 75), rng.choice([0, 0, 0, 1, 2]))
                  for _ in pairs])
    pairs = iter(pairs)
    out = {}
    for role, n in counts.items():
        lo, hi = profiles[role]
        role_rng = random.Random(f"{tag}-{role}")
        if role == "other":
            plan = [(HELD_OUT_ENGINE, n)]
        else:
            extra = [e for e in train_engines
                     if e != "espeak-ng" and ROLE_VOICES.get(e, {}).get(role)]
            n_extra = 0 if not extra else max(int(n >= 2), int(round(share * n)))
            plan = [("espeak-ng", n - n_extra)] + list(zip(extra, _deal(n_extra, extra)))
        spk = []
        for eng, m in plan:
            for j in range(m):
                if eng == "espeak-ng":
                    try:
                        voice = next(pairs)
                    except StopIteration:
                        raise DataError("asked for more espeak-ng speakers than the "
                                        f"{len(engines.ESPEAK_ACCENTS) * len(engines.ESPEAK_VARIANTS)}"
                                        " distinct accent+variant pairs") from None
                    u, pitch, gap = next(draws)
                else:
                    voices = ROLE_VOICES[eng][role]
                    voice = voices[j % len(voices)]
                    u, pitch, gap = role_rng.random(), role_rng.randint(25, 75), 0
                spk.append(Speaker(next(ids), eng, voice, rate=lo + int(u * (hi - lo + 1)),
                                   pitch=pitch, gap=gap))
        out[role] = sorted(spk, key=lambda s: s.spk_id)
    return out


def _deal(n: int, names) -> list:
    """``n`` speakers dealt among ``names`` in proportion to ENGINE_WEIGHTS (largest
    remainders, ties to the earlier name)."""
    weights = [ENGINE_WEIGHTS.get(e, 1) for e in names]
    exact = [n * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    for k in sorted(range(len(names)), key=lambda k: counts[k] - exact[k])[:n - sum(counts)]:
        counts[k] += 1
    return counts


def _exclusive(synthesize):
    """Serialize syntheses of one folder across processes (two recipes started together,
    DDP ranks): the second waits, then finds the corpus complete and returns at once."""
    @functools.wraps(synthesize)
    def wrapper(out_dir, *args, **kwargs):
        lock_path = os.path.abspath(os.fspath(out_dir)).rstrip(os.sep) + ".lock"
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        with open(lock_path, "w") as lock, contextlib.ExitStack() as stack:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stack.callback(fcntl.flock, lock, fcntl.LOCK_UN)
            return synthesize(out_dir, *args, **kwargs)
    return wrapper


def _check_or_clear(out_dir: str, options: dict, force: bool):
    """Return recorded stats when the corpus is complete with these options; keep the
    files of an interrupted run with the same options (the run resumes); else make
    ``out_dir`` ready for a fresh synthesis (only removing what we wrote earlier)."""
    marker = os.path.join(out_dir, MARKER)
    partial = os.path.join(out_dir, PARTIAL)
    check_not_newer(out_dir)
    if os.path.isfile(marker) and not force:
        try:
            with open(marker) as fh:
                rec = json.load(fh)
            if rec.get("options") == options:
                log.info("%s already holds this corpus; skipping synthesis", out_dir)
                return rec["stats"]
        except (OSError, ValueError, KeyError):
            pass
    if os.path.isfile(partial) and not force:
        try:
            with open(partial) as fh:
                if json.load(fh) == options:
                    log.info("%s holds part of this corpus; finishing it", out_dir)
                    return None
        except (OSError, ValueError):
            pass
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not (os.path.isfile(marker) or os.path.isfile(partial)):
            raise DataError(f"{out_dir} is not empty and was not written by "
                            "`denseshift-speech synth`; choose an empty or new folder")
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with open(partial, "w") as fh:
        json.dump(options, fh)
    return None


def _finish(out_dir: str, options: dict, stats: dict):
    with atomic_open(os.path.join(out_dir, MARKER)) as fh:
        json.dump({"options": options, "stats": stats}, fh, indent=1, sort_keys=True)
    os.remove(os.path.join(out_dir, PARTIAL))


def _jobs(jobs):
    return max(1, int(jobs or min(4, os.cpu_count() or 1)))


def _run_chunked(fn, tasks, key, jobs, path, recorded, max_chunk=40):
    """Group ``tasks`` by ``key`` (one speaker) into chunks, run ``fn(chunk) -> results``
    in a thread pool (the engines run as subprocesses), return results in task order.
    A chunk whose files (``path(task)``) all exist already -- an interrupted run's --
    is not synthesized again: ``recorded(file)`` stands for its results."""
    groups = {}
    for j, t in enumerate(tasks):
        groups.setdefault(key(t), []).append(j)
    chunks = [idx[k: k + max_chunk] for idx in groups.values()
              for k in range(0, len(idx), max_chunk)]

    def run(chunk):
        todo = [tasks[j] for j in chunk]
        if all(os.path.isfile(path(t)) for t in todo):
            return [recorded(path(t)) for t in todo]
        return fn(todo)

    out = [None] * len(tasks)
    with cf.ThreadPoolExecutor(_jobs(jobs)) as ex:
        for idx, res in zip(chunks, ex.map(run, chunks)):
            for j, r in zip(idx, res):
                out[j] = r
    return out


def _post(x: np.ndarray, r: np.random.Generator, cond: Conditions, pad: tuple,
          lead: float = 0.2) -> np.ndarray:
    """Trim the engine's silences, pad with 0-``lead`` s, apply the split's conditions."""
    x = trim(x, pad=int(r.uniform(*pad) * SR))
    x = np.concatenate([np.zeros(int(r.uniform(0.0, lead) * SR), np.float32), x,
                        np.zeros(int(r.uniform(0.0, lead) * SR), np.float32)])
    x = cond.apply(x, r)
    peak = np.abs(x).max()
    return x * (0.99 / peak) if peak > 0.99 else x


# ---------------------------------------------------------------------------------------
# the skeleton both layouts share

class Task(NamedTuple):
    """One file of a corpus: who says what, and where it goes."""
    split: str
    index: int       # its place among its split's utterances (Speech Commands: the take)
    speaker: Speaker
    uid: str         # the file's name, less its extension
    path: str
    text: str        # what the speaker says


class Written(NamedTuple):
    """One task's file as written: its length and its speech check."""
    frames: int
    ok: bool
    why: str


@dataclass(frozen=True)
class _Layout:
    """What one corpus layout brings to the skeleton :func:`_synthesize` runs: its checked
    settings (the fields) and, in a subclass, its splits and speakers (the class
    attributes), its tasks, how a task's file is made, and the files besides the audio."""
    out_dir: str
    seed: int
    counts: dict          # split -> number of speakers
    conditions: dict      # split or role -> Conditions
    train_engines: tuple
    engine_share: float
    options: dict         # the settings as the marker records them

    kind = ""             # GENERATOR_VERSIONS' key, and the speakers' random tag
    title = ""            # the log's "<title>-layout corpus"
    item = ""             # what one file holds, for the log
    roles = {}            # split -> its role in ROLE_VOICES, in the layout's split order
    draw_order = ()       # the splits in the order _speakers deals to them: held-out first
    profiles = {}         # role -> (lowest, highest) speaking rate
    speed = (1.0, 1.0)    # range of a file's speed factor

    def speaker_ids(self, r: random.Random, n: int) -> list:
        """``n`` distinct speaker ids drawn from ``r``."""
        raise NotImplementedError

    def tasks(self, speakers: dict) -> list:
        """[Task] of every split, in split order (``speakers``: split -> [Speaker])."""
        raise NotImplementedError

    def task_rng(self, task: Task) -> np.random.Generator:
        """The stream of a task's every draw: a function of the seed and the task only."""
        raise NotImplementedError

    def render(self, task: Task, r: np.random.Generator, x: np.ndarray) -> Written:
        """Make the engine's audio ``x`` into the task's file and write it."""
        raise NotImplementedError

    def recorded(self, path: str) -> Written:
        """What an interrupted run already wrote at ``path`` stands for."""
        raise NotImplementedError

    def vocabulary(self, tasks) -> int:
        """How many distinct words ``tasks`` say."""
        raise NotImplementedError

    def write_files(self, tasks: list, speakers: dict, stats: dict) -> dict:
        """Write the files besides the audio; return the stats to add after the splits'
        (``stats``), ``total`` among them, in the order they are shown."""
        raise NotImplementedError

    def speak(self, chunk: list) -> list:
        """One speaker's tasks: one engine call for all of them, then each file made."""
        rs = [self.task_rng(t) for t in chunk]
        factors = [r.uniform(*self.speed) for r in rs]
        audio = engines.synthesize([(t.text, f) for t, f in zip(chunk, factors)],
                                   chunk[0].speaker)
        return [self.render(t, r, x) for t, r, x in zip(chunk, rs, audio)]


def _synthesize(layout: _Layout, jobs, force: bool) -> dict:
    """Write ``layout``'s corpus and return its stats, or the recorded stats when the
    corpus is complete already (:func:`_check_or_clear`)."""
    out_dir = layout.out_dir
    done = _check_or_clear(out_dir, layout.options, force)
    if done is not None:
        return done
    t0 = time.time()
    speakers = _draw_speakers(layout)
    tasks = layout.tasks(speakers)
    results = _run_chunked(layout.speak, tasks, key=lambda t: (t.split, t.speaker.spk_id),
                           jobs=jobs, path=lambda t: t.path, recorded=layout.recorded)
    stats, bad = _split_stats(layout, tasks, results, speakers)
    stats.update(layout.write_files(tasks, speakers, stats))
    stats["augmentation_sources"] = write_augmentation_sources(out_dir, layout.seed)
    _write_speakers(out_dir, speakers, _minutes(tasks, results), layout.train_engines)
    stats["speech_check_failures"] = len(bad)
    stats["seconds"] = round(time.time() - t0, 2)
    for path, why in bad[:20]:
        log.warning("synthesized %s fails the speech check: %s: %s", layout.item, path, why)
    _finish(out_dir, layout.options, stats)
    log.info("synthesized %s-layout corpus in %s: %s", layout.title, out_dir, stats)
    return stats


def _options(kind: str, seed, conditions: dict, versions: dict, **settings) -> dict:
    """The marker's record of a corpus' settings: a finished corpus with other ones is
    written anew."""
    return {"kind": kind, "generator": GENERATOR_VERSIONS[kind], "seed": int(seed),
            **settings, "conditions": {k: c.as_dict() for k, c in conditions.items()},
            "engines": versions}


def _draw_speakers(layout: _Layout) -> dict:
    """split -> [Speaker], in the layout's split order."""
    by_role = _speakers(f"{layout.kind}-{layout.seed}",
                        {layout.roles[s]: layout.counts[s] for s in layout.draw_order},
                        layout.profiles, layout.speaker_ids, layout.train_engines,
                        layout.engine_share)
    return {s: by_role[layout.roles[s]] for s in layout.roles}


def _split_stats(layout: _Layout, tasks: list, results: list, speakers: dict) -> tuple:
    """(``{split: {hours, utterances, speakers, vocabulary, engines}}``, [(path, why)] of
    the files that fail the speech check)."""
    stats, bad = {}, []
    for s in layout.roles:
        idx = [j for j, t in enumerate(tasks) if t.split == s]
        secs = sum(results[j].frames for j in idx) / SR
        stats[s] = {"hours": round(secs / 3600, 4), "utterances": len(idx),
                    "speakers": len(speakers[s]),
                    "vocabulary": layout.vocabulary([tasks[j] for j in idx]),
                    "engines": _engine_counts(speakers[s])}
        bad += [(tasks[j].path, results[j].why) for j in idx if not results[j].ok]
    return stats, bad


def _total(layout: _Layout, tasks: list, speakers: dict, hours: float) -> dict:
    return {"hours": hours, "utterances": len(tasks),
            "speakers": sum(len(spks) for spks in speakers.values()),
            "vocabulary": layout.vocabulary(tasks)}


def _minutes(tasks: list, results: list) -> dict:
    """Minutes of audio per speaker id."""
    out = {}
    for task, result in zip(tasks, results):
        spk_id = task.speaker.spk_id
        out[spk_id] = out.get(spk_id, 0.0) + result.frames / SR / 60
    return out


# ---------------------------------------------------------------------------------------
# LibriSpeech layout

@_exclusive
def synthesize_librispeech(out_dir, seed: int = 0, train_utts: int = 1500,
                           dev_utts: int = 150, test_utts: int = 150,
                           test_other_utts: int = 150, train_speakers: int = 40,
                           dev_speakers: int = 8, test_speakers: int = 8,
                           test_other_speakers: int = 6, train_noise_prob: float = 0.25,
                           test_other_snr=(5.0, 20.0), test_other_reverb_prob: float = 0.5,
                           test_other_telephone_prob: float = 0.25, rt60=(0.25, 0.9),
                           room_size=(3.0, 8.0), train_engines=TRAIN_ENGINES,
                           engine_share: float = ENGINE_SHARE, vocabulary_size: int | None = None,
                           device_share: float = DEVICE_SHARE,
                           lm_sentences: int = LM_SENTENCES, jobs: int | None = None,
                           force: bool = False, options_only: bool = False) -> dict:
    """Write a LibriSpeech-layout ASR corpus into ``out_dir``; return stats per split.

    ``out_dir`` plays the role of the ``LibriSpeech/`` folder: it receives
    ``train-clean-100/``, ``dev-clean/``, ``test-clean/``, ``test-other/``,
    ``SPEAKERS.TXT``, ``_augmentation_/`` and ``librispeech-lm-norm.txt`` (``lm_sentences``
    sentences of text for the n-gram LM, as LibriSpeech's LM corpus is for the real one:
    :func:`_lm_text`).  ``train_engines`` speak train, dev and
    test-clean (``engine_share`` of the speakers by the engines other than espeak-ng);
    festival speaks test-other, in simulated rooms (``test_other_reverb_prob``, ``rt60``,
    ``room_size``), with noise at ``test_other_snr`` dB and a telephone channel with
    ``test_other_telephone_prob``.  ``vocabulary_size`` limits the text to that many of
    the grammar's most common words (default: all of them).  ``device_share`` of each
    split's utterances are single words, short commands and digit strings
    (``grammar.device_utterance``), as people say to a device.  Stats: ``{split: {hours, utterances, speakers,
    vocabulary, engines}}`` plus ``total`` and ``seconds`` (synthesis wall time of the
    run that made it).  ``options_only``: write nothing, return the settings the marker
    would record (what :func:`corpus_differences` compares).
    """
    out_dir = os.fspath(out_dir)
    utts = dict(zip(LS_SPLITS, (train_utts, dev_utts, test_utts, test_other_utts)))
    spks = dict(zip(LS_SPLITS, (train_speakers, dev_speakers, test_speakers,
                                test_other_speakers)))
    # settings are checked, and the engines found, before anything is written or removed
    _check_librispeech_counts(utts, spks)
    train_engines, versions = _engine_setup(train_engines, engine_share)
    conditions = _librispeech_conditions(train_noise_prob, test_other_snr,
                                         test_other_reverb_prob, test_other_telephone_prob,
                                         rt60, room_size)
    _check_text_settings(device_share, lm_sentences, vocabulary_size)
    options = _options("librispeech", seed, conditions, versions, utts=utts, speakers=spks,
                       engine_share=float(engine_share), lm_sentences=lm_sentences,
                       device_share=float(device_share))
    if vocabulary_size is not None:  # (absent by default: older markers stay valid)
        options["vocabulary_size"] = int(vocabulary_size)
    if options_only:
        return options
    return _synthesize(_LibriSpeech(out_dir, seed, spks, conditions, train_engines,
                                    engine_share, options, utts, vocabulary_size,
                                    device_share, lm_sentences), jobs, force)


def _check_librispeech_counts(utts: dict, spks: dict) -> None:
    for s in LS_SPLITS:
        if utts[s] < 0 or spks[s] < 1 or (utts[s] and utts[s] < spks[s]):
            raise DataError(f"{s}: need at least one utterance per speaker "
                            f"({utts[s]} utterances, {spks[s]} speakers)")


def _librispeech_conditions(train_noise_prob, test_other_snr, test_other_reverb_prob,
                            test_other_telephone_prob, rt60, room_size) -> dict:
    """role -> Conditions: noise in training; test-other in rooms, in noise, on the phone."""
    speed = (0.93, 1.07)
    return {
        "train": Conditions(speed=speed, noise_prob=train_noise_prob, snr_db=(10.0, 30.0),
                            noise_kinds=("white", "pink", "brown")),
        "dev": Conditions(speed=speed), "test": Conditions(speed=speed),
        "other": Conditions(speed=speed, reverb_prob=test_other_reverb_prob, rt60=rt60,
                            room_size=room_size, noise_prob=1.0, snr_db=test_other_snr,
                            telephone_prob=test_other_telephone_prob)}


def _check_text_settings(device_share, lm_sentences, vocabulary_size) -> None:
    if not 0.0 <= float(device_share) <= 1.0:
        raise DataError(f"device_share must be in [0, 1], got {device_share!r}")
    if not isinstance(lm_sentences, int) or lm_sentences < 0:
        raise DataError(f"lm_sentences must be a whole number >= 0, got {lm_sentences!r}")
    if vocabulary_size is not None and int(vocabulary_size) < 1:
        raise DataError(f"vocabulary_size must be a positive number of words, got "
                        f"{vocabulary_size!r}")


@dataclass(frozen=True)
class _LibriSpeech(_Layout):
    """``<split>/<spk>/<chapter>/<spk>-<chapter>-<n>.flac``, a transcript per chapter, and
    the text for the n-gram LM."""
    utts: dict            # split -> number of utterances
    vocabulary_size: int | None
    device_share: float
    lm_sentences: int

    kind = "librispeech"
    title = "LibriSpeech"
    item = "utterance"
    roles = LS_ROLES
    draw_order = LS_SPLITS[1:] + LS_SPLITS[:1]
    profiles = {"train": (130, 195), "dev": (140, 185), "test": (140, 185),
                "other": (140, 190)}
    speed = (0.93, 1.07)

    def speaker_ids(self, r, n):
        return [str(i) for i in r.sample(range(100, 9999), n)]

    def tasks(self, speakers):
        # each split draws its chapters and sentences from its own stream, so the held-out
        # splits do not change with the number of training speakers
        split_rng = {s: random.Random(f"librispeech-{self.seed}-{s}") for s in LS_SPLITS}
        texts = _texts(self.utts, split_rng, self.vocabulary_size, self.device_share)
        return [t for s in LS_SPLITS
                for t in self._split_tasks(s, speakers[s], split_rng[s], texts[s])]

    def _split_tasks(self, s: str, sp: list, r: random.Random, texts: list) -> list:
        """A split's utterances, dealt round its speakers, each of whom reads 1-2 chapters."""
        chapters = {spk.spk_id: r.sample(range(10000, 99999), r.randint(1, 2)) for spk in sp}
        counters, tasks = {}, []
        for i, text in enumerate(texts):
            spk = sp[i % len(sp)]
            chap = chapters[spk.spk_id][(i // len(sp)) % len(chapters[spk.spk_id])]
            k = counters.get((spk.spk_id, chap), 0)
            counters[(spk.spk_id, chap)] = k + 1
            uid = f"{spk.spk_id}-{chap}-{k:04d}"
            path = os.path.join(self.out_dir, s, spk.spk_id, str(chap), uid + ".flac")
            tasks.append(Task(s, i, spk, uid, path, text))
        return tasks

    def task_rng(self, task):
        return _rng(self.seed, "ls", task.split, task.index)

    def render(self, task, r, x):
        x = _post(x, r, self.conditions[LS_ROLES[task.split]], pad=(0.05, 0.25))
        ok, why = speech_check(x, SR, len(task.text.split()))
        _write_atomic(task.path, to_int16(x), format="FLAC", subtype="PCM_16")
        return Written(len(x), ok, why)

    def recorded(self, path):
        return Written(sf.info(path).frames, True, "")

    def vocabulary(self, tasks):
        return len({w for t in tasks for w in t.text.split()})

    def write_files(self, tasks, speakers, stats):
        _write_transcripts(tasks)
        lm_text = self._write_lm_text(tasks)
        # the total's hours: the sum of the splits' rounded ones
        hours = round(sum(stats[s]["hours"] for s in LS_SPLITS), 4)
        return {"lm_text": {"sentences": len(lm_text),
                            "words": sum(len(t.split()) for t in lm_text)},
                "total": _total(self, tasks, speakers, hours)}

    def _write_lm_text(self, tasks: list) -> list:
        texts = {s: [t.text for t in tasks if t.split == s] for s in LS_SPLITS}
        lm_text = _lm_text(texts, random.Random(f"librispeech-{self.seed}-lm-text"),
                           self.lm_sentences, self.vocabulary_size, self.device_share)
        with atomic_open(os.path.join(self.out_dir, LM_TEXT)) as fh:
            fh.writelines(t + "\n" for t in lm_text)
        return lm_text


def _write_transcripts(tasks: list) -> None:
    """``<spk>-<chapter>.trans.txt`` in each chapter's folder: ``<uid> <text>`` lines."""
    trans = {}
    for t in tasks:
        trans.setdefault(os.path.dirname(t.path), []).append((t.uid, t.text))
    for d, lines in trans.items():
        spk, chap = lines[0][0].split("-")[:2]
        with open(os.path.join(d, f"{spk}-{chap}.trans.txt"), "w") as fh:
            for uid, text in sorted(lines):
                fh.write(f"{uid} {text}\n")


def _engine_setup(names, engine_share: float) -> tuple:
    """(the training engines as a tuple, ``{engine: version}`` of those and the held-out
    one): checked, and every engine found, before anything is written or removed."""
    names = tuple(names)
    for n in names:
        engines.engine(n)
    if "espeak-ng" not in names:
        raise DataError(f"train_engines {list(names)}: espeak-ng must be one of them "
                        "(it provides the many voices the splits are dealt from)")
    if HELD_OUT_ENGINE in names:
        raise DataError(f"train_engines {list(names)}: {HELD_OUT_ENGINE} is the held-out "
                        "engine of test-other and cannot also train")
    if not 0.0 <= engine_share <= 1.0:
        raise DataError(f"engine_share must be in [0, 1], got {engine_share!r}")
    return names, engines.versions(names + (HELD_OUT_ENGINE,))


def _write_speakers(out_dir: str, speakers: dict, minutes: dict, train_engines) -> None:
    """SPEAKERS.TXT in LibriSpeech's format: one row per speaker (``speakers``: subset ->
    [Speaker]) with its minutes of audio and its engine:voice name (read_speakers)."""
    with atomic_open(os.path.join(out_dir, "SPEAKERS.TXT")) as fh:
        fh.write(f"{SPEAKERS_HEADER}  NAME is "
                 "engine:voice s<words per minute> p<pitch> g<word gap>.\n"
                 f"; Training engines: {', '.join(train_engines)}; held-out engine: "
                 f"{HELD_OUT_ENGINE}, never used in training.\n")
        fh.write(";ID  |SEX| SUBSET           |MINUTES| NAME\n")
        for subset, spks in speakers.items():
            for spk in spks:
                fh.write(f"{spk.spk_id:<5}| {engines.engine(spk.engine).sex(spk.voice)} | {subset:<16} | "
                         f"{minutes.get(spk.spk_id, 0.0):5.2f} | {spk.description}\n")


def read_speakers(folder) -> dict:
    """``{speaker id: "engine:voice"}`` from a synthetic corpus' SPEAKERS.TXT; ``{}`` for
    any other corpus (real LibriSpeech's SPEAKERS.TXT names people, not voices)."""
    path = os.path.join(os.fspath(folder), "SPEAKERS.TXT")
    if not os.path.isfile(path):
        return {}
    out = {}
    with open(path) as fh:
        if not fh.readline().startswith(SPEAKERS_HEADER):
            return {}
        for line in fh:
            cols = [c.strip() for c in line.split("|")]
            if line.startswith(";") or len(cols) != 5 or ":" not in cols[4]:
                continue
            out[cols[0]] = cols[4].split()[0]
    return out


def _engine_counts(speakers) -> dict:
    out = {}
    for spk in speakers:
        out[spk.engine] = out.get(spk.engine, 0) + 1
    return out


def common_words(n: int) -> frozenset:
    """The ``n`` most frequent words of the grammar (in 20,000 sentences of a fixed seed,
    ties by spelling): the word list of a ``vocabulary_size``-limited corpus."""
    rng = random.Random("vocabulary")
    counts = {}
    for _ in range(20000):
        for w in grammar.sentence(rng).split():
            counts[w] = counts.get(w, 0) + 1
    return frozenset(sorted(counts, key=lambda w: (-counts[w], w))[:n])


def _texts(utts: dict, split_rng: dict, vocabulary_size: int | None = None,
           device_share: float = 0.0) -> dict:
    """Utterances per split: train first; the held-out splits only use training words.
    ``device_share`` of them are what people say to a device (``grammar.device_utterance``:
    single words, short commands, digit strings), the rest grammar sentences.  A held-out
    utterance is redrawn until it uses training words only; when a small training set
    makes that unlikely (200 draws), a sentence is built from the training words
    (sentence_within).  ``vocabulary_size`` limits every sentence to that many of the
    grammar's most common words."""
    train = LS_SPLITS[0]
    limited = vocabulary_size is not None
    words = common_words(vocabulary_size) if limited else None
    rng = split_rng[train]
    try:
        texts = {train: [_utterance(rng, words, device_share, redraws=0 if limited else None)
                         for _ in range(utts[train])]}
    except ValueError:
        raise DataError(f"vocabulary_size {vocabulary_size} is too small for any "
                        "sentence of the grammar") from None
    if not texts[train] and any(utts[s] for s in LS_SPLITS[1:]):
        raise DataError("held-out splits need training sentences: raise train_utts")
    train_vocab = {w for t in texts[train] for w in t.split()}
    for s in LS_SPLITS[1:]:
        texts[s] = [_utterance(split_rng[s], train_vocab, device_share,
                               redraws=0 if limited else 200) for _ in range(utts[s])]
    return texts


def _utterance(rng: random.Random, words, device_share: float, redraws) -> str:
    """A device utterance (with probability ``device_share``) or a grammar sentence, made
    only of ``words`` unless that is None (``redraws``: as for ``_sentence_of``)."""
    return _draw(rng, words, device_share, redraws)[0]


def _draw(rng: random.Random, words, device_share: float, redraws) -> tuple[str, bool]:
    """(``_utterance``'s text, whether it is a device utterance)."""
    if device_share and rng.random() < device_share:
        for _ in range(20 if words is not None else 1):  # (a tiny vocabulary: a sentence)
            t = grammar.device_utterance(rng)
            if words is None or all(w in words for w in t.split()):
                return t, True
    if words is None:
        return grammar.sentence(rng), False
    return _sentence_of(rng, words, redraws), False


def _sentence_of(rng: random.Random, words, redraws: int = 200) -> str:
    """A grammar sentence made only of ``words``: drawn up to ``redraws`` times until one
    fits, else (a small training set, or ``redraws=0``) built from them
    (``grammar.sentence_within``)."""
    for _ in range(redraws):
        t = grammar.sentence(rng)
        if all(w in words for w in t.split()):
            return t
    return grammar.sentence_within(rng, words)


def _lm_text(texts: dict, rng: random.Random, n: int, vocabulary_size: int | None,
             device_share: float = 0.0) -> list:
    """``n`` sentences for the n-gram LM: utterances made only of training words, as the
    held-out splits' are (drawn the way ``_texts`` draws those), and no grammar sentence
    of a dev or test split: LibriSpeech's LM corpus likewise leaves out the books of its
    test sets.  Device utterances stay even when a held-out split says them too: they are
    a small closed set (ten command words, ten digits, short commands) that any device's
    LM lists, and leaving them out left the LM without "DOWN" or "ZERO" as a whole
    utterance, so it heard "DO" and "OF" in people's single words
    (docs/results/2026-12-07-lm-device-utterances.md).  Fewer than ``n`` when the
    held-out splits hold nearly every sentence a tiny vocabulary allows (at most 20
    draws a sentence)."""
    train = LS_SPLITS[0]
    vocab = {w for t in texts[train] for w in t.split()}
    held_out = {t for s in LS_SPLITS[1:] for t in texts[s]}
    if not vocab:
        return []

    redraws = 0 if vocabulary_size is not None else 200  # as _texts draws held-out text
    out = []
    for _ in range(20 * n):
        if len(out) == n:
            break
        t, device = _draw(rng, vocab, device_share, redraws)
        if device or t not in held_out:
            out.append(t)
    return out


# ---------------------------------------------------------------------------------------
# Speech Commands layout

@_exclusive
def synthesize_speech_commands(out_dir, seed: int = 0, words=GSC_CORE + GSC_FILLERS,
                               train_speakers: int = 40, valid_speakers: int = 6,
                               test_speakers: int = 6, test_other_speakers: int = 6,
                               repeats: int = 2, filler_prob: float = 0.5,
                               noise_prob: float = 0.5, noise_seconds: float = 60.0,
                               test_other_snr=(5.0, 20.0),
                               test_other_reverb_prob: float = 0.5, rt60=(0.25, 0.9),
                               room_size=(3.0, 8.0), train_engines=TRAIN_ENGINES,
                               engine_share: float = ENGINE_SHARE, jobs: int | None = None,
                               force: bool = False, options_only: bool = False) -> dict:
    """Write a Google-Speech-Commands-v0.02-layout corpus into ``out_dir``.

    Each speaker says every core command (``yes no up down left right on off stop go``
    among ``words``) ``repeats`` times and each other word once with probability
    ``filler_prob``.  Clips are exactly 1 s, 16 kHz, 16-bit, word roughly centred.
    ``train_engines`` speak train, validation and testing; festival speaks the
    ``testing_other`` clips (``_other_engine_/<word>/``, ``testing_other_list.txt``), in
    simulated rooms with noise.  Stats: ``{split: {hours, utterances, speakers,
    vocabulary, engines}}`` with splits ``train``, ``validation``, ``testing``,
    ``testing_other``, plus ``total`` and ``seconds``.  ``options_only``: as for
    :func:`synthesize_librispeech`.
    """
    out_dir = os.fspath(out_dir)
    words = tuple(words)
    counts = {"train": train_speakers, "validation": valid_speakers, "testing": test_speakers,
              "testing_other": test_other_speakers}
    # settings are checked, and the engines found, before anything is written or removed
    _check_speech_commands_settings(words, counts)
    train_engines, versions = _engine_setup(train_engines, engine_share)
    clean = Conditions(peak_db=(-14.0, -2.0))
    conditions = {
        "train": clean, "validation": clean, "testing": clean,
        "testing_other": Conditions(peak_db=(-14.0, -2.0), reverb_prob=test_other_reverb_prob,
                                    rt60=rt60, room_size=room_size, noise_prob=1.0,
                                    snr_db=test_other_snr)}
    options = _options("speech-commands", seed, conditions, versions, words=list(words),
                       speakers=counts, repeats=int(repeats), filler_prob=float(filler_prob),
                       noise_prob=float(noise_prob), noise_seconds=float(noise_seconds),
                       engine_share=float(engine_share))
    if options_only:
        return options
    return _synthesize(_SpeechCommands(out_dir, seed, counts, conditions, train_engines,
                                       engine_share, options, words, repeats, filler_prob,
                                       noise_prob, noise_seconds), jobs, force)


def _check_speech_commands_settings(words: tuple, counts: dict) -> None:
    for w in words:
        if not w or w.startswith("_") or "/" in w or w != w.strip():
            raise DataError(f"bad word folder name {w!r}")
    for s, n in counts.items():
        if n < 1:
            raise DataError(f"{s}: need at least one speaker, got {n}")


@dataclass(frozen=True)
class _SpeechCommands(_Layout):
    """``<word>/<spk>_nohash_<n>.wav`` (the held-out engine's under ``_other_engine_/``),
    the split lists, ``_background_noise_/``."""
    words: tuple
    repeats: int
    filler_prob: float
    noise_prob: float
    noise_seconds: float

    kind = "speech-commands"
    title = "Speech-Commands"
    item = "clip"
    roles = {"train": "train", "validation": "dev", "testing": "test",
             "testing_other": "other"}
    draw_order = ("testing_other", "testing", "validation", "train")
    profiles = {"train": (120, 200), "dev": (130, 190), "test": (130, 190),
                "other": (130, 190)}
    speed = (0.9, 1.1)

    def speaker_ids(self, r, n):
        # in draw order: iterating a set of strings follows the per-process hash seed
        out, seen = [], set()
        while len(out) < n:
            h = f"{r.getrandbits(32):08x}"
            if h not in seen:
                seen.add(h)
                out.append(h)
        return out

    def tasks(self, speakers):
        rng = random.Random(f"speech-commands-{self.seed}")
        return [t for s in self.roles for t in self._split_tasks(s, speakers[s], rng)]

    def _split_tasks(self, s: str, sp: list, rng: random.Random) -> list:
        said = self._takes(sp, rng)
        folder = (os.path.join(self.out_dir, OTHER_ENGINE_DIR) if s == "testing_other"
                  else self.out_dir)
        tasks = []
        for spk in sp:
            for w in self.words:
                for k in range(sum(x is spk for x in said[w])):
                    uid = f"{spk.spk_id}_nohash_{k}"
                    tasks.append(Task(s, k, spk, uid, os.path.join(folder, w, uid + ".wav"), w))
        return tasks

    def _takes(self, sp: list, rng: random.Random) -> dict:
        """word -> its speakers, one entry a take: ``repeats`` of each core word, one of
        each other word with probability ``filler_prob``."""
        said = {w: [] for w in self.words}
        for spk in sp:
            for w in self.words:
                n = self.repeats if w in GSC_CORE else int(rng.random() < self.filler_prob)
                said[w] += [spk] * n
        for j, w in enumerate(self.words):  # every word in every split at least once
            if not said[w]:
                said[w] = [sp[j % len(sp)]]
        return said

    def task_rng(self, task):
        return _rng(self.seed, "gsc", task.path[len(self.out_dir):])

    def render(self, task, r, x):
        """A 1-second clip: the word, cut to 0.95 s at most, at a random level and place."""
        x = trim(x, pad=int(0.03 * SR))
        if len(x) > int(0.95 * SR):  # keep the middle
            a = (len(x) - int(0.95 * SR)) // 2
            x = x[a: a + int(0.95 * SR)]
        x = x / (np.abs(x).max() + 1e-9) * 10 ** (r.uniform(-14, -2) / 20)
        slack = SR - len(x)
        off = int(np.clip(slack / 2 + r.uniform(-0.3, 0.3) * slack, 0, slack))
        clip = np.zeros(SR, np.float32)
        clip[off: off + len(x)] = x
        if task.split != "testing_other" and r.random() < self.noise_prob:
            kind = ("white", "pink", "brown")[int(r.integers(3))]
            clip = add_noise(clip, r.uniform(15, 40), make_noise(kind, SR, r))
        clip = self.conditions[task.split].apply(clip, r)[:SR]
        clip = np.pad(clip, (0, SR - len(clip)))
        peak = np.abs(clip).max()
        if peak > 0.99:
            clip *= 0.99 / peak
        ok, why = speech_check(clip, SR, 1)
        _write_atomic(task.path, to_int16(clip), format="WAV", subtype="PCM_16")
        return Written(SR, ok, why)

    def recorded(self, path):
        return Written(SR, True, "")

    def vocabulary(self, tasks):
        return len({t.text for t in tasks})

    def write_files(self, tasks, speakers, stats):
        _write_background_noise(self.out_dir, self.seed, self.noise_seconds,
                                [spk for spk in speakers["train"] if spk.engine == "espeak-ng"])
        _write_split_lists(self.out_dir, tasks)
        with open(os.path.join(self.out_dir, "README.md"), "w") as fh:
            fh.write("Synthetic keyword-spotting corpus in the Google Speech Commands v0.02 "
                     "layout, written by `denseshift-speech synth speech-commands` "
                     f"(seed {self.seed}) with {', '.join(self.train_engines)}.  "
                     f"{OTHER_ENGINE_DIR}/ holds clips by {HELD_OUT_ENGINE}, an engine never "
                     "used in training, in simulated rooms with noise; they are listed in "
                     "testing_other_list.txt.\n")
        # 1-second clips: the total's hours are its clips'
        return {"total": _total(self, tasks, speakers, round(len(tasks) / 3600, 4)),
                "background_noise_files": len(NOISE_FILES)}


def _write_background_noise(out_dir: str, seed, seconds: float, babble_voices: list) -> None:
    """``_background_noise_/``: long noise files, to cut 1-second 'silence' samples from."""
    bg = os.path.join(out_dir, "_background_noise_")
    os.makedirs(bg, exist_ok=True)
    n = int(seconds * SR)
    for kind in NOISE_FILES:
        r = _rng(seed, "bg", kind)
        if kind == "babble":
            y = _babble(seed, n, seconds, babble_voices, r)
        else:
            y = make_noise(kind.replace("_noise", ""), n, r)
        y = y / (np.abs(y).max() + 1e-9) * 0.5
        sf.write(os.path.join(bg, f"{kind}.wav"), to_int16(y), SR, subtype="PCM_16")
    with open(os.path.join(bg, "README.md"), "w") as fh:
        fh.write("Synthetic background noise (denseshift-speech synth); long 16 kHz "
                 "recordings to cut 1-second 'silence' samples from.\n")


def _babble(seed, n: int, seconds: float, voices: list, r: np.random.Generator) -> np.ndarray:
    """``n`` samples of espeak-ng sentences said over each other (~2-3 talkers at once)."""
    y = np.zeros(n, np.float32)
    for j in range(max(4, int(seconds))):
        spk = voices[j % len(voices)]
        seg = engines.synthesize(
            [(grammar.sentence(random.Random(f"{seed}-babble-{j}")), 1.0)], spk)[0]
        pos = int(r.integers(0, max(1, n - len(seg))))
        seg = seg[: n - pos]
        y[pos: pos + len(seg)] += seg / (np.abs(seg).max() + 1e-9)
    return y + 0.01 * make_noise("pink", n, r)


def _write_split_lists(out_dir: str, tasks: list) -> None:
    """``validation_list.txt``, ``testing_list.txt``, ``testing_other_list.txt``: the
    clips of each split but train, relative to ``out_dir``."""
    lists = {"validation": [], "testing": [], "testing_other": []}
    for t in tasks:
        if t.split in lists:
            lists[t.split].append(os.path.relpath(t.path, out_dir))
    for s in lists:
        with open(os.path.join(out_dir, f"{s}_list.txt"), "w") as fh:
            fh.writelines(line + "\n" for line in sorted(lists[s]))


def is_synthetic_corpus(folder) -> bool:
    """True if ``folder`` was written (completely or partly) by this synthesizer."""
    return any(os.path.isfile(os.path.join(folder, name)) for name in (MARKER, PARTIAL))


def corpus_differences(folder, asked: dict) -> list:
    """How the settings a finished corpus in ``folder`` was written with differ from
    ``asked`` (a synthesizer's ``options_only=True`` record), one "key: written X, asked Y"
    line each; engine versions are not compared (only which engines).  Empty when they
    agree or when ``folder`` has no readable marker."""
    try:
        with open(os.path.join(folder, MARKER)) as fh:
            written = json.load(fh)["options"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    lines = []
    for key in sorted(set(written) | set(asked)):
        old, new = written.get(key), asked.get(key)
        if key == "engines":
            old, new = sorted(old or {}), sorted(new or {})
        if old != new:
            lines.append(f"{key}: written {old}, asked {new}")
    return lines


def _marker_generator(folder, name=MARKER) -> tuple:
    """(generator version, this code's version of that kind: None for a marker older
    than the kinds) of the marker ``name`` in ``folder``, or None when there is no
    readable one."""
    try:
        with open(os.path.join(folder, name)) as fh:
            rec = json.load(fh)
        options = rec.get("options", rec)  # (the partial marker holds the options alone)
        return int(options["generator"]), GENERATOR_VERSIONS.get(options.get("kind"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def is_outdated_corpus(folder) -> bool:
    """True if ``folder`` is a finished corpus written by an older generator version."""
    versions = _marker_generator(folder)
    return versions is not None and (versions[1] is None or versions[0] < versions[1])


def check_not_newer(folder) -> None:
    """A DataError when ``folder`` holds a corpus (finished or partly written) of a newer
    generator than this code's: an older version of the package must not remove it to
    write its own."""
    for name in (MARKER, PARTIAL):
        versions = _marker_generator(folder, name)
        if versions is not None and versions[1] is not None and versions[0] > versions[1]:
            raise DataError(f"{folder} holds a corpus written by a newer version of "
                            f"denseshift-speech (generator {versions[0]}, this one writes "
                            f"{versions[1]}); upgrade, or choose another folder")


def is_unfinished_corpus(folder) -> bool:
    """True while a synthesis of ``folder`` is running (its lock is held) or after one
    died half-way (the partial marker is still there)."""
    if os.path.isfile(os.path.join(folder, PARTIAL)):
        return True
    lock_path = os.path.abspath(os.fspath(folder)).rstrip(os.sep) + ".lock"
    if not os.path.exists(lock_path):
        return False
    with open(lock_path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False
