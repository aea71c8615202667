"""Streaming (chunk-by-chunk) decoding of exported conformer CTC models on a CPU.

    from denseshift_speech.streaming import load_model, StreamingDecoder
    model = load_model("results/conformer_ds3/model.dsp")     # packed DenseShift file
    dec = StreamingDecoder(model, chunk_size=16, left_context_chunks=4)
    for piece in pieces:                 # mono float32 at model.sample_rate
        hyp = dec.accept(piece)          # Hypothesis when the text changed, else None
    print(dec.finish().text, dec.stats.rtf)

Several streams at once: :class:`StreamBatch` (one decoder per stream, the chunks that
are ready together encoded in one batched call); :func:`stream_many` feeds it a list of
waveforms, N at a time (``denseshift-speech stream --streams N``).

``denseshift-speech stream MODEL --wav FILE`` is the command-line front end
(:mod:`denseshift_speech.cli.stream`); :func:`stream_manifest` streams utterances of a
recipe CSV and prints hypothesis beside reference (used by ``make demo``).
Keyword spotters: :func:`load_kws_model` (:mod:`.kws`), on a stream :mod:`.spotter`
(``denseshift-speech spot``).  :func:`evaluate` (:mod:`.evaluate`) measures any model
file on real recordings (``denseshift-speech evaluate``).

Names are imported lazily so the CLI's ``--help`` does not load torch.
"""
import importlib

from .defaults import DEFAULT_CHUNK_SIZE, DEFAULT_LEFT_CONTEXT

_EXPORTS = {
    "AudioError": "audio", "read_audio": "audio",
    "CausalFbank": "decoder", "Hypothesis": "decoder", "StreamingDecoder": "decoder",
    "Endpointing": "decoder", "StreamBatch": "decoder", "BatchStats": "decoder",
    "StreamingFrontEnd": "decoder", "StreamStats": "decoder", "decode_full": "decoder",
    "frontend_full": "decoder",
    "ModelFileError": "model", "StreamingModel": "model",
    "load_model": "model",
    "stream_manifest": "run", "stream_samples": "run", "sweep": "run", "word_errors": "run",
    "compare_fp32": "run", "stream_many": "run",
    "count_packed_calls": "run", "summary": "run",
    "KWSModel": "kws", "load_kws_model": "kws",
    "evaluate": "evaluate", "read_eval_set": "evaluate",
}

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_LEFT_CONTEXT", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
