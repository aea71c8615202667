"""Offline text-to-speech engines behind the synthetic corpora.

Six engine families from Debian packages, each run as a subprocess:

* ``espeak-ng`` -- formant synthesis; 8 English accents x 74 voice variants.
* ``flite`` -- CMU Flite: a diphone voice (``kal``, ``kal16``) and statistical-parametric
  (clustergen) voices ``awb``, ``rms``, ``slt``.
* ``mbrola`` -- MBROLA diphone concatenation (MBR-PSOLA) of recorded speakers, driven by
  espeak-ng's text front-end: ``mb-us1`` (female), ``mb-us2``, ``mb-en1`` (``mb-us3``
  lacks diphones espeak-ng's American phonemes need, so it is left out).
* ``pico`` -- SVOX Pico (``pico2wave``), two female voices ``en-US`` and ``en-GB``.
* ``rhvoice`` -- RHVoice (``RHVoice-test``), statistical-parametric voices ``alan``,
  ``bdl``, ``clb``, ``slt``, ``evgeniy-eng``, ``lyubov``.
* ``festival`` -- Festival: residual-excited LPC diphone voices ``kal_diphone`` and
  ``ked_diphone`` and the HTS voice ``cmu_us_slt_arctic_hts``.

mbrola, pico and rhvoice come from Debian's ``contrib`` and ``non-free`` components
(``make system-deps`` enables them).  Two neural engines, ``kokoro`` and ``piper``, run
in this process on onnxruntime (:mod:`.neural`).

A :class:`Speaker` (:mod:`.engine_base`) is an engine, a voice and a rate/pitch profile.  Every engine turns
``[(text, rate_factor)]`` into float32 mono 16 kHz arrays; a missing binary or voice is
one :class:`DataError` naming the Debian package, and an engine that writes no samples is
one naming the engine, the voice and the text.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile

import numpy as np

from . import neural
from .audio_checks import DataError, resample_np
# (Speaker is part of this module's API: callers build speakers from here)
from .engine_base import NATURAL_WPM, SR, Engine, Speaker, _text  # noqa: F401

log = logging.getLogger(__name__)

ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
# human-sounding variants (robots, whisper, croak, 'fast' etc. left out)
ESPEAK_VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "adam",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2",
    "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "Lee",
    "linda", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike",
    "norbert", "Nguyen", "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro",
    "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac", "anika", "grandma",
    "grandpa", "klatt", "klatt2", "klatt3"]
ESPEAK_FEMALE = {"alicia", "andrea", "annie", "aunty", "belinda", "linda", "steph", "steph2",
                 "steph3", "anika", "grandma", "shelby"}
def _package_version(package: str) -> str:
    """The installed Debian package's version (for engines without a --version)."""
    try:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True)
    except OSError:  # not a Debian system
        return "unknown"
    return _text(res.stdout) or "unknown"


def _pitch_percent(pitch: int) -> float:
    """A speaker's pitch 0..99 as 85..120 % of the voice's own F0 (Pico, RHVoice)."""
    return 85 + 35 * pitch / 99


class Espeak(Engine):
    name, binary, package = "espeak-ng", "espeak-ng", "espeak-ng"
    voices = {f"{a}+{v}": "F" if v.lower() in ESPEAK_FEMALE or
              (v.lower().startswith("f") and v[1:].isdigit()) else "M"
              for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS}
    BREAK_MS = 1500

    def version(self) -> str:
        return self._version().split("Data at")[0].strip()

    def _pcm(self, args, speaker: Speaker):
        cmd = [self.binary, "-v", speaker.voice, "-p", str(speaker.pitch),
               "-g", str(speaker.gap), "--stdout"] + args
        raw = self._run(cmd, speaker).stdout
        if len(raw) < 46 or raw[:4] != b"RIFF":
            raise DataError(f"{self.name} wrote an empty file for voice {speaker.voice}")
        sr = int.from_bytes(raw[24:28], "little")
        return np.frombuffer(raw[44:len(raw) - (len(raw) - 44) % 2], dtype="<i2"), sr

    def one(self, text: str, speaker: Speaker, rate: int) -> np.ndarray:
        pcm, sr = self._pcm(["-s", str(rate), text.lower()], speaker)
        if not np.any(pcm):
            raise DataError(f"{self.name} wrote an empty file for voice {speaker.voice} "
                            f"({text!r})")
        return resample_np(pcm.astype(np.float32) / 32768.0, sr, SR)

    def synthesize(self, items, speaker: Speaker) -> list:
        """One espeak-ng process for all ``items`` (its start-up dominates the cost of a
        short sentence): SSML with a long break between items, split on the breaks;
        one process per item when the split is ambiguous."""
        def each():
            return [self.one(t, speaker, int(round(speaker.rate * f))) for t, f in items]
        if len(items) <= 1:
            return each()
        body = "".join(f'<prosody rate="{int(round(100 * f))}%">{t.lower()}</prosody>'
                       f'<break time="{self.BREAK_MS}ms"/>' for t, f in items)
        pcm, sr = self._pcm(["-m", "-s", str(speaker.rate), f"<speak>{body}</speak>"], speaker)
        quiet = np.concatenate([[0], (np.abs(pcm.astype(np.int32)) <= 2).astype(np.int8), [0]])
        d = np.diff(quiet)
        starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
        long = [(a, b) for a, b in zip(starts, ends) if b - a >= 0.5 * self.BREAK_MS / 1000 * sr]
        # one long pause after every item (the last one may be cut at the end)
        if len(long) not in (len(items), len(items) - 1) or (long and long[0][0] == 0):
            log.debug("batch split failed for %s; synthesizing one by one", speaker.voice)
            return each()
        bounds = [0] + [b for _, b in long]
        cuts = [a for a, _ in long] + [len(pcm)]
        out = []
        for k in range(len(items)):
            seg = pcm[bounds[k]: cuts[k]].astype(np.float32) / 32768.0
            if len(seg) < 0.05 * sr:
                return each()
            out.append(resample_np(seg, sr, SR))
        return out


class Flite(Engine):
    name, binary, package = "flite", "flite", "flite"
    voices = {"kal": "M", "kal16": "M", "awb": "M", "rms": "M", "slt": "F"}

    def version(self) -> str:
        return self._version()

    def synthesize(self, items, speaker: Speaker) -> list:
        # mean F0: pitch 0..99 spread over a range that suits the voice's sex
        lo, hi = (150, 230) if self.sex(speaker.voice) == "F" else (85, 145)
        f0 = lo + (hi - lo) * speaker.pitch / 99
        out = []
        with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
            for k, (text, factor) in enumerate(items):
                path = os.path.join(tmp, f"{k}.wav")
                stretch = NATURAL_WPM / (speaker.rate * factor)
                self._run([self.binary, "-voice", speaker.voice,
                           "--setf", f"duration_stretch={stretch:.3f}",
                           "--setf", f"int_f0_target_mean={f0:.1f}",
                           "-t", text.lower(), "-o", path], speaker)
                out.append(self._read(path, speaker, text))
        return out


class Mbrola(Espeak):
    """MBROLA's diphone voices behind espeak-ng's text front-end (``-v mb-us1``):
    espeak-ng turns text into phonemes and prosody, mbrola concatenates the recorded
    diphones, so the sound is mbrola's.  Rate and pitch work as for espeak-ng."""
    name = "mbrola"
    voices = {"mb-us1": "F", "mb-us2": "M", "mb-en1": "M"}
    DATABASES = "/usr/share/mbrola"

    def require(self) -> str:
        super().require()      # espeak-ng, the front-end
        if shutil.which("mbrola") is None:
            raise DataError("mbrola is not installed (no `mbrola` on PATH); install the "
                            "Debian package (contrib): apt-get install -y mbrola")
        return shutil.which(self.binary)

    def version(self) -> str:
        self.require()
        return "mbrola via " + super().version()

    def synthesize(self, items, speaker: Speaker) -> list:
        self.require()
        name = speaker.voice.removeprefix("mb-")
        if not os.path.isfile(os.path.join(self.DATABASES, name, name)):
            raise DataError(f"mbrola voice {speaker.voice} is not installed; install the "
                            f"Debian package (non-free): apt-get install -y mbrola-{name}")
        return super().synthesize(items, speaker)


class Pico(Engine):
    """SVOX Pico: ``pico2wave`` writes one WAV per call; speed and pitch are set with
    its markup (100 = the voice's own)."""
    name, binary, package = "pico", "pico2wave", "libttspico-utils"
    voices = {"en-US": "F", "en-GB": "F"}

    def version(self) -> str:
        self.require()
        return f"pico2wave {_package_version(self.package)}"

    def synthesize(self, items, speaker: Speaker) -> list:
        if speaker.voice not in self.voices:
            raise DataError(f"pico has no voice {speaker.voice!r}; English voices: "
                            f"{sorted(self.voices)}")
        pitch = _pitch_percent(speaker.pitch)

        def command(text, speed, path):
            quoted = text.lower().replace("<", " ").replace(">", " ")
            markup = (f"<speed level='{speed:.0f}'><pitch level='{pitch:.0f}'>"
                      f"{quoted}</pitch></speed>")
            return [self.binary, "-l", speaker.voice, "-w", path, markup], None
        return self._one_file_each(items, speaker, command)


class RHVoice(Engine):
    """RHVoice's statistical-parametric voices: ``RHVoice-test`` reads text on stdin and
    writes a 16 kHz WAV; rate and pitch in percent (100 = the voice's own)."""
    name, binary, package = "rhvoice", "RHVoice-test", "rhvoice rhvoice-english"
    voices = {"alan": "M", "bdl": "M", "clb": "F", "slt": "F", "evgeniy-eng": "M",
              "lyubov": "F"}
    VOICES = "/usr/share/RHVoice/voices"

    def version(self) -> str:
        self.require()
        return f"RHVoice {_package_version('rhvoice')}"

    def synthesize(self, items, speaker: Speaker) -> list:
        if not os.path.isdir(os.path.join(self.VOICES, speaker.voice)):
            raise DataError(f"RHVoice voice {speaker.voice} is not installed; install the "
                            "Debian package (non-free): apt-get install -y rhvoice-english")
        pitch = _pitch_percent(speaker.pitch)

        def command(text, rate, path):
            return ([self.binary, "-p", speaker.voice, "-R", str(SR), "-r", f"{rate:.0f}",
                     "-t", f"{pitch:.0f}", "-o", path], text.lower().encode())
        return self._one_file_each(items, speaker, command)


class Festival(Engine):
    name, binary, package = "festival", "festival", "festival"
    voices = {"kal_diphone": "M", "ked_diphone": "M", "cmu_us_slt_arctic_hts": "F"}
    VOICE_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
                      "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}

    def version(self) -> str:
        return self._version()

    def synthesize(self, items, speaker: Speaker) -> list:
        """One festival process per call: a Scheme script saving each item's waveform."""
        out = []
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
            lines = [f"(voice_{speaker.voice})"]
            for k, (text, factor) in enumerate(items):
                stretch = NATURAL_WPM / (speaker.rate * factor)
                quoted = text.lower().replace("\\", " ").replace('"', " ")
                lines += [f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
                          f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) '
                          f'"{os.path.join(tmp, f"{k}.wav")}" \'riff)']
            script = os.path.join(tmp, "say.scm")
            with open(script, "w") as fh:
                fh.write("\n".join(lines) + "\n")
            res = self._run([self.binary, "--batch", script], speaker, check=False)
            err = _text(res.stderr) + _text(res.stdout)
            if "unbound variable" in err and f"voice_{speaker.voice}" in err:
                package = self.VOICE_PACKAGES.get(speaker.voice)
                hint = (f"install the Debian package: apt-get install -y {package}" if package
                        else f"voices known here: {sorted(self.VOICE_PACKAGES)}")
                raise DataError(f"festival voice {speaker.voice} is not installed; {hint}")
            if res.returncode != 0:
                raise DataError(f"festival failed for voice {speaker.voice}: {err}")
            for k, (text, _) in enumerate(items):
                path = os.path.join(tmp, f"{k}.wav")
                if not os.path.isfile(path):
                    raise DataError(f"festival wrote no file for voice {speaker.voice} "
                                    f"({text!r}): {err or 'no message'}")
                out.append(self._read(path, speaker, text))
        return out


DEBIAN_ENGINES = (Espeak(), Flite(), Mbrola(), Pico(), RHVoice(), Festival())


@functools.lru_cache(maxsize=1)
def all_engines() -> dict:
    """``{name: Engine}``: the Debian programs' and the neural ones (:mod:`.neural`)."""
    return {e.name: e for e in DEBIAN_ENGINES + neural.ENGINES}


def engine(name: str) -> Engine:
    try:
        return all_engines()[name]
    except KeyError:
        raise DataError(f"unknown speech engine {name!r}; expected one of "
                        f"{sorted(all_engines())}") from None


def versions(names) -> dict:
    """``{engine: version string}``, checking that every engine is installed."""
    return {n: engine(n).version() for n in sorted(set(names))}


def synthesize(items, speaker: Speaker) -> list:
    """``[(text, rate_factor)]`` spoken by ``speaker``: float32 16 kHz arrays."""
    return engine(speaker.engine).synthesize(items, speaker)
