"""Offline speech corpora (six synthesis engines), preparers for the real datasets'
layouts, and audio checks."""
from .audio_checks import (BadAudioError, DataError, check_audio, check_transcript,
                           inspect_audio)

__all__ = ["BadAudioError", "DataError", "check_audio", "check_transcript", "inspect_audio",
           "synthesize_librispeech", "synthesize_speech_commands", "read_speakers",
           "prepare_librispeech",
           "prepare_speech_commands"]


def __getattr__(name):  # lazy: keep `import denseshift_speech.data` light
    if name in ("synthesize_librispeech", "synthesize_speech_commands", "read_speakers"):
        from . import synth
        return getattr(synth, name)
    if name == "prepare_librispeech":
        from .librispeech import prepare_librispeech
        return prepare_librispeech
    if name == "prepare_speech_commands":
        from .speech_commands import prepare_speech_commands
        return prepare_speech_commands
    raise AttributeError(name)
