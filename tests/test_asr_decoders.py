"""The LibriSpeech recipe's optional attention decoders (joint CTC/attention): the
conformer's Transformer decoder (--num_decoder_layers=N) and the CRDNN's attentional RNN
decoder (--attention_decoder=True), full precision and DenseShift, plus the pieces they
rest on (teacher-forced decoding, joint search with bos = eos = blank)."""
import glob
import json
import re

import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.decoders.scorer import CTCScorer, ScorerBuilder
from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR

from conftest import ROOT, run_recipe
from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.integrations.speechbrain.models import (AttentionalDecoder, CTCTransformerASR, RNNJointSearcher,
                                      TransformerJointSearcher)
from test_asr_recipe import (_assert_checkpoint_is_denseshift,
                             _assert_export_matches_recipe_file, tiny_args)

pytestmark = pytest.mark.slow

DECODER_ON = {"conformer": ["--num_decoder_layers=1"],
              "crdnn": ["--attention_decoder=True", "--emb_size=16", "--dec_neurons=32",
                        "--attn_dim=32"]}
DECODER_PREFIX = {"conformer": "Transformer.decoder.", "crdnn": "decoder.dec."}
DECODER_KEY = re.compile(r"(^|\.)(decoder|custom_tgt_module|seq_lin)\.")
SEQ_LIN = {"conformer": "Transformer.seq_lin.w.weight", "crdnn": "decoder.seq_lin.w.weight"}


def _conformer(vocab, d_model, decoder_layers, **kw):
    return CTCTransformerASR(
        tgt_vocab=vocab, input_size=20, d_model=d_model, nhead=2, num_encoder_layers=1,
        num_decoder_layers=decoder_layers, d_ffn=32, dropout=0.0, encoder_module="conformer",
        attention_type="RelPosMHAXL", normalize_before=True, causal=False, kernel_size=7, **kw)


def test_teacher_forced_decoder_matches_the_search_step():
    """forward(src, tgt) (training) and TransformerASR.decode (beam search) agree."""
    torch.manual_seed(0)
    model = _conformer(12, 16, 2).eval()
    src, wav_len = torch.randn(3, 17, 20), torch.tensor([1.0, 0.8, 0.5])
    tgt = torch.randint(1, 12, (3, 6))
    tgt[:, 0] = 0  # bos = blank = 0
    enc, logits = model(src, tgt, wav_len=wav_len)
    assert torch.equal(enc, model(src, wav_len=wav_len))
    states, _ = model.decode(tgt, enc, torch.round(wav_len * enc.shape[1]).long())
    assert torch.allclose(model.seq_lin(states), logits, atol=1e-5)
    with pytest.raises(TypeError, match="wav_len by keyword"):
        model(src, wav_len)


def test_decoders_off_add_no_weights(tmp_path):
    """Defaults: no decoder parameter anywhere, state dicts as before."""
    ctc_only = _conformer(12, 16, 0)
    assert not ctc_only.has_decoder
    plain = TransformerASR(12, 20, 16, 2, 1, 0, 32, encoder_module="conformer",
                           attention_type="RelPosMHAXL", normalize_before=True, causal=False,
                           kernel_size=7)
    assert list(ctc_only.state_dict()) == list(plain.state_dict())
    with pytest.raises(ValueError, match="num_decoder_layers=0"):
        ctc_only(torch.randn(1, 9, 20), torch.zeros(1, 3, dtype=torch.long))
    off = AttentionalDecoder(enc_dim=8, vocab_size=5, enabled=False)
    assert not off.state_dict() and not list(off.parameters())
    for name in ("conformer_fp.yaml", "crdnn_fp.yaml"):
        hp, _ = recipe.load_hparams(f"{ROOT}/hparams/{name}", {"output_folder": str(tmp_path)})
        keys = list(hp["model"].state_dict())
        assert keys and not [k for k in keys if DECODER_KEY.search(k)], name


class _Identity(torch.nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize("kind", ["transformer", "rnn"])
def test_joint_search_with_blank_as_bos_and_eos_follows_ctc(kind):
    """bos = eos = blank = 0: a confident CTC posterior (with a repeated token) is decoded
    exactly and the hypothesis ends on eos, whatever the untrained decoder says."""
    torch.manual_seed(0)
    vocab, target = 12, [3, 5, 5, 7, 2]
    frames = [0, 3, 3, 0, 5, 0, 5, 5, 0, 7, 7, 2, 0, 0]
    enc = torch.full((1, len(frames), vocab), -10.0)
    for t, c in enumerate(frames):
        enc[0, t, c] = 10.0
    # the encoder states double as CTC logits (ctc_fc = identity)
    scorer = ScorerBuilder(partial_scorers=[CTCScorer(_Identity(), blank_index=0, eos_index=0)],
                           weights={"ctc": 0.9}, scorer_beam_scale=3)  # 12 candidates: all
    common = dict(bos_index=0, eos_index=0, min_decode_ratio=0.0, max_decode_ratio=1.0,
                  beam_size=4, using_eos_threshold=False, scorer=scorer)
    if kind == "transformer":
        cls, model = TransformerJointSearcher, _conformer(vocab, vocab, 1).eval()
    else:
        cls, model = RNNJointSearcher, AttentionalDecoder(
            enc_dim=vocab, vocab_size=vocab, emb_size=8, hidden_size=16, attn_dim=16,
            kernel_size=5).eval()
    hyps, _, _, _ = cls(model=model, **common)(enc, torch.ones(1))
    assert hyps == [target]  # not padded to max_decode_ratio * 14 steps: it ended on eos
    full = ScorerBuilder(full_scorers=[CTCScorer(_Identity(), blank_index=0, eos_index=0)],
                         weights={"ctc": 0.4})
    with pytest.raises(ValueError, match="partial_scorers"):
        cls(model=model, **{**common, "scorer": full})


@pytest.mark.parametrize("hparams", ["conformer_fp.yaml", "conformer_ds.yaml",
                                     "crdnn_fp.yaml", "crdnn_ds.yaml"])
def test_smoke_training_with_attention_decoder(hparams, tiny_librispeech, tmp_path):
    arch = hparams.split("_")[0]
    out = tmp_path / "run"
    run_recipe("recipes/librispeech/train.py", hparams,
               *tiny_args(arch, tiny_librispeech, out, *DECODER_ON[arch]))
    results = json.loads((out / "results.json").read_text())
    assert results["decoding"] == "attention_ctc"
    assert set(results["wer"]) == set(results["wer_greedy"]) == {"test-clean", "test-other"}
    # an untrained decoder may loop until max_decode_ratio: WER far above 100 is possible
    assert all(0 <= v < float("inf") for v in results["wer"].values())
    assert (out / "wer_test-clean.txt").exists() and (out / "wer_test-other.txt").exists()
    assert (out / "model.dsp").exists()
    assert not (out / "save" / "lm_3gram.arpa").exists()  # the n-gram LM path is not used
    log = (out / "train_log.txt").read_text()
    assert "train loss" in log
    ckpt = glob.glob(str(out / "save" / "CKPT+*" / "model.ckpt"))[0]
    state = torch.load(ckpt, weights_only=True)
    assert any(k.endswith("seq_lin.w.weight") for k in state)
    if hparams.endswith("_fp.yaml"):
        assert results["bits"] == 32
        return
    # DenseShift: the checkpoint loads strictly into the rebuilt architecture, its decoder
    # weights are DenseShift codes, its output projection stays full precision.
    _assert_checkpoint_is_denseshift(out, ckpt, bits=3)
    hp = load_hyperpyyaml((out / recipe.RESOLVED_HPARAMS).read_text())
    summary = recipe.apply_denseshift(hp["modules"], hp)
    decoder_q = [n for n in summary.names() if n.startswith(DECODER_PREFIX[arch])]
    assert len(decoder_q) >= 4, summary.names()
    assert SEQ_LIN[arch] not in summary.names() and summary.kept[SEQ_LIN[arch]] == "excluded"
    assert results["quantized_fraction"] > 0.5
    _assert_export_matches_recipe_file(out)  # `export` rebuilds the decoder model too
    if arch == "conformer":
        _assert_ctc_streaming_ignores_decoder(out, tiny_librispeech)


@pytest.mark.parametrize("overrides,message", [
    (["--num_decoder_layers=-1"], "num_decoder_layers must be an integer >= 0, got -1"),
    (["--num_decoder_layers=2", "--ctc_weight=1.0"], "ctc_weight must be in [0, 1) with a decoder"),
])
def test_bad_decoder_hparams_fail_at_start(overrides, message, tmp_path):
    proc = run_recipe("recipes/librispeech/train.py", "conformer_ds.yaml",
                      f"--output_folder={tmp_path / 'bad'}", "--synthesize_if_missing=False",
                      *overrides, check=False, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def _assert_ctc_streaming_ignores_decoder(out, corpus):
    """The packed file of a decoder model still streams (CTC; the decoder is unused)."""
    from denseshift_speech.streaming import StreamingDecoder, decode_full, load_model
    from denseshift_speech.streaming.run import stream_samples
    model = load_model(out / "model.dsp")
    assert model.Transformer.has_decoder and model.packed
    wav = torch.from_numpy(sf.read(sorted(glob.glob(f"{corpus}/test-clean/**/*.flac",
                                                    recursive=True))[0], dtype="float32")[0])
    decoder = StreamingDecoder(model, 8, 2)
    hyp = stream_samples(decoder, wav)
    tokens, _, logits = decode_full(model, wav, 8, 2)
    # Frame by frame, streaming picks what the chunk-masked full pass picks, except where
    # that pass has a near-tie (chunked and whole-utterance float sums differ in the last
    # bits): a toy model has them, e.g. 1.4864 vs 1.4828 seen here.
    logits = logits.reshape(-1, logits.shape[-1])
    top2 = logits.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-2
    labels = torch.tensor(decoder.labels)
    assert len(labels) == len(logits) and clear.float().mean() > 0.9
    assert torch.equal(labels[clear], logits.argmax(-1)[clear])
    if clear.all():
        assert hyp.tokens == tokens
