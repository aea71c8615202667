"""Model classes the recipes need beyond SpeechBrain's own."""
from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR


class CTCTransformerASR(TransformerASR):
    """SpeechBrain's TransformerASR whose ``forward`` runs the encoder only.

    A CTC model only needs ``encode``; calling it through ``forward`` lets
    DistributedDataParallel (which wraps the module under torchrun) see the call and
    synchronize gradients.  State-dict keys, streaming (``encode_streaming``,
    ``make_streaming_context``) and everything else are TransformerASR's.
    """

    def forward(self, src, wav_len=None, pad_idx=0, dynchunktrain_config=None):
        return self.encode(src, wav_len, pad_idx, dynchunktrain_config=dynchunktrain_config)
