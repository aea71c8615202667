"""What every speech engine of the corpora shares: the :class:`Speaker` it speaks as,
the :class:`Engine` contract (``synthesize([(text, rate_factor)], speaker)`` -> float32
mono 16 kHz arrays) and the helpers subprocess engines use.  The engines themselves:
:mod:`.engines` (Debian programs, and the registry of all engines) and :mod:`.neural`."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from .audio_checks import DataError, resample_np

SR = 16000

# a speaker's nominal speaking rate (words per minute) maps to a duration stretch of
# NATURAL_WPM / rate for the engines without a words-per-minute option
NATURAL_WPM = 170


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: ``engine`` + ``voice`` + a rate/pitch profile.

    ``rate`` is in words per minute, ``pitch`` 0..99 (espeak-ng's scale, mapped to a
    mean F0 by flite; festival keeps its voices' own intonation), ``gap`` espeak-ng's
    extra word gap in 10 ms units (0 elsewhere)."""
    spk_id: str
    engine: str
    voice: str
    rate: int
    pitch: int = 50
    gap: int = 0

    @property
    def description(self) -> str:
        """The SPEAKERS.TXT name column: ``engine:voice s<rate> p<pitch> g<gap>``."""
        return f"{self.engine}:{self.voice} s{self.rate} p{self.pitch} g{self.gap}"


class Engine:
    """A text-to-speech program: ``synthesize([(text, rate_factor)], speaker)``."""
    name = ""
    binary = ""
    package = ""
    voices: dict = {}          # voice -> "M" | "F"

    def sex(self, voice: str) -> str:
        return self.voices.get(voice, "M")

    def require(self) -> str:
        """The program's path; a clear error naming the package when it is missing."""
        path = shutil.which(self.binary)
        if path is None:
            raise DataError(f"{self.name} is not installed (no `{self.binary}` on PATH); "
                            f"install the Debian package: apt-get install -y {self.package}")
        return path

    def version(self) -> str:
        raise NotImplementedError

    def synthesize(self, items, speaker: Speaker) -> list:
        raise NotImplementedError

    def _run(self, cmd, speaker: Speaker, check: bool = True,
             stdin: bytes | None = None) -> subprocess.CompletedProcess:
        try:
            res = subprocess.run(cmd, capture_output=True, input=stdin)
        except FileNotFoundError:  # the program is gone: say which package brings it
            self.require()
            raise
        if check and res.returncode != 0:
            raise DataError(f"{self.name} failed for voice {speaker.voice}: "
                            f"{_text(res.stderr) or _text(res.stdout)}")
        return res

    def _one_file_each(self, items, speaker: Speaker, command) -> list:
        """One process per item: ``command(text, rate %, wav path)`` gives its argv and
        stdin; the rate is the speaker's words per minute times the item's factor, in
        percent of NATURAL_WPM."""
        out = []
        with tempfile.TemporaryDirectory(prefix=f"{self.name}-") as tmp:
            for k, (text, factor) in enumerate(items):
                path = os.path.join(tmp, f"{k}.wav")
                cmd, stdin = command(text, 100 * speaker.rate * factor / NATURAL_WPM, path)
                self._run(cmd, speaker, stdin=stdin)
                out.append(self._read(path, speaker, text))
        return out

    def _version(self) -> str:
        """The first line ``<binary> --version`` prints (some exit non-zero)."""
        res = self._run([self.binary, "--version"], Speaker("", self.name, "", 0), check=False)
        lines = (_text(res.stdout) or _text(res.stderr)).splitlines()
        named = [line for line in lines if "version" in line.lower()]
        return (named or lines or ["unknown"])[0].strip()

    def _read(self, path: str, speaker: Speaker, text: str) -> np.ndarray:
        """A written WAV as float32 16 kHz; an empty or missing file is an error."""
        try:
            x, sr = sf.read(path, dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as err:
            raise DataError(f"{self.name} wrote no readable audio for voice {speaker.voice} "
                            f"({text!r}): {err}") from None
        if len(x) == 0 or not np.any(x):
            raise DataError(f"{self.name} wrote an empty file for voice {speaker.voice} "
                            f"({text!r}); check that the voice is installed")
        return resample_np(x.mean(axis=1), sr, SR)


def _text(raw) -> str:
    return (raw or b"").decode(errors="replace").strip()[-400:]
