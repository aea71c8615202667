"""Model classes the recipes need beyond SpeechBrain's own.

* :class:`CTCTransformerASR`: the conformer, CTC only or joint CTC/attention
  (SpeechBrain's Transformer decoder plus its output projection ``seq_lin``).
* :class:`AttentionalDecoder`: SpeechBrain's ``AttentionalRNNDecoder`` (location-aware
  attention) with its token embedding and output projection, the CRDNN's optional
  decoder; built empty when disabled, so a CTC-only model keeps its state dict.
* :class:`TransformerJointSearcher` / :class:`RNNJointSearcher`: SpeechBrain's
  ``S2STransformerBeamSearcher`` / ``S2SRNNBeamSearcher`` with joint CTC scoring when
  ``bos = eos = blank`` (the recipes' tokenizer has no bos/eos piece; see
  :class:`_SharedBlankJointScoring`).
"""
import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.decoders.seq2seq import S2SRNNBeamSearcher, S2STransformerBeamSearcher
from speechbrain.lobes.models.transformer.Transformer import get_lookahead_mask
from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
from speechbrain.nnet.embedding import Embedding
from speechbrain.nnet.linear import Linear
from speechbrain.nnet.RNN import AttentionalRNNDecoder


class CTCTransformerASR(TransformerASR):
    """SpeechBrain's TransformerASR whose ``forward`` runs what the recipe trains.

    ``forward(src, wav_len=...)`` runs the encoder only (a CTC model only needs
    ``encode``); calling it through ``forward`` lets DistributedDataParallel (which wraps
    the module under torchrun) see the call and synchronize gradients.

    With ``num_decoder_layers > 0``, TransformerASR builds its Transformer decoder and
    this class adds ``seq_lin`` (d_model -> tgt_vocab), the seq2seq output projection;
    ``forward(src, tgt, wav_len=...)`` then returns ``(encoder_out, seq_logits)``, the
    logits of the teacher-forced decoder for the token ids ``tgt`` (bos + transcript):
    everything with parameters runs inside the one call DDP sees.  Test-time search
    uses TransformerASR's ``decode`` and ``seq_lin`` directly.  With
    ``num_decoder_layers: 0`` (the recipe default) state-dict keys are
    TransformerASR's, unchanged.  Streaming (``encode_streaming``,
    ``make_streaming_context``) uses the encoder only and ignores a decoder.
    """

    def __init__(self, tgt_vocab, input_size, d_model=512, *args, **kwargs):
        super().__init__(tgt_vocab, input_size, d_model, *args, **kwargs)
        if hasattr(self, "decoder"):
            self.seq_lin = Linear(input_size=d_model, n_neurons=tgt_vocab)

    @property
    def has_decoder(self) -> bool:
        return hasattr(self, "seq_lin")

    def forward(self, src, tgt=None, wav_len=None, pad_idx=0, dynchunktrain_config=None):
        if tgt is not None:
            if not self.has_decoder:
                raise ValueError("CTCTransformerASR was built with num_decoder_layers=0: "
                                 "it has no decoder to run tgt through")
            if tgt.is_floating_point():
                raise TypeError("tgt must hold token ids; pass wav_len by keyword "
                                "(forward(src, tgt=None, wav_len=None, ...))")
        encoder_out = self.encode(src, wav_len, pad_idx, dynchunktrain_config=dynchunktrain_config)
        if tgt is None:
            return encoder_out
        return encoder_out, self.seq_lin(self._decode_teacher_forced(tgt, encoder_out, wav_len))

    def _decode_teacher_forced(self, tgt, encoder_out, wav_len=None):
        """The decoder states for ``tgt``, masked exactly as ``TransformerASR.decode``
        (which the beam search calls) masks them, with gradients.

        No key-padding mask on ``tgt``: bos is the padding id (0) here, so a
        pad-id mask would hide bos; the causal mask already keeps every real position
        from attending to the padding after it, and padded positions are masked out of
        the loss.
        """
        memory_key_padding_mask = None
        if wav_len is not None:
            enc_len = torch.round(wav_len * encoder_out.shape[1]).long()
            memory_key_padding_mask = ~length_to_mask(enc_len, max_len=encoder_out.shape[1]).bool()
        emb = self.custom_tgt_module(tgt)
        if self.attention_type in ("RelPosMHAXL", "RoPEMHA"):
            emb = emb + self.positional_encoding_decoder(emb)
        elif (self.positional_encoding_type == "fixed_abs_sine"
              or self.attention_type == "hypermixing"):
            emb = emb + self.positional_encoding(emb)
        states, _, _ = self.decoder(
            emb, encoder_out, tgt_mask=get_lookahead_mask(tgt),
            memory_key_padding_mask=memory_key_padding_mask, pos_embs_tgt=None, pos_embs_src=None)
        return states


class AttentionalDecoder(torch.nn.Module):
    """The CRDNN's optional attention decoder: token embedding (``emb``), SpeechBrain's
    ``AttentionalRNNDecoder`` with location-aware attention (``dec``) and the seq2seq
    output projection (``seq_lin``), as in SpeechBrain's LibriSpeech seq2seq recipe.

    ``forward(encoder_out, tokens_bos, wav_len)`` returns the teacher-forced logits.
    With ``enabled=False`` nothing is built: no parameters, no random draws, nothing in
    the state dict, so a CTC-only recipe that lists this module keeps its checkpoints.
    """

    def __init__(self, enc_dim, vocab_size, enabled=True, emb_size=128, hidden_size=256,
                 attn_dim=256, rnn_type="gru", num_layers=1, channels=10, kernel_size=100,
                 dropout=0.0):
        super().__init__()
        self.enabled = bool(enabled)
        if not self.enabled:
            return
        self.emb = Embedding(num_embeddings=vocab_size, embedding_dim=emb_size)
        self.dec = AttentionalRNNDecoder(
            rnn_type=rnn_type, attn_type="location", hidden_size=hidden_size, attn_dim=attn_dim,
            num_layers=num_layers, enc_dim=enc_dim, input_size=emb_size, channels=channels,
            kernel_size=kernel_size, re_init=True, dropout=dropout)
        self.seq_lin = Linear(input_size=hidden_size, n_neurons=vocab_size)

    def forward(self, encoder_out, tokens_bos, wav_len):
        if not self.enabled:
            raise RuntimeError("the attention decoder is disabled (attention_decoder: False)")
        states, _ = self.dec(self.emb(tokens_bos), encoder_out, wav_len)
        return self.seq_lin(states)

    def extra_repr(self) -> str:
        return "" if self.enabled else "disabled"


class _SharedBlankJointScoring:
    """Joint CTC/attention scoring for a vocabulary whose bos = eos = CTC blank.

    SpeechBrain's ``S2SBeamSearcher`` refuses a CTC scorer unless bos, eos and blank are
    three different ids.  The recipes' SentencePiece model has no bos/eos piece (its id 0
    is unk, used as the CTC blank, and never occurs in a transcript), so the decoders use
    id 0 for bos and eos as well.  SpeechBrain's ``CTCPrefixScore`` supports
    ``eos == blank`` (the eos column gets the end-of-prefix probability instead of being
    blocked), but ``ScorerBuilder`` blocks the blank id for a *full* CTC scorer, which
    would make eos unreachable; so the CTC scorer must be a *partial* scorer (it scores
    the attention decoder's pre-pruned candidates; eos is always scored).  Everything
    else is SpeechBrain's search.
    """

    def __init__(self, *args, scorer=None, **kwargs):
        super().__init__(*args, **kwargs)  # no scorer: skips the three-distinct-ids check
        if scorer is None:
            return
        if self.length_normalization and scorer.weights["length"] > 0.0:
            raise ValueError("Length normalization is not compatible with length rewarding.")
        ctc = {**scorer.full_scorers, **scorer.partial_scorers}.get("ctc")
        if ctc is not None and scorer.weights["ctc"] > 0.0:
            if ctc.eos_index != self.eos_index:
                raise ValueError(f"the CTC scorer's eos_index ({ctc.eos_index}) differs from "
                                 f"the searcher's ({self.eos_index})")
            if ctc.blank_index == self.eos_index and "ctc" in scorer.full_scorers:
                raise ValueError("eos is the CTC blank id: give the CTCScorer as one of the "
                                 "ScorerBuilder's partial_scorers (a full CTC scorer blocks "
                                 "the blank id, hence eos)")
            self.ctc_weight = scorer.weights["ctc"]
            self.attn_weight = 1.0 - self.ctc_weight
        self.scorer = scorer


class TransformerJointSearcher(_SharedBlankJointScoring, S2STransformerBeamSearcher):
    """``S2STransformerBeamSearcher`` over a :class:`CTCTransformerASR` with a decoder
    (``model``: its ``decode`` and ``seq_lin``); other arguments are SpeechBrain's."""

    def __init__(self, model, **kwargs):
        if not getattr(model, "has_decoder", False):
            raise ValueError("TransformerJointSearcher needs a CTCTransformerASR built with "
                             "num_decoder_layers > 0")
        super().__init__(modules=[model, model.seq_lin], **kwargs)


class RNNJointSearcher(_SharedBlankJointScoring, S2SRNNBeamSearcher):
    """``S2SRNNBeamSearcher`` over an enabled :class:`AttentionalDecoder` (``model``:
    its ``emb``, ``dec`` and ``seq_lin``); other arguments are SpeechBrain's."""

    def __init__(self, model, **kwargs):
        if not getattr(model, "enabled", False):
            raise ValueError("RNNJointSearcher needs an enabled AttentionalDecoder")
        super().__init__(embedding=model.emb, decoder=model.dec, linear=model.seq_lin, **kwargs)
