"""packed/xvector.py and denseshift::xvector: the packed keyword spotter's x-vector network
(SpeechBrain Xvector TDNN + Classifier) in one op call.

The model is kws_fp.yaml shrunk (random weights, random batch-norm statistics: nothing
here needs a trained spotter), quantized to DenseShift and packed by the recipe's
export_packed, so the dilated TDNN convs and the linears run packed and the first conv
and the last linear stay fp32 (keep_first / keep_last).  The fused network must give the
module-by-module packed output bit for bit on the int8 path."""
import contextlib
import json
import os

import pytest
import torch

from denseshift_speech import kernels
from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.packed import xvector as xv
from denseshift_speech.streaming import spotter as sp
from denseshift_speech.streaming.kws import SentenceNormalization, load_kws_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["yes", "no", "unknown", "silence"]

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not kernels.native_available(), reason="the native kernel is not built")]


def _export(folder, bits, keep_first=True):
    from denseshift_speech import DenseShiftConfig, quantize_
    hp, text = recipe.load_hparams(os.path.join(ROOT, "hparams", "kws_fp.yaml"), {
        "output_folder": str(folder), "tdnn_channels": [16, 16, 16, 24, 32], "lin_neurons": 16,
        "num_classes": len(CLASSES), "words": ["yes", "no"]})
    recipe.save_resolved_hparams(str(folder), text)
    mods = hp["modules"]
    g = torch.Generator().manual_seed(bits)
    with torch.no_grad():
        for m in mods["embedding_model"].modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.2)
                m.weight.copy_(torch.randn(m.num_features, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    hp["denseshift"] = DenseShiftConfig(bits=bits, init="from_float", keep_first=keep_first)
    summary = quantize_(recipe.module_container(mods), hp["denseshift"])
    return recipe.export_packed(hp, summary, "kws", metadata={"classes": json.dumps(CLASSES)})


@pytest.fixture(scope="module", params=[(3, True), (4, True), (3, False)],
                ids=["3bit", "4bit", "3bit-first-packed"])
def model_file(request, tmp_path_factory):
    bits, keep_first = request.param
    return _export(tmp_path_factory.mktemp(f"kws{bits}" + ("" if keep_first else "-first-packed")), bits, keep_first)


@pytest.fixture(scope="module")
def models(model_file):
    """(fused, module by module) of the same file."""
    from speechbrain.processing.features import InputNormalization
    fused, plain = load_kws_model(model_file), load_kws_model(model_file)
    assert xv.unfuse_xvector_(plain.embedding_model, plain.classifier)
    plain.normalize.__class__ = InputNormalization
    assert fused.unfused_reason() is None and plain.unfused_reason() is not None
    kinds = {type(p).__name__ for p in fused.packed_modules()}
    assert kinds == {"PackedConv1d", "PackedLinear"}
    first = fused.embedding_model.blocks[0].conv
    # keep_first: the first conv stays fp32 (the op's float conv record); else it is packed
    assert (type(first) is torch.nn.Conv1d) == ("-first-packed" not in os.fspath(model_file))
    return fused, plain


def _net(m, x):
    with torch.no_grad(), sp.deterministic_pooling(m):
        emb = m.embedding_model(x)
        return emb, m.classifier(emb)


def _frames(b, t, seed=0):
    return torch.randn(b, t, 40, generator=torch.Generator().manual_seed(seed)) * 2


def _op_calls(monkeypatch):
    """Shapes of the network's runs of the op (or of its kept plan): XvectorSpec._call is
    the one place that runs either."""
    calls = []
    real = xv.XvectorSpec._call

    def counting(self, x, *args):
        calls.append(x.shape)
        return real(self, x, *args)
    monkeypatch.setattr(xv.XvectorSpec, "_call", counting)
    return calls


@pytest.mark.parametrize("b,t", [(1, 101), (3, 101), (2, 7), (1, 4), (4, 55), (2, 33)])
def test_fused_equals_the_module_path_bit_for_bit(models, b, t, monkeypatch):
    fused, plain = models
    x = _frames(b, t, seed=b * 1000 + t)
    calls = _op_calls(monkeypatch)
    emb, out = _net(fused, x)
    assert calls == [x.shape]  # one op call for embedding and classifier
    emb_ref, out_ref = _net(plain, x)
    assert out.shape == out_ref.shape == (b, 1, len(CLASSES))
    assert emb.shape == emb_ref.shape
    assert torch.equal(emb, emb_ref) and torch.equal(out, out_ref)
    # the spotter's window posteriors, through the normalization it uses
    ones = torch.ones(b)
    assert torch.equal(fused.normalize(x, ones), plain.normalize(x, ones))


@pytest.mark.parametrize("deterministic", [True, False])
def test_feature_posteriors_one_op_call_bit_for_bit(models, deterministic, monkeypatch):
    """KWSModel.feature_posteriors (the spotter's, the bench's and the recipe's call) runs
    a fused network in one op call without the module calls, with the numbers of the
    module path: the pooling's middle noise when deterministic, else its random draw."""
    fused, plain = models
    feats = _frames(3, 101, seed=5) + 4
    calls = _op_calls(monkeypatch)
    torch.manual_seed(11)
    got = fused.feature_posteriors(feats, deterministic=deterministic)
    assert calls == [feats.shape]
    torch.manual_seed(11)
    want = plain.feature_posteriors(feats, deterministic=deterministic)
    assert got.shape == (3, len(CLASSES)) and torch.equal(got, want)
    x = plain.normalize(feats, torch.ones(3))
    with torch.no_grad(), (sp.deterministic_pooling(plain) if deterministic else contextlib.nullcontext()):
        torch.manual_seed(11)
        by_hand = torch.softmax(plain.classifier(plain.embedding_model(x)).reshape(3, -1), -1)
    assert torch.equal(got, by_hand)


def test_short_windows_fail_as_speechbrain_reflect_padding_fails(models):
    """SpeechBrain's Conv1d pads 'same' in reflect mode: a window no longer than a
    conv's padding (T=1 here, T=3 for the dilation-3 conv) is refused by both paths."""
    fused, plain = models
    assert fused.embedding_model.blocks[0].padding_mode == "reflect"
    for t in (1, 3):
        for m in (fused, plain):
            with pytest.raises(RuntimeError, match="[Pp]adding"):
                _net(m, _frames(1, t))


@pytest.mark.parametrize("mode", ["constant", "replicate"])
def test_other_padding_modes_and_one_frame(models, mode):
    """Zero ('constant') and replicate padding; with them a single frame is a window (its
    std over time is NaN, as torch's): still the module path's bits, NaN included."""
    fused, plain = models
    for m in (fused, plain):
        for block in m.embedding_model.blocks:
            if hasattr(block, "padding_mode"):
                block.padding_mode = mode
    try:
        xv._refuse(fused.embedding_model, fused.classifier)  # the program reads the mode
        for b, t in ((1, 1), (2, 3), (1, 101)):
            x = _frames(b, t, seed=t)
            for a, r in zip(_net(fused, x), _net(plain, x)):
                torch.testing.assert_close(a, r, rtol=0, atol=0, equal_nan=True)
    finally:
        for m in (fused, plain):
            for block in m.embedding_model.blocks:
                if hasattr(block, "padding_mode"):
                    block.padding_mode = "reflect"
        xv._refuse(fused.embedding_model, fused.classifier)


def test_random_pooling_noise_is_speechbrains(models):
    """Outside deterministic_pooling the pooling draws SpeechBrain's random noise: the
    fused path calls the same function, so a seeded run gives the same bits."""
    fused, plain = models
    x = _frames(2, 101)
    outs = []
    for m in (fused, plain):
        torch.manual_seed(7)
        with torch.no_grad():
            outs.append(m.classifier(m.embedding_model(x)))
    assert torch.equal(*outs)


def test_thread_count_invariance(models):
    fused, plain = models
    xs = [_frames(3, 101, seed=5), _frames(1, 101, seed=6)]
    refs = [_net(plain, x)[1] for x in xs]
    before, min_ns = torch.get_num_threads(), kernels.parallel_min_ns(0)  # split everything
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            for x, ref in zip(xs, refs):
                assert torch.equal(_net(fused, x)[1], ref), f"{n} threads, batch {x.shape[0]}"
    finally:
        torch.set_num_threads(before)
        kernels.parallel_min_ns(min_ns)


def _op_args(m, b=2, t=9, path="int8"):
    spec = m.embedding_model._ds_fused
    slots, ints, params, floats, program = spec.args()
    noise = torch.full((b, spec.channels), 5e-5)
    return (_frames(b, t, seed=3), noise, slots, ints, params, floats, program, path, "auto")


@pytest.mark.parametrize("path", ["int8", "exact"])
def test_plan_runs_the_op_bit_for_bit(models, path):
    """The plan a fused spotter keeps (its op arguments checked and prepared once) gives the
    op's own outputs; a bad path is refused by name."""
    fused, _ = models
    for b, t in ((1, 101), (3, 17)):
        x, noise, *rest = _op_args(fused, b, t, path)
        plan = kernels._C.XvectorPlan(*rest)
        for got, want in zip(plan.run(x, noise), torch.ops.denseshift.xvector(x, noise, *rest)):
            assert torch.equal(got, want)
    with pytest.raises(RuntimeError, match="unknown path 'fast'"):
        kernels._C.XvectorPlan(*rest[:-2], "fast", "auto")


def test_opcheck(models):
    fused, _ = models
    torch.library.opcheck(torch.ops.denseshift.xvector.default, _op_args(fused))


def test_reference_equals_native(models):
    fused, _ = models
    for b, t in ((1, 101), (3, 17)):
        args = _op_args(fused, b, t)
        native = torch.ops.denseshift.xvector(*args)
        ref = kernels.reference.xvector(*args)
        for n, r in zip(native, ref):
            assert n.shape == r.shape and torch.equal(n, r)
        exact_args = _op_args(fused, b, t, "exact")
        for n, r in zip(torch.ops.denseshift.xvector(*exact_args), kernels.reference.xvector(*exact_args)):
            torch.testing.assert_close(n, r, rtol=1e-4, atol=1e-4)


def test_exact_path_agrees_within_float_tolerance(models):
    """On the exact path the packed convs' tap-major order changes the float summation
    order: the module path's output within float tolerance (not bits)."""
    from denseshift_speech.packed import set_path_
    fused, plain = models
    nets = [torch.nn.ModuleList([m.embedding_model, m.classifier]) for m in (fused, plain)]
    try:
        for n in nets:
            set_path_(n, "exact")
        x = _frames(2, 101)
        assert fused.unfused_reason(x) is None
        torch.testing.assert_close(_net(fused, x)[1], _net(plain, x)[1], rtol=1e-4, atol=1e-4)
        for n in nets:
            set_path_(n, "shift")  # the paper's shift path: module by module
        assert "shift" in fused.unfused_reason(x)
        assert torch.equal(_net(fused, x)[1], _net(plain, x)[1])
    finally:
        for n in nets:
            set_path_(n, "int8")


def test_module_path_whenever_the_op_does_not_apply(models, monkeypatch):
    fused, plain = models
    x = _frames(2, 50)
    calls = _op_calls(monkeypatch)
    lens = torch.ones(2)
    with torch.no_grad(), sp.deterministic_pooling(fused), sp.deterministic_pooling(plain):
        assert torch.equal(fused.embedding_model(x, lens), plain.embedding_model(x, lens))
        fused.embedding_model.train()  # (not run: batch norm would update its statistics)
        try:
            assert "training" in fused.unfused_reason(x)
        finally:
            fused.embedding_model.eval()
        with torch.enable_grad():  # gradients asked for: the stock code
            xg = x.clone().requires_grad_()
            assert fused.embedding_model(xg).requires_grad
        # an embedding changed in place is classified by the layers, not from the op
        emb = fused.embedding_model(x)
        emb.mul_(1.0)
        assert torch.equal(fused.classifier(emb), plain.classifier(plain.embedding_model(x)))
    assert calls == [x.shape]


def test_structures_that_do_not_match_fall_back(model_file):
    m = load_kws_model(model_file)
    keys = set(m.embedding_model.state_dict()) | set(m.classifier.state_dict())
    assert type(m.embedding_model) is xv.FusedXvector
    assert xv.unfuse_xvector_(m.embedding_model, m.classifier)
    assert keys == set(m.embedding_model.state_dict()) | set(m.classifier.state_dict())
    x = _frames(1, 40)
    ref = _net(m, x)[1]

    acts = [i for i, b in enumerate(m.embedding_model.blocks) if isinstance(b, torch.nn.LeakyReLU)]
    m.embedding_model.blocks[acts[1]] = torch.nn.ReLU()
    why = xv.fuse_xvector_(m.embedding_model, m.classifier)
    assert "ReLU" in why and type(m.embedding_model) is not xv.FusedXvector
    m.embedding_model.blocks[acts[1]] = torch.nn.LeakyReLU()

    m.classifier.softmax.act = torch.nn.functional.softmax
    assert "log-softmax" in xv.fuse_xvector_(m.embedding_model, m.classifier)
    m.classifier.softmax.act = torch.nn.functional.log_softmax

    assert xv.fuse_xvector_(m.embedding_model, m.classifier) is None
    assert torch.equal(_net(m, x)[1], ref)
    # a layer replaced after fusing: the program is rebuilt from the new layers
    m.embedding_model.blocks[acts[0]] = torch.nn.LeakyReLU(0.2)
    changed = _net(m, x)[1]
    assert xv.fused_reason(m.embedding_model) is None and not torch.equal(changed, ref)
    xv.unfuse_xvector_(m.embedding_model, m.classifier)
    assert torch.equal(_net(m, x)[1], changed)
    m.embedding_model.blocks[acts[0]] = torch.nn.LeakyReLU()
    xv.fuse_xvector_(m.embedding_model, m.classifier)
    # a module swapped after fusing (the float twin of export_onnx does it): the program
    # is rebuilt, here no longer fusable (nothing packed), and the stock code runs
    from denseshift_speech.packed.pack import decode_to_float_
    twin = __import__("copy").deepcopy(torch.nn.ModuleList([m.embedding_model, m.classifier]))
    decode_to_float_(twin)
    assert "no packed layer" in xv.fused_reason(twin[0])
    from speechbrain.nnet.pooling import StatisticsPooling
    for b in twin[0].modules():
        if isinstance(b, StatisticsPooling):
            b._get_gauss_noise = lambda shape, device="cpu": torch.full(shape, 5e-5, device=device)
    with torch.no_grad():
        torch.testing.assert_close(twin[1](twin[0](x)), ref, rtol=0, atol=0.05)


def test_not_fused_when_loaded_as_fp32_twin(model_file):
    twin = load_kws_model(model_file, fp32=True)
    assert type(twin.embedding_model) is not xv.FusedXvector
    assert type(twin.normalize) is not SentenceNormalization


def test_sentence_normalization_is_speechbrains(models):
    fused, plain = models
    assert type(fused.normalize) is SentenceNormalization
    x = _frames(3, 101, seed=9)
    x[1, 5, 3] = float("nan")
    for lengths in (torch.ones(3), None, torch.tensor([1.0, 0.5, 1.0])):
        torch.testing.assert_close(fused.normalize(x, lengths), plain.normalize(x, lengths),
                                   rtol=0, atol=0, equal_nan=True)


def test_spotter_detections_unchanged(models):
    """A stream through the spotter: every window's smoothed posteriors, fused or not."""
    fused, plain = models
    g = torch.Generator().manual_seed(3)
    audio = 0.05 * torch.randn(3 * 16000, generator=g)
    audio[16000:22000] += 0.3 * torch.sin(torch.arange(6000) * 0.25)
    traces = []
    for m in (fused, plain):
        spotter = sp.KeywordSpotter(m, sp.SpotSettings(threshold=0.3), record=True)
        found = sp.feed(spotter, audio)
        traces.append((torch.stack(spotter.trace.smoothed), [d.as_dict() for d in found]))
    assert torch.equal(traces[0][0], traces[1][0]) and traces[0][1] == traces[1][1]
    assert len(traces[0][0]) == 21


# --------------------------------------------------------- the post-ops, x86 and ARM --------

def _xvector_driver(tmp_path, cxx, *flags):
    import shutil
    import subprocess
    if shutil.which(cxx) is None:
        pytest.skip(f"{cxx} not found")
    csrc = os.path.join(ROOT, "denseshift_speech", "kernels", "csrc")
    arch = "arm/xvector_neon.cpp" if "aarch64" in cxx else "x86/xvector_avx2.cpp"
    exe = tmp_path / "xvector_driver"
    subprocess.run([cxx, *flags, "-std=c++17", "-O2", "-ffp-contract=off", "-fno-math-errno", "-w",
                    "-I", os.path.join(csrc, "core"), "-o", str(exe),
                    os.path.join(csrc, "tests", "xvector_driver.cpp"),
                    os.path.join(csrc, "core", "xvector_scalar.cpp"), os.path.join(csrc, "arch", arch)],
                   check=True, timeout=300)
    return str(exe)


def _driver_ok(out):
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith(" 0 mismatches") and " 0 checks" not in out.stdout


@pytest.mark.skipif(__import__("platform").machine().lower() not in ("x86_64", "amd64"),
                    reason="the x86 build of the post-ops")
def test_post_ops_simd_build_equals_scalar_build(tmp_path):
    """leaky relu, the batch-norm affine (fma or not), the torch-order mean and the Welford
    std: the AVX2 + FMA build bit for bit equal to the portable one (no torch)."""
    import subprocess
    exe = _xvector_driver(tmp_path, "g++", "-fopenmp")
    _driver_ok(subprocess.run([exe], capture_output=True, text=True, timeout=300))


@pytest.mark.skipif(__import__("platform").machine().lower() not in ("x86_64", "amd64"),
                    reason="cross-build + QEMU run on x86 hosts")
def test_post_ops_arm_build_equals_scalar_build_under_qemu(tmp_path):
    import shutil
    import subprocess
    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-aarch64 not found")
    exe = _xvector_driver(tmp_path, "aarch64-linux-gnu-g++", "-static", "-march=armv8-a", "-fopenmp-simd")
    out = subprocess.run(["qemu-aarch64", "-cpu", "cortex-a57", exe], capture_output=True, text=True,
                         timeout=300)
    _driver_ok(out)
    assert out.stdout.startswith("neon:")
