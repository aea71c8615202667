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
"""
from __future__ import annotations

import os

import torch


class LMSearchError(ValueError):
    """The LM or its settings cannot be used (message names the file or setting)."""


class StreamingLMSearch:
    def __init__(self, vocab: list, blank_index: int, arpa: str, beam_size: int = 20,
                 lm_weight: float = 0.3, word_bonus: float = 1.0, oov_penalty: float = -10.0):
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
                unk_score_offset=float(oov_penalty))
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
                    "word_bonus": hp.get("word_bonus", 1.0), "oov_penalty": hp.get("oov_penalty", -10.0)}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(vocab, model.blank_index, arpa, **settings)

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
