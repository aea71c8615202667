"""Streaming CTC prefix beam search fused with a word n-gram LM (KenLM).

SpeechBrain's ``CTCPrefixBeamSearcher`` works frame by frame: its ``partial_decoding``
takes the beams, the LM score caches and the index of the first frame, so calling it on
each chunk's log-probabilities in turn gives exactly the beams that one call on the whole
utterance gives (tested), and ``finalize_decoding`` scores the last partial word at the
end.  This class keeps that state across chunks.  The same LM the recipes build
(``save/lm_<order>gram.arpa`` in a run folder) or any ARPA file works, with the decoding
settings stored in the model file (``lm_weight``, ``word_bonus``, ``oov_penalty``,
``beam_size``) unless given.

After each chunk, :meth:`partial` gives the best beam's text and the words every live
beam agrees on: all later beams extend today's beams, so those words can no longer change.

Which decoding a model file gets (:func:`default_decoding`, :func:`choose_decoding`): the
best it supports -- ``beam_lm`` when its LM is found (``save/lm_<order>gram.arpa`` beside
the model file, or the ARPA file the caller names) and KenLM is installed, else
``greedy`` -- each with a one-line reason for the summaries.
"""
from __future__ import annotations

import os
import re
from typing import NamedTuple

import torch

DECODINGS = ("greedy", "beam_lm")


class LMSearchError(ValueError):
    """The LM or its settings cannot be used (message names the file or setting)."""


class DecodingChoice(NamedTuple):
    """How a model file is decoded: ``decoding`` ("greedy" or "beam_lm"), the ARPA file
    of ``beam_lm`` (else None), and ``reason``, one line starting with the decoding
    (e.g. "greedy: no LM beside the model (looked for .../save/lm_3gram.arpa)")."""
    decoding: str
    lm_path: str | None
    reason: str


def lm_beside_model(model_path, lm_order: int = 3) -> str:
    """Where the recipe writes the LM of the run whose ``model.dsp`` is ``model_path``:
    ``save/lm_<lm_order>gram.arpa`` in the same folder (the file may not exist)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(model_path)))
    return os.path.join(folder, "save", f"lm_{int(lm_order)}gram.arpa")


def _stored_lm_order(model_path) -> int:
    """``lm_order`` of the hparams stored in a model file (3 when absent or unreadable);
    reads the header only."""
    from ..packed import PackedFileError, read_packed_metadata
    try:
        text = read_packed_metadata(os.fspath(model_path))["metadata"].get("hparams_yaml", "")
    except (PackedFileError, OSError):
        return 3
    m = re.search(r"^lm_order:\s*(\d+)\s*$", text, flags=re.M)
    return int(m.group(1)) if m else 3


def _kenlm_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("kenlm") is not None


def _lm_to_use(model_path, hparams: dict | None, lm_arpa: str | None) -> tuple[str, str]:
    """(ARPA path, how it was found): ``lm_arpa`` when named, else the LM beside the model
    for the stored ``lm_order``.  The file may not exist."""
    if lm_arpa:
        return os.fspath(lm_arpa), "the LM given"
    order = hparams.get("lm_order", 3) if hparams is not None else _stored_lm_order(model_path)
    return lm_beside_model(model_path, order), "LM beside the model"


def default_decoding(model_path, hparams: dict | None = None,
                     lm_arpa: str | None = None) -> DecodingChoice:
    """The best decoding the model file ``model_path`` supports, and why.

    ``beam_lm`` (CTC prefix beam search fused with the word n-gram LM, at the settings
    stored in the file) when the LM is there: ``lm_arpa`` if given, else
    :func:`lm_beside_model` for the stored ``lm_order``; ``greedy`` when there is none,
    or when the ``kenlm`` package is missing.  ``hparams``: the file's stored hparams
    (``StreamingModel.hparams``) when already loaded, else they are read from the file.
    A named ``lm_arpa`` that does not exist raises :class:`LMSearchError`: naming an LM
    asks for it.
    """
    path, where = _lm_to_use(model_path, hparams, lm_arpa)
    if not os.path.isfile(path):
        if lm_arpa:
            raise LMSearchError(f"LM file not found: {path!r}")
        return DecodingChoice("greedy", None, f"greedy: no LM beside the model (looked for {path})")
    if not _kenlm_installed():
        return DecodingChoice("greedy", None, f"greedy: {where} ({path}) needs the 'kenlm' "
                                              "package, which is not installed")
    return DecodingChoice("beam_lm", path, f"beam_lm: {where} ({path})")


def choose_decoding(model_path, decoding: str | None = None, hparams: dict | None = None,
                    lm_arpa: str | None = None) -> DecodingChoice:
    """``decoding`` as asked ("greedy" or "beam_lm"), or :func:`default_decoding` when
    None.  An explicit ``beam_lm`` without its LM file or without kenlm raises
    :class:`LMSearchError`."""
    if decoding is None:
        return default_decoding(model_path, hparams, lm_arpa)
    if decoding not in DECODINGS:
        raise LMSearchError(f"decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
    if decoding == "greedy":
        return DecodingChoice("greedy", None, "greedy: asked for")
    path, _ = _lm_to_use(model_path, hparams, lm_arpa)
    if not os.path.isfile(path):
        raise LMSearchError(f"LM file not found: {path!r} (an ARPA n-gram, e.g. the recipe's "
                            "save/lm_3gram.arpa; or --lm-arpa FILE)")
    if not _kenlm_installed():
        raise LMSearchError("LM decoding needs the 'kenlm' package (pip install kenlm)")
    return DecodingChoice("beam_lm", path, f"beam_lm: asked for ({path})")


class StreamingLMSearch:
    def __init__(self, vocab: list, blank_index: int, arpa: str, beam_size: int = 20,
                 lm_weight: float = 0.3, word_bonus: float = 1.0, oov_penalty: float = -10.0,
                 blank_skip_threshold: float = 1.0):
        if not arpa or not os.path.isfile(arpa):
            raise LMSearchError(f"LM file not found: {arpa!r} (an ARPA n-gram, e.g. the "
                                f"recipe's save/lm_3gram.arpa)")
        import importlib.util
        if importlib.util.find_spec("kenlm") is None:  # the searcher imports it: say so here
            raise LMSearchError("LM decoding needs the 'kenlm' package (pip install kenlm)")
        from speechbrain.decoders.ctc import CTCPrefixBeamSearcher
        try:
            self.searcher = CTCPrefixBeamSearcher(
                blank_index=int(blank_index), vocab_list=list(vocab), kenlm_model_path=arpa,
                beam_size=int(beam_size), alpha=float(lm_weight), beta=float(word_bonus),
                unk_score_offset=float(oov_penalty),
                blank_skip_threshold=float(blank_skip_threshold))
        except Exception as err:  # kenlm raises plain exceptions on a bad file
            raise LMSearchError(f"{arpa}: cannot load the LM ({type(err).__name__}: {err})") from None
        self.reset()

    @classmethod
    def for_model(cls, model, arpa: str, **overrides):
        """A search over ``model``'s tokenizer pieces with its stored decoding settings."""
        sp = model.tokenizer
        vocab = [sp.id_to_piece(i) for i in range(sp.vocab_size())]
        hp = model.hparams
        settings = {"beam_size": hp.get("beam_size", 20), "lm_weight": hp.get("lm_weight", 0.3),
                    "word_bonus": hp.get("word_bonus", 1.0), "oov_penalty": hp.get("oov_penalty", -10.0),
                    "blank_skip_threshold": hp.get("blank_skip_threshold", 1.0)}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(vocab, model.blank_index, arpa, **settings)

    def fork(self) -> "StreamingLMSearch":
        """A search with a state of its own over the same loaded LM (one per stream of a
        :class:`~.decoder.StreamBatch`; the LM is read once)."""
        import copy
        twin = copy.copy(self)
        twin.reset()
        return twin

    def reset(self):
        from speechbrain.decoders.ctc import CTCBeam
        lm = self.searcher.lm
        self.cached_lm_scores = {} if lm is None else {("", False): (0.0, lm.get_start_state())}
        self.cached_p_lm_scores = {}
        self.beams = [CTCBeam(text="", full_text="", next_word="", partial_word="", last_token=None,
                              last_token_index=None, text_frames=[], partial_frames=(-1, -1),
                              score=0.0, score_ctc=0.0, p_b=0.0)]
        self.frames = 0
        self.final_text = None

    def step(self, log_probs: torch.Tensor):
        """Feed one chunk's CTC log-probabilities, shape (frames, vocab)."""
        lp = log_probs.detach().float().cpu().numpy()
        if lp.shape[0] == 0:
            return
        self.beams = self.searcher.partial_decoding(lp, lp.shape[0], self.beams, self.cached_lm_scores,
                                                    self.cached_p_lm_scores, processed_frames=self.frames)
        self.frames += lp.shape[0]

    def partial(self):
        """(best text so far, words no live beam can change)."""
        best = max(self.beams, key=lambda b: b.score)
        text = self.searcher.normalize_whitespace(best.text)  # (the partial word included)
        agreed = None
        for b in self.beams:
            words = b.text.split()
            if b.partial_word:  # the word still being spelled may change
                words = words[:-1]
            if agreed is None:
                agreed = words
            else:
                n = 0
                while n < min(len(agreed), len(words)) and agreed[n] == words[n]:
                    n += 1
                agreed = agreed[:n]
        return text, agreed or []

    def finish(self) -> str:
        """Score the last partial word; the best final text."""
        if self.final_text is None:
            beams = self.searcher.finalize_decoding(self.beams, self.cached_lm_scores,
                                                    self.cached_p_lm_scores, force_next_word=True,
                                                    is_end=True)
            self.final_text = self.searcher.normalize_whitespace(beams[0].text) if beams else ""
        return self.final_text
