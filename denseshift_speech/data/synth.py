"""Synthetic speech corpora written by espeak-ng in the real datasets' layouts.

* :func:`synthesize_librispeech` -- an ASR corpus in the LibriSpeech layout
  (``<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` + ``<spk>-<chapter>.trans.txt``),
  splits ``train-clean-100``, ``dev-clean``, ``test-clean`` and a harder ``test-other``
  (faster speech, additive noise), 16 kHz mono 16-bit FLAC.
* :func:`synthesize_speech_commands` -- a keyword-spotting corpus in the Google Speech
  Commands v0.02 layout (``<word>/<speaker>_nohash_<n>.wav`` 1-second 16 kHz 16-bit WAVs,
  ``validation_list.txt``, ``testing_list.txt``, ``_background_noise_/``).

A "speaker" is an espeak-ng voice + variant + rate/pitch profile; the (voice, variant)
pairs are disjoint between splits.  Everything is a function of the seed (and of the
espeak-ng version, recorded in the marker file).  A finished corpus holds a marker
``.denseshift_synth.json`` with the options; a second call with the same options returns
the recorded stats without synthesizing again.
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
import subprocess
import time
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from . import grammar
from .audio_checks import DataError, resample_np, speech_check

log = logging.getLogger(__name__)

GENERATOR_VERSION = 4
MARKER = ".denseshift_synth.json"
PARTIAL = ".denseshift_synth.partial"
SR = 16000

BASE_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
               "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
# human-sounding variants (robots, whisper, croak, 'fast' etc. left out)
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
            "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty",
            "belinda", "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed",
            "edward", "edward2", "Gene", "Gene2", "gustave", "Henrique", "Hugo", "iven",
            "iven2", "iven3", "iven4", "Jacky", "john", "Lee", "linda", "marcelo", "Marco",
            "Mario", "max", "Michael", "michel", "miguel", "Mike", "norbert", "Nguyen",
            "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph",
            "steph2", "steph3", "travis", "victor", "zac", "anika", "grandma", "grandpa",
            "klatt", "klatt2", "klatt3"]

LS_SPLITS = ("train-clean-100", "dev-clean", "test-clean", "test-other")
GSC_CORE = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
GSC_FILLERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
               "nine", "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila",
               "tree", "wow", "backward", "forward", "follow", "learn", "visual")
NOISE_FILES = ("white_noise", "pink_noise", "brown_noise", "running_tap", "hum", "babble")


# ---------------------------------------------------------------------------------------
# espeak-ng

def espeak_version() -> str:
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise DataError("espeak-ng is not installed or does not run "
                        f"({err}); install the Debian package: apt-get install -y espeak-ng")
    return out.split("Data at")[0].strip()


@dataclass(frozen=True)
class Speaker:
    spk_id: str
    voice: str
    variant: str
    rate: int     # words per minute (espeak -s)
    pitch: int    # 0..99 (espeak -p)
    gap: int      # extra word gap, units of 10 ms (espeak -g)

    @property
    def voice_spec(self) -> str:
        return f"{self.voice}+{self.variant}"

    @property
    def sex(self) -> str:
        v = self.variant.lower()
        female = v.startswith("f") and v[1:].isdigit() or v in {
            "alicia", "andrea", "annie", "aunty", "belinda", "linda", "steph", "steph2",
            "steph3", "anika", "grandma", "shelby"}
        return "F" if female else "M"


def _run_espeak(args, speaker: Speaker):
    cmd = ["espeak-ng", "-v", speaker.voice_spec, "-p", str(speaker.pitch),
           "-g", str(speaker.gap), "--stdout"] + args
    try:
        res = subprocess.run(cmd, capture_output=True, check=True)
    except FileNotFoundError:
        raise DataError("espeak-ng not found; install it: apt-get install -y espeak-ng")
    except subprocess.CalledProcessError as err:
        raise DataError(f"espeak-ng failed for voice {speaker.voice_spec}: "
                        f"{err.stderr.decode(errors='replace').strip()}")
    raw = res.stdout
    if len(raw) < 46 or raw[:4] != b"RIFF":
        raise DataError(f"espeak-ng produced no audio for voice {speaker.voice_spec}")
    sr = int.from_bytes(raw[24:28], "little")
    return np.frombuffer(raw[44:len(raw) - (len(raw) - 44) % 2], dtype="<i2"), sr


def espeak(text: str, speaker: Speaker, rate: int | None = None) -> np.ndarray:
    """Synthesize ``text`` with ``speaker``; float32 mono at 16 kHz."""
    pcm, sr = _run_espeak(["-s", str(rate or speaker.rate), text.lower()], speaker)
    return resample_np(pcm.astype(np.float32) / 32768.0, sr, SR)


BREAK_MS = 1500


def espeak_batch(items, speaker: Speaker) -> list:
    """Synthesize ``[(text, rate_factor)]`` with one espeak-ng process (its start-up
    dominates the cost of a short sentence): SSML with a long break between items, split
    on the breaks.  Falls back to one process per item if the split is ambiguous."""
    if len(items) <= 1:
        return [espeak(t, speaker, int(round(speaker.rate * f))) for t, f in items]
    body = "".join(f'<prosody rate="{int(round(100 * f))}%">{t.lower()}</prosody>'
                   f'<break time="{BREAK_MS}ms"/>' for t, f in items)
    pcm, sr = _run_espeak(["-m", "-s", str(speaker.rate), f"<speak>{body}</speak>"], speaker)
    quiet = np.concatenate([[0], (np.abs(pcm.astype(np.int32)) <= 2).astype(np.int8), [0]])
    d = np.diff(quiet)
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
    long = [(a, b) for a, b in zip(starts, ends) if b - a >= 0.5 * BREAK_MS / 1000 * sr]
    # expect one long pause after every item (the last one may be cut at the end)
    if len(long) not in (len(items), len(items) - 1) or (long and long[0][0] == 0):
        log.debug("batch split failed for %s; synthesizing one by one", speaker.voice_spec)
        return [espeak(t, speaker, int(round(speaker.rate * f))) for t, f in items]
    bounds = [0] + [b for _, b in long]
    cuts = [a for a, _ in long] + [len(pcm)]
    out = []
    for k in range(len(items)):
        seg = pcm[bounds[k]: cuts[k]].astype(np.float32) / 32768.0
        if len(seg) < 0.05 * sr:
            return [espeak(t, speaker, int(round(speaker.rate * f))) for t, f in items]
        out.append(resample_np(seg, sr, SR))
    return out


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


# ---------------------------------------------------------------------------------------
# noise

def make_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of ``kind`` (white, pink, brown, running_tap, hum)."""
    if kind == "white":
        y = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec /= np.sqrt(f) if kind == "pink" else f
        spec[0] = 0
        y = np.fft.irfft(spec, n)
    elif kind == "running_tap":
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SR)
        spec *= np.exp(-0.5 * ((freqs - 2500) / 1200) ** 2)
        y = np.fft.irfft(spec, n)
        y *= 1 + 0.4 * np.sin(2 * np.pi * 3.1 * np.arange(n) / SR + rng.uniform(0, 6))
    elif kind == "hum":
        t = np.arange(n) / SR
        f0 = rng.choice([50.0, 60.0])
        y = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6))
                for k in range(1, 8))
        y = y + 0.05 * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    y = np.asarray(y, dtype=np.float64)
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-12)).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    noise = make_noise(kind, len(x), rng)
    p = float(np.mean(x.astype(np.float64) ** 2))
    return (x + noise * np.sqrt(p / 10 ** (snr_db / 10))).astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _rng(*keys) -> np.random.Generator:
    h = hashlib.sha256(repr(keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


# ---------------------------------------------------------------------------------------
# speakers, marker, helpers

def _speakers(rng: random.Random, counts: dict, profiles: dict, id_fn) -> dict:
    """Disjoint (voice, variant) pairs per split, each with a rate/pitch profile.

    Splits take speakers from one shuffled list in the order of ``counts``, and every
    pair's id and profile are drawn up front for the whole list, so the splits named
    first (callers list the held-out ones first) are the same whatever the later counts
    are: a bigger training set does not change the test speakers.
    """
    pairs = [(v, var) for v in BASE_VOICES for var in VARIANTS]
    rng.shuffle(pairs)
    need = sum(counts.values())
    if need > len(pairs):
        raise DataError(f"asked for {need} speakers; at most {len(pairs)} distinct "
                        "voice+variant pairs exist")
    ids = id_fn(rng, len(pairs))
    draws = [(rng.random(), rng.randint(25, 75), rng.choice([0, 0, 0, 1, 2])) for _ in pairs]
    out, k = {}, 0
    for split, n in counts.items():
        lo, hi = profiles[split]
        out[split] = sorted(
            (Speaker(ids[i], pairs[i][0], pairs[i][1], rate=lo + int(u * (hi - lo + 1)),
                     pitch=pitch, gap=gap)
             for i, (u, pitch, gap) in zip(range(k, k + n), draws[k:k + n])),
            key=lambda spk: spk.spk_id)
        k += n
    return out


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
    """Return recorded stats when the corpus is complete with these options, else make
    ``out_dir`` ready for a fresh synthesis (only removing what we wrote earlier)."""
    marker = os.path.join(out_dir, MARKER)
    if os.path.isfile(marker) and not force:
        try:
            with open(marker) as fh:
                rec = json.load(fh)
            if rec.get("options") == options:
                log.info("%s already holds this corpus; skipping synthesis", out_dir)
                return rec["stats"]
        except (OSError, ValueError, KeyError):
            pass
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        ours = os.path.isfile(marker) or os.path.isfile(os.path.join(out_dir, PARTIAL))
        if not ours:
            raise DataError(f"{out_dir} is not empty and was not written by "
                            "`denseshift-speech synth`; choose an empty or new folder")
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, PARTIAL), "w") as fh:
        json.dump(options, fh)
    return None


def _finish(out_dir: str, options: dict, stats: dict):
    tmp = os.path.join(out_dir, MARKER + ".tmp")
    with open(tmp, "w") as fh:
        json.dump({"options": options, "stats": stats}, fh, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(out_dir, MARKER))
    os.remove(os.path.join(out_dir, PARTIAL))


def _jobs(jobs):
    return max(1, int(jobs or min(4, os.cpu_count() or 1)))


def _run_chunked(fn, tasks, key, jobs, max_chunk=40):
    """Group ``tasks`` by ``key`` (one speaker) into chunks, run ``fn(chunk) -> results``
    in a thread pool (espeak-ng runs as subprocesses), return results in task order."""
    groups = {}
    for j, t in enumerate(tasks):
        groups.setdefault(key(t), []).append(j)
    chunks = [idx[k: k + max_chunk] for idx in groups.values()
              for k in range(0, len(idx), max_chunk)]
    out = [None] * len(tasks)
    with cf.ThreadPoolExecutor(_jobs(jobs)) as ex:
        for idx, res in zip(chunks, ex.map(lambda c: fn([tasks[j] for j in c]), chunks)):
            for j, r in zip(idx, res):
                out[j] = r
    return out


# ---------------------------------------------------------------------------------------
# LibriSpeech layout

@_exclusive
def synthesize_librispeech(out_dir, seed: int = 0, train_utts: int = 1500,
                           dev_utts: int = 150, test_utts: int = 150,
                           test_other_utts: int = 150, train_speakers: int = 40,
                           dev_speakers: int = 8, test_speakers: int = 8,
                           test_other_speakers: int = 8, train_noise_prob: float = 0.25,
                           test_other_snr=(5.0, 15.0), jobs: int | None = None,
                           force: bool = False) -> dict:
    """Write a LibriSpeech-layout ASR corpus into ``out_dir``; return stats per split.

    ``out_dir`` plays the role of the ``LibriSpeech/`` folder: it receives
    ``train-clean-100/``, ``dev-clean/``, ``test-clean/``, ``test-other/`` and
    ``SPEAKERS.TXT``.  Stats: ``{split: {hours, utterances, speakers, vocabulary}}`` plus
    ``total`` and ``seconds`` (synthesis wall time of the run that made it).
    """
    out_dir = os.fspath(out_dir)
    utts = dict(zip(LS_SPLITS, (train_utts, dev_utts, test_utts, test_other_utts)))
    spks = dict(zip(LS_SPLITS, (train_speakers, dev_speakers, test_speakers,
                                test_other_speakers)))
    held_out_first = LS_SPLITS[1:] + LS_SPLITS[:1]
    for s in LS_SPLITS:
        if utts[s] < 0 or spks[s] < 1 or (utts[s] and utts[s] < spks[s]):
            raise DataError(f"{s}: need at least one utterance per speaker "
                            f"({utts[s]} utterances, {spks[s]} speakers)")
    options = {"kind": "librispeech", "generator": GENERATOR_VERSION, "seed": int(seed),
               "utts": utts, "speakers": spks, "train_noise_prob": float(train_noise_prob),
               "test_other_snr": list(map(float, test_other_snr)),
               "espeak": espeak_version()}
    done = _check_or_clear(out_dir, options, force)
    if done is not None:
        return done
    t0 = time.time()
    rng = random.Random(f"librispeech-{seed}")
    profiles = {"train-clean-100": (130, 195), "dev-clean": (140, 185),
                "test-clean": (140, 185), "test-other": (195, 240)}

    def ids(r, n):
        return [str(i) for i in r.sample(range(100, 9999), n)]

    speakers = _speakers(rng, {s: spks[s] for s in held_out_first}, profiles, ids)
    # each split draws its chapters and sentences from its own stream, so the held-out
    # splits do not change with the number of training speakers
    split_rng = {s: random.Random(f"librispeech-{seed}-{s}") for s in LS_SPLITS}

    # text: train first; held-out sentences only use words seen in train
    texts = {"train-clean-100": [grammar.sentence(split_rng["train-clean-100"])
                                 for _ in range(utts["train-clean-100"])]}
    train_vocab = {w for t in texts["train-clean-100"] for w in t.split()}
    for s in LS_SPLITS[1:]:
        lst = []
        for _ in range(utts[s]):
            for _try in range(200):
                t = grammar.sentence(split_rng[s])
                if all(w in train_vocab for w in t.split()):
                    break
            else:
                raise DataError("train split too small to cover held-out words; "
                                "raise train_utts")
            lst.append(t)
        texts[s] = lst

    tasks = []
    for s in LS_SPLITS:
        sp, r = speakers[s], split_rng[s]
        chapters = {spk.spk_id: r.sample(range(10000, 99999), r.randint(1, 2)) for spk in sp}
        counters = {}
        for i, text in enumerate(texts[s]):
            spk = sp[i % len(sp)]
            chap = chapters[spk.spk_id][(i // len(sp)) % len(chapters[spk.spk_id])]
            k = counters.get((spk.spk_id, chap), 0)
            counters[(spk.spk_id, chap)] = k + 1
            uid = f"{spk.spk_id}-{chap}-{k:04d}"
            path = os.path.join(out_dir, s, spk.spk_id, str(chap), uid + ".flac")
            tasks.append((s, i, spk, uid, path, text))

    def work(chunk):
        rs = [_rng(seed, "ls", t[0], t[1]) for t in chunk]
        factors = [r.uniform(0.93, 1.07) for r in rs]
        spk = chunk[0][2]
        audio = espeak_batch([(t[5], f) for t, f in zip(chunk, factors)], spk)
        return [post(t, r, x) for t, r, x in zip(chunk, rs, audio)]

    def post(task, r, x):
        s, i, spk, uid, path, text = task
        x = trim(x, pad=int(r.uniform(0.05, 0.25) * SR))
        x = np.concatenate([np.zeros(int(r.uniform(0.0, 0.2) * SR), np.float32), x,
                            np.zeros(int(r.uniform(0.0, 0.2) * SR), np.float32)])
        x = x / (np.abs(x).max() + 1e-9) * 10 ** (r.uniform(-12, -2) / 20)
        if s == "test-other":
            x = add_noise(x, r.uniform(*test_other_snr),
                          r.choice(["white", "pink", "brown", "running_tap", "hum"]), r)
        elif s == "train-clean-100" and r.random() < train_noise_prob:
            x = add_noise(x, r.uniform(10, 30), r.choice(["white", "pink", "brown"]), r)
        peak = np.abs(x).max()
        if peak > 0.99:
            x = x * (0.99 / peak)
        ok, why = speech_check(x, SR, len(text.split()))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sf.write(path, to_int16(x), SR, format="FLAC", subtype="PCM_16")
        return len(x), ok, why

    results = _run_chunked(work, tasks, key=lambda t: (t[0], t[2].spk_id), jobs=jobs)

    # transcripts + SPEAKERS.TXT
    trans = {}
    for (s, i, spk, uid, path, text) in tasks:
        trans.setdefault(os.path.dirname(path), []).append((uid, text))
    for d, lines in trans.items():
        spk, chap = lines[0][0].split("-")[:2]
        with open(os.path.join(d, f"{spk}-{chap}.trans.txt"), "w") as fh:
            for uid, text in sorted(lines):
                fh.write(f"{uid} {text}\n")
    stats, bad = {}, []
    for s in LS_SPLITS:
        idx = [j for j, t in enumerate(tasks) if t[0] == s]
        secs = sum(results[j][0] for j in idx) / SR
        stats[s] = {"hours": round(secs / 3600, 4), "utterances": len(idx),
                    "speakers": len(speakers[s]),
                    "vocabulary": len({w for j in idx for w in tasks[j][5].split()})}
        bad += [(tasks[j][4], results[j][2]) for j in idx if not results[j][1]]
    minutes = {}
    for task, result in zip(tasks, results):
        minutes[task[2].spk_id] = minutes.get(task[2].spk_id, 0.0) + result[0] / SR / 60
    with open(os.path.join(out_dir, "SPEAKERS.TXT"), "w") as fh:
        fh.write("; Synthetic speakers (espeak-ng), written by denseshift-speech synth\n")
        fh.write(";ID  |SEX| SUBSET           |MINUTES| NAME\n")
        for s in LS_SPLITS:
            for spk in speakers[s]:
                fh.write(f"{spk.spk_id:<5}| {spk.sex} | {s:<16} | "
                         f"{minutes.get(spk.spk_id, 0.0):5.2f} | "
                         f"{spk.voice_spec} s{spk.rate} p{spk.pitch} g{spk.gap}\n")
    stats["total"] = {"hours": round(sum(stats[s]["hours"] for s in LS_SPLITS), 4),
                      "utterances": len(tasks),
                      "speakers": sum(len(speakers[s]) for s in LS_SPLITS),
                      "vocabulary": len({w for t in tasks for w in t[5].split()})}
    stats["speech_check_failures"] = len(bad)
    stats["seconds"] = round(time.time() - t0, 2)
    for path, why in bad[:20]:
        log.warning("synthesized utterance fails the speech check: %s: %s", path, why)
    _finish(out_dir, options, stats)
    log.info("synthesized LibriSpeech-layout corpus in %s: %s", out_dir, stats)
    return stats


# ---------------------------------------------------------------------------------------
# Speech Commands layout

@_exclusive
def synthesize_speech_commands(out_dir, seed: int = 0, words=GSC_CORE + GSC_FILLERS,
                               train_speakers: int = 40, valid_speakers: int = 6,
                               test_speakers: int = 6, repeats: int = 2,
                               filler_prob: float = 0.5, noise_prob: float = 0.5,
                               noise_seconds: float = 60.0, jobs: int | None = None,
                               force: bool = False) -> dict:
    """Write a Google-Speech-Commands-v0.02-layout corpus into ``out_dir``.

    Each speaker says every core command (``yes no up down left right on off stop go``
    among ``words``) ``repeats`` times and each other word once with probability
    ``filler_prob``.  Clips are exactly 1 s, 16 kHz, 16-bit, word roughly centred.
    Stats: ``{split: {hours, utterances, speakers, vocabulary}}`` with splits
    ``train``, ``validation``, ``testing``, plus ``total`` and ``seconds``.
    """
    out_dir = os.fspath(out_dir)
    words = tuple(words)
    for w in words:
        if not w or w.startswith("_") or "/" in w or w != w.strip():
            raise DataError(f"bad word folder name {w!r}")
    splits = {"train": train_speakers, "validation": valid_speakers, "testing": test_speakers}
    options = {"kind": "speech-commands", "generator": GENERATOR_VERSION, "seed": int(seed),
               "words": list(words), "speakers": splits, "repeats": int(repeats),
               "filler_prob": float(filler_prob), "noise_prob": float(noise_prob),
               "noise_seconds": float(noise_seconds), "espeak": espeak_version()}
    done = _check_or_clear(out_dir, options, force)
    if done is not None:
        return done
    t0 = time.time()
    rng = random.Random(f"speech-commands-{seed}")
    profiles = {"train": (120, 200), "validation": (130, 190), "testing": (130, 190)}

    def ids(r, n):
        seen = set()
        while len(seen) < n:
            seen.add(f"{r.getrandbits(32):08x}")
        return sorted(seen, key=lambda _: r.random())

    speakers = _speakers(rng, {s: splits[s] for s in ("testing", "validation", "train")},
                         profiles, ids)
    tasks = []
    for s in splits:
        said = {w: [] for w in words}
        for spk in speakers[s]:
            for w in words:
                n = repeats if w in GSC_CORE else int(rng.random() < filler_prob)
                said[w] += [spk] * n
        for j, w in enumerate(words):  # every word in every split at least once
            if not said[w]:
                said[w] = [speakers[s][j % len(speakers[s])]]
        for spk in speakers[s]:
            for w in words:
                for k in range(sum(x is spk for x in said[w])):
                    tasks.append((s, spk, w, os.path.join(out_dir, w,
                                                          f"{spk.spk_id}_nohash_{k}.wav")))

    def work(chunk):
        rs = [_rng(seed, "gsc", t[3][len(out_dir):]) for t in chunk]
        factors = [r.uniform(0.9, 1.1) for r in rs]
        audio = espeak_batch([(t[2], f) for t, f in zip(chunk, factors)], chunk[0][1])
        return [post(t, r, x) for t, r, x in zip(chunk, rs, audio)]

    def post(task, r, x):
        s, spk, w, path = task
        x = trim(x, pad=int(0.03 * SR))
        if len(x) > int(0.95 * SR):  # keep the middle
            a = (len(x) - int(0.95 * SR)) // 2
            x = x[a: a + int(0.95 * SR)]
        x = x / (np.abs(x).max() + 1e-9) * 10 ** (r.uniform(-14, -2) / 20)
        slack = SR - len(x)
        off = int(np.clip(slack / 2 + r.uniform(-0.3, 0.3) * slack, 0, slack))
        clip = np.zeros(SR, np.float32)
        clip[off: off + len(x)] = x
        if r.random() < noise_prob:
            clip = add_noise(clip, r.uniform(15, 40), r.choice(["white", "pink", "brown"]), r)
        peak = np.abs(clip).max()
        if peak > 0.99:
            clip *= 0.99 / peak
        ok, why = speech_check(clip, SR, 1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sf.write(path, to_int16(clip), SR, format="WAV", subtype="PCM_16")
        return ok, why

    results = _run_chunked(work, tasks, key=lambda t: (t[0], t[1].spk_id), jobs=jobs)

    # background noise: long files, plus a babble made from espeak sentences
    bg = os.path.join(out_dir, "_background_noise_")
    os.makedirs(bg, exist_ok=True)
    n = int(noise_seconds * SR)
    for kind in NOISE_FILES:
        r = _rng(seed, "bg", kind)
        if kind == "babble":
            y = np.zeros(n, np.float32)
            pool = speakers["train"]
            for j in range(max(4, int(noise_seconds))):  # ~2-3 talkers at once
                spk = pool[j % len(pool)]
                seg = espeak(grammar.sentence(random.Random(f"{seed}-babble-{j}")), spk)
                pos = int(r.integers(0, max(1, n - len(seg))))
                seg = seg[: n - pos]
                y[pos: pos + len(seg)] += seg / (np.abs(seg).max() + 1e-9)
            y = y + 0.01 * make_noise("pink", n, r)
        else:
            y = make_noise(kind.replace("_noise", ""), n, r)
        y = y / (np.abs(y).max() + 1e-9) * 0.5
        sf.write(os.path.join(bg, f"{kind}.wav"), to_int16(y), SR, subtype="PCM_16")
    with open(os.path.join(bg, "README.md"), "w") as fh:
        fh.write("Synthetic background noise (denseshift-speech synth); long 16 kHz "
                 "recordings to cut 1-second 'silence' samples from.\n")
    lists = {"validation": [], "testing": []}
    for (s, spk, w, path) in tasks:
        if s in lists:
            lists[s].append(f"{w}/{os.path.basename(path)}")
    for s, name in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
        with open(os.path.join(out_dir, name), "w") as fh:
            fh.writelines(line + "\n" for line in sorted(lists[s]))
    with open(os.path.join(out_dir, "README.md"), "w") as fh:
        fh.write("Synthetic keyword-spotting corpus in the Google Speech Commands v0.02 "
                 "layout, written by `denseshift-speech synth speech-commands` "
                 f"(seed {seed}) with espeak-ng.\n")
    stats, bad = {}, []
    for s in splits:
        idx = [j for j, t in enumerate(tasks) if t[0] == s]
        stats[s] = {"hours": round(len(idx) / 3600, 4), "utterances": len(idx),
                    "speakers": len(speakers[s]),
                    "vocabulary": len({tasks[j][2] for j in idx})}
        bad += [(tasks[j][3], results[j][1]) for j in idx if not results[j][0]]
    stats["total"] = {"hours": round(len(tasks) / 3600, 4), "utterances": len(tasks),
                      "speakers": sum(splits.values()), "vocabulary": len(set(words))}
    stats["background_noise_files"] = len(NOISE_FILES)
    stats["speech_check_failures"] = len(bad)
    stats["seconds"] = round(time.time() - t0, 2)
    for path, why in bad[:20]:
        log.warning("synthesized clip fails the speech check: %s: %s", path, why)
    _finish(out_dir, options, stats)
    log.info("synthesized Speech-Commands-layout corpus in %s: %s", out_dir, stats)
    return stats


# ---------------------------------------------------------------------------------------
# CLI

def add_parser(subparsers):
    p = subparsers.add_parser(
        "synth", help="write an offline synthetic corpus (espeak-ng) in a real dataset's layout",
        description="Write a synthetic corpus with espeak-ng in the LibriSpeech or Google "
                    "Speech Commands v0.02 layout. Deterministic from --seed; re-running "
                    "with the same options on a finished corpus does nothing.")
    sub = p.add_subparsers(dest="corpus", metavar="CORPUS")
    sub.required = True
    ls = sub.add_parser("librispeech", help="ASR corpus, LibriSpeech layout")
    ls.add_argument("out_dir")
    ls.add_argument("--seed", type=int, default=0)
    ls.add_argument("--train-utts", type=int, default=1500)
    ls.add_argument("--dev-utts", type=int, default=150)
    ls.add_argument("--test-utts", type=int, default=150)
    ls.add_argument("--test-other-utts", type=int, default=150)
    ls.add_argument("--train-speakers", type=int, default=40)
    ls.add_argument("--dev-speakers", type=int, default=8)
    ls.add_argument("--test-speakers", type=int, default=8)
    ls.add_argument("--test-other-speakers", type=int, default=8)
    ls.add_argument("--jobs", type=int, default=None, help="parallel espeak-ng processes")
    ls.add_argument("--force", action="store_true", help="synthesize even if already done")
    ls.set_defaults(func=_run_librispeech)
    sc = sub.add_parser("speech-commands", help="keyword-spotting corpus, Speech Commands layout")
    sc.add_argument("out_dir")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--train-speakers", type=int, default=40)
    sc.add_argument("--valid-speakers", type=int, default=6)
    sc.add_argument("--test-speakers", type=int, default=6)
    sc.add_argument("--repeats", type=int, default=2, help="takes of each core word per speaker")
    sc.add_argument("--filler-prob", type=float, default=0.5)
    sc.add_argument("--noise-seconds", type=float, default=60.0)
    sc.add_argument("--words", default=None,
                    help="comma-separated word list (default: the 35 v0.02 words)")
    sc.add_argument("--jobs", type=int, default=None)
    sc.add_argument("--force", action="store_true")
    sc.set_defaults(func=_run_speech_commands)
    return p


def _user_errors(fn):
    from ..errors import UserError
    try:
        return fn()
    except DataError as err:
        raise UserError(str(err)) from err


def _print_stats(stats):
    print(json.dumps(stats, indent=1))
    return 0


def _run_librispeech(args):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return _print_stats(_user_errors(lambda: synthesize_librispeech(
        args.out_dir, seed=args.seed, train_utts=args.train_utts, dev_utts=args.dev_utts,
        test_utts=args.test_utts, test_other_utts=args.test_other_utts,
        train_speakers=args.train_speakers, dev_speakers=args.dev_speakers,
        test_speakers=args.test_speakers, test_other_speakers=args.test_other_speakers,
        jobs=args.jobs, force=args.force)))


def _run_speech_commands(args):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kw = {}
    if args.words:
        kw["words"] = tuple(w.strip() for w in args.words.split(",") if w.strip())
    return _print_stats(_user_errors(lambda: synthesize_speech_commands(
        args.out_dir, seed=args.seed, train_speakers=args.train_speakers,
        valid_speakers=args.valid_speakers, test_speakers=args.test_speakers,
        repeats=args.repeats, filler_prob=args.filler_prob,
        noise_seconds=args.noise_seconds, jobs=args.jobs, force=args.force, **kw)))


def is_synthetic_corpus(folder) -> bool:
    """True if ``folder`` was written (completely or partly) by this synthesizer."""
    return any(os.path.isfile(os.path.join(folder, name)) for name in (MARKER, PARTIAL))


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
