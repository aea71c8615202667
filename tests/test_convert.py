"""quantize_ on real SpeechBrain models: counts, exclusions, training, checkpoints, errors."""
import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
from speechbrain.lobes.models.Xvector import Xvector
from speechbrain.nnet.RNN import LSTM
from speechbrain.utils.checkpoints import Checkpointer
from torch.nn.utils import parametrize

from denseshift_speech import DenseShiftConfig, quantize_
from denseshift_speech.core import quant
from denseshift_speech.core.diagnostics import CodeFlipTracker, code_histograms
from denseshift_speech.core.nn import codes_and_scale, iter_denseshift, latents


def conformer():
    torch.manual_seed(0)
    return TransformerASR(input_size=40, tgt_vocab=30, d_model=32, nhead=4, num_encoder_layers=2,
                          num_decoder_layers=1, d_ffn=64, encoder_module="conformer",
                          attention_type="RelPosMHAXL", normalize_before=True, causal=False)


def crdnn():
    torch.manual_seed(0)
    return CRDNN(input_shape=[None, None, 40], cnn_blocks=1, cnn_channels=(8,), rnn_layers=1,
                 rnn_neurons=16, rnn_class=LSTM, dnn_blocks=1, dnn_neurons=16)


def xvector():
    torch.manual_seed(0)
    return Xvector(in_channels=40, tdnn_channels=[16, 16, 16, 16, 32], lin_neurons=8)


def rnn_decoder():
    """The CRDNN's optional attention decoder: GRU cells, location-aware attention."""
    from denseshift_speech.integrations.speechbrain.models import AttentionalDecoder
    torch.manual_seed(0)
    return AttentionalDecoder(enc_dim=40, vocab_size=30, emb_size=8, hidden_size=16,
                              attn_dim=16, channels=4, kernel_size=5)


def run(model, arch, x):
    if arch == "rnn_decoder":
        tgt = torch.randint(0, 30, (x.shape[0], 4))
        return model(x, tgt, torch.ones(x.shape[0])).sum()
    if arch == "conformer":
        tgt = torch.randint(0, 30, (x.shape[0], 4))
        enc, dec = model(x, tgt, wav_len=torch.ones(x.shape[0]))
        return enc.sum() + dec.sum()
    return model(x).sum()


BUILDERS = {"conformer": conformer, "crdnn": crdnn, "xvector": xvector,
            "rnn_decoder": rnn_decoder}
EXCLUDE = {"conformer": ["custom_src_module*"], "crdnn": [], "xvector": [], "rnn_decoder": []}


@pytest.mark.parametrize("arch", ["conformer", "crdnn", "xvector", "rnn_decoder"])
def test_quantize_speechbrain_models(arch, tmp_path):
    model = BUILDERS[arch]()
    x = torch.randn(2, 50, 40)
    run(model, arch, x)  # SpeechBrain lazily builds some layers at first forward
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = quantize_(model, DenseShiftConfig(bits=3, exclude=EXCLUDE[arch]))
    kept = list(summary.kept)
    expected, names = independent_count_from(before, kept)
    assert summary.quantized_weights == expected, (summary.names(), names)
    assert len(summary.entries) == len(names)
    # what is kept stays full precision and untouched
    state = model.state_dict()
    for name in kept:
        assert torch.equal(state[name], before[name]), name
    # every quantized weight is alpha * (+-2^e), e in range
    for qual, module, pname in iter_denseshift(model):
        codes, alpha = codes_and_scale(module, pname)
        w = getattr(module, pname).detach()
        assert torch.equal(w, alpha.reshape(-1, *[1] * (w.dim() - 1)) * quant.decode(codes, 3))
    assert 0.3 < summary.quantized_fraction < 1
    # forward and backward, gradients reach the latents
    loss = run(model, arch, x)
    loss.backward()
    sign, thermo, alpha = latents(*next(iter_denseshift(model))[1:])
    assert sign.grad is not None and thermo.grad is not None and alpha.grad is not None
    # SpeechBrain Checkpointer round trip with strict loading
    ckpt = Checkpointer(tmp_path, recoverables={"model": model})
    ckpt.save_checkpoint()
    model.eval()
    with torch.no_grad():
        out = _outputs(model, arch, x)
    fresh = BUILDERS[arch]()
    run(fresh, arch, x)
    torch.manual_seed(123)  # different random latents: loading must overwrite them
    quantize_(fresh, DenseShiftConfig(bits=3, exclude=EXCLUDE[arch]))
    Checkpointer(tmp_path, recoverables={"model": fresh}).recover_if_possible()
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.eval()
    with torch.no_grad():
        for a, b in zip(out, _outputs(fresh, arch, x)):
            assert torch.equal(a, b)


def independent_count_from(state, kept):
    """Weights a user would call quantizable, read off the float state dict: matrices and
    kernels named weight / in_proj_weight / weight_ih_l* / weight_hh_l* (not embeddings,
    not norms), minus the names kept in full precision."""
    total, names = 0, []
    for key, value in state.items():
        last = key.split(".")[-1]
        if value.dim() >= 2 and (last in ("weight", "in_proj_weight") or last.startswith(("weight_ih", "weight_hh"))) \
                and "emb" not in key.lower() and "norm" not in key and key not in kept:
            total += value.numel()
            names.append(key)
    return total, names


def _outputs(model, arch, x):
    torch.manual_seed(0)  # Xvector's statistics pooling adds random noise, even in eval
    if arch == "rnn_decoder":
        return (model(x, torch.randint(0, 30, (x.shape[0], 4)), torch.ones(x.shape[0])),)
    if arch == "conformer":
        tgt = torch.randint(0, 30, (x.shape[0], 4))
        return model(x, tgt, wav_len=torch.ones(x.shape[0]))
    return (model(x),)


def test_conformer_attention_and_depthwise_conv_are_quantized():
    model = conformer()
    summary = quantize_(model, DenseShiftConfig(bits=3))
    names = summary.names()
    assert "encoder.layers.0.mha_layer.in_proj_weight" in names          # RelPosMHAXL
    assert "decoder.layers.0.self_attn.att.in_proj_weight" in names      # nn.MultiheadAttention
    assert "encoder.layers.0.convolution_module.conv.weight" in names    # depthwise Conv1d
    block = model.encoder.layers[0].mha_layer
    x = torch.randn(3, 32)
    # .in_proj_weight is the effective weight the forward uses
    w = block.in_proj_weight
    assert torch.equal(torch.nn.functional.linear(x, w), torch.nn.functional.linear(x, w.detach()))
    assert summary.kept["custom_src_module.layers.0.w.weight"] == "keep_last"
    # no front-end conv comes first in a bare TransformerASR: keep_first keeps nothing
    assert "keep_first" not in summary.kept.values()


def test_weight_attribute_is_what_forward_uses():
    layer = torch.nn.Conv1d(8, 8, 5, groups=8)
    quantize_(torch.nn.Sequential(torch.nn.Conv1d(4, 8, 1), layer, torch.nn.Conv1d(8, 2, 1)))
    x = torch.randn(2, 8, 20)
    assert torch.allclose(layer(x), torch.nn.functional.conv1d(x, layer.weight, layer.bias, groups=8))


def test_config_from_hyperpyyaml():
    hparams = load_hyperpyyaml("""
denseshift: !new:denseshift_speech.DenseShiftConfig
    bits: 2
    scale: tensor
    exclude: ["*ctc*"]
""")
    cfg = hparams["denseshift"]
    assert cfg.bits == 2 and cfg.scale == "tensor" and cfg.exclude == ["*ctc*"]
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    summary = quantize_(model, cfg)
    # keep_first keeps only a front-end conv; keep_last the final Linear
    assert summary.names() == ["0.weight", "1.weight"]
    assert codes_and_scale(model[1], "weight")[1].shape == (1,)


def _no_parametrizations(model):
    return not any(parametrize.is_parametrized(m) for m in model.modules())


@pytest.mark.parametrize("bits", [1, 9, 0])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits must be an integer in 2..8"):
        DenseShiftConfig(bits=bits)


def test_include_pattern_matching_nothing():
    model = crdnn()
    with pytest.raises(ValueError, match="include pattern 'encoder.nothing\\*' matches no"):
        quantize_(model, DenseShiftConfig(include=["DNN*", "encoder.nothing*"]))
    assert _no_parametrizations(model)


def test_non_float_weight():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4),
                                torch.nn.Linear(4, 4))
    model[2].weight = torch.nn.Parameter(torch.zeros(4, 4, dtype=torch.int32), requires_grad=False)
    with pytest.raises(TypeError, match="2.weight has dtype torch.int32"):
        quantize_(model)
    assert _no_parametrizations(model)


def test_quantizing_twice():
    model = xvector()
    quantize_(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="already DenseShift-quantized: quantize_ was called twice"):
        quantize_(model)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_failure_during_registration_rolls_back(monkeypatch):
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(5)])
    original = [m.weight for m in model]
    calls = {"n": 0}
    real = DenseShiftConfig.parametrization

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(self)

    monkeypatch.setattr(DenseShiftConfig, "parametrization", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        quantize_(model)
    assert _no_parametrizations(model)
    assert all(m.weight is w for m, w in zip(model, original))


def test_diagnostics_histogram_and_flip_rate():
    model = xvector()
    summary = quantize_(model, DenseShiftConfig(bits=3))
    hists = code_histograms(model)
    assert set(hists) == set(summary.names())
    for name, entry in zip(summary.names(), summary.entries):
        assert hists[name].sum() == entry.numel and len(hists[name]) == 8
    tracker = CodeFlipTracker(model)
    assert tracker.update()["total"] == 0.0
    sign = latents(*next(iter_denseshift(model))[1:])[0]
    with torch.no_grad():
        sign[0].neg_()
    rates = tracker.update()
    first = summary.names()[0]
    assert rates[first] == pytest.approx(sign[0].numel() / sign.numel(), rel=0.05)
    assert 0 < rates["total"] < rates[first]
