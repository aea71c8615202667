"""`denseshift-speech spot` and streaming.spotter: the sliding-window keyword spotter.

The model is a tiny x-vector keyword spotter (kws_fp.yaml shrunk) trained here in a few
seconds to tell tones apart -- "yes" a 600 Hz tone, "no" 2400 Hz, "unknown" 1200 Hz,
"silence" faint noise -- then quantized to 4-bit DenseShift (from its float weights) and
packed by the recipe's export_packed, so its TDNN convs (dilated) and linears run on the
packed kernels.  Streams with tones at known times then have known detections.  Nothing
here reads ../shared/real."""
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from denseshift_speech.cli import main as cli_main
from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.streaming import spotter as sp
from denseshift_speech.streaming.kws import load_kws_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000
CLASSES = ["yes", "no", "unknown", "silence"]
TONES = {"yes": 600.0, "no": 2400.0, "unknown": 1200.0}
TONE_SECONDS = 0.4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _noise(seconds, rng, level=0.01):
    return (level * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def _add_tone(x, at, label, rng, amplitude=0.3):
    n = int(TONE_SECONDS * SR)
    a = int(at * SR)
    t = np.arange(n) / SR
    x[a:a + n] += amplitude * np.hanning(n) * np.sin(2 * np.pi * TONES[label] * t)
    return x


def _clip(label, rng):
    """One training / test second: faint noise whose level ramps between two of -70 to
    -30 dBFS (so that level changes alone are no keyword), a tone of the class at a
    random place."""
    x = _noise(1.0, rng, 1.0) * np.linspace(*(10 ** rng.uniform(-3.5, -1.5, 2)), SR)
    x = x.astype(np.float32)
    if label != "silence":
        _add_tone(x, rng.uniform(0.0, 1.0 - TONE_SECONDS), label, rng, rng.uniform(0.1, 0.5))
    return x


def _write(path, data, sr=SR):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, data, sr, subtype="PCM_16")
    return str(path)


@pytest.fixture(scope="module")
def tone_spotter(tmp_path_factory):
    """The tone keyword spotter, trained, 4-bit DenseShift, packed (module docstring)."""
    from denseshift_speech import DenseShiftConfig, quantize_
    folder = str(tmp_path_factory.mktemp("tone_kws"))
    hp, text = recipe.load_hparams(os.path.join(ROOT, "hparams", "kws_fp.yaml"), {
        "output_folder": folder, "tdnn_channels": [16, 16, 16, 16, 32], "lin_neurons": 16,
        "num_classes": len(CLASSES), "words": ["yes", "no"]})
    recipe.save_resolved_hparams(folder, text)
    mods = hp["modules"]
    net = torch.nn.ModuleList([mods["embedding_model"], mods["classifier"]])
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    for _ in range(80):
        labels = rng.integers(0, len(CLASSES), 16)
        wavs = torch.from_numpy(np.stack([_clip(CLASSES[i], rng) for i in labels]))
        feats = mods["mean_var_norm"](hp["compute_features"](wavs), torch.ones(16))
        out = mods["classifier"](mods["embedding_model"](feats)).squeeze(1)
        loss = torch.nn.functional.nll_loss(out, torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    hp["denseshift"] = DenseShiftConfig(bits=4, init="from_float")
    summary = quantize_(recipe.module_container(mods), hp["denseshift"])
    return recipe.export_packed(hp, summary, "kws", metadata={"classes": json.dumps(CLASSES)})


@pytest.fixture(scope="module")
def model(tone_spotter):
    m = load_kws_model(tone_spotter)
    assert m.packed and m.uses_native_kernel() == __import__(
        "denseshift_speech").kernels.native_available()
    # the dilated TDNN convs and the linears run packed (keep_first / keep_last stay fp32)
    kinds = {type(p).__name__ for p in m.packed_modules()}
    assert kinds == {"PackedConv1d", "PackedLinear"}
    assert any(p.dilation > 1 for p in m.packed_modules() if hasattr(p, "dilation"))
    return m


KEYWORDS_AT = [(2.0, "yes"), (5.0, "no"), (8.0, "yes"), (11.0, "unknown")]


@pytest.fixture(scope="module")
def stream_wav(tmp_path_factory):
    """14 s of faint noise with tones at KEYWORDS_AT."""
    rng = np.random.default_rng(5)
    x = _noise(14.0, rng)
    for at, label in KEYWORDS_AT:
        _add_tone(x, at, label, rng)
    return _write(tmp_path_factory.mktemp("stream") / "stream.wav", x)


def _run_cli(*args):
    return cli_main(["spot", *map(str, args)])


# --------------------------------------------------------------- feature buffer --------

def test_windows_equal_the_one_second_clip_computation(model):
    """Each window's features (the buffer's frames + recomputed edges + the window's dB
    floor) are the clip's Fbank, and its posteriors the clip's, whatever piece sizes
    the audio comes in."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(_noise(3.4, rng, 0.2))
    x[int(0.5 * SR):int(0.9 * SR)] *= 8.0            # a loud part moves the dB floor
    feats = sp.WindowFeatures(model, 1600)
    windows = feats.push(x)
    assert [end for end, _ in windows] == list(range(SR, x.numel() + 1, 1600))
    for end, f in windows:
        clip = model.compute_features(x[end - SR:end].unsqueeze(0))[0]
        torch.testing.assert_close(f, clip, rtol=0, atol=1e-4)

    traces = []
    for pieces in ([x.numel()], [1, 799, 1600, 3201, 17], [160] * 400):
        spotter = sp.KeywordSpotter(model, sp.SpotSettings(smooth_seconds=0), record=True)
        bounds = np.cumsum([0] + pieces)
        for a, b in zip(bounds, bounds[1:]):
            spotter.accept(x[a:b])
        spotter.accept(x[bounds[-1]:])
        traces.append(torch.stack(spotter.trace.smoothed))
    clips = torch.stack([x[end - SR:end] for end, _ in windows])
    with sp.deterministic_pooling(model):
        torch.testing.assert_close(traces[0], model.posteriors(clips), rtol=0, atol=1e-5)
    for other in traces[1:]:   # other batch sizes: fp32 sums in another order
        torch.testing.assert_close(other, traces[0], rtol=0, atol=1e-4)


def test_each_frame_is_computed_once_not_the_whole_second_per_hop(model):
    """Per 100 ms hop: one Fbank call over the new audio and the window's two edges (the
    frames they need), far less than the whole second."""
    feats = sp.WindowFeatures(model, 1600)
    assert feats.incremental
    calls = []
    fbank = feats.fbank

    def counting(wav):
        calls.append(wav.numel())
        return fbank(wav)

    feats.fbank = counting
    windows = []
    x = torch.from_numpy(_noise(10.0, np.random.default_rng(2)))
    for a in range(0, x.numel(), 1600):
        windows += feats.push(x[a:a + 1600])
    assert len(windows) == len(calls) == 91
    assert max(calls[1:]) < 0.5 * SR                 # samples through the Fbank per hop
    # the buffers stay bounded: about one window of frames and samples
    assert feats.frames.shape[0] <= feats.frames_per_window
    assert feats.samples.numel() <= SR + 1600


# ------------------------------------------------------------------ detection ---------

def test_detections_land_at_the_keyword_times(model, stream_wav):
    audio, _ = sf.read(stream_wav, dtype="float32")
    spotter = sp.KeywordSpotter(model, sp.SpotSettings())
    found = sp.feed(spotter, torch.from_numpy(audio)) + spotter.finish()
    keywords = [(at, label) for at, label in KEYWORDS_AT if label != "unknown"]
    assert [d.label for d in found] == [label for _, label in keywords]
    for d, (at, _) in zip(found, keywords):
        # fired once the tone was (mostly) in the window, well before it left it
        assert at < d.time <= at + TONE_SECONDS + 0.5
        assert d.window_start == pytest.approx(d.time - 1.0)
        assert d.score >= 0.7


def test_cli_streams_a_long_file_and_classifies_a_clip(model, stream_wav, tmp_path, capsys):
    audio, _ = sf.read(stream_wav, dtype="float32")
    clip = _write(tmp_path / "clip.wav", audio[int(7.7 * SR):int(8.7 * SR)])   # "yes" inside
    assert _run_cli(model.path, "--wav", clip, "--wav", stream_wav, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    first, second = out["results"]
    assert first["mode"] == "clip" and first["class"] == "yes" and first["posterior"] > 0.7
    assert sum(first["posteriors"].values()) == pytest.approx(1.0, abs=1e-3)
    assert second["mode"] == "stream"
    assert [d["label"] for d in second["detections"]] == ["yes", "no", "yes"]
    assert out["windows"] == second["windows"] == 131
    assert out["rtf"] > 0 and out["native_kernel"] == out["native_kernel_available"]
    # the plain output: one line per detection with its time
    assert _run_cli(model.path, "--wav", stream_wav, "--kernel-path", "exact") == 0
    text = capsys.readouterr().out
    assert text.count("] yes (") == 2 and text.count("] no (") == 1
    assert "real-time factor" in text and "4-bit" in text


def test_live_view_on_a_terminal_redraws_one_line_and_prints_detections(model, stream_wav):
    import io

    from denseshift_speech.cli.spot import LiveSpotView
    audio, _ = sf.read(stream_wav, dtype="float32")
    out = io.StringIO()
    view = LiveSpotView(out, model.labels, tty=True)
    spotter = sp.KeywordSpotter(model, sp.SpotSettings(), on_window=view.window)
    sp.feed(spotter, torch.from_numpy(audio), on_detection=view.detection)
    view.close()
    text = out.getvalue()
    assert text.count("\r\033[K") > 131             # one redraw per window, and the lines
    lines = [line.split("\r\033[K")[-1] for line in text.split("\n") if "] " in line]
    assert [line.split()[-2] for line in lines] == ["yes", "no", "yes"]


def test_smoothing_threshold_and_refractory_on_scripted_posteriors():
    labels = ["yes", "no", "unknown", "silence"]

    def probs(yes=0.0, no=0.0, unknown=0.0):
        return torch.tensor([yes, no, unknown, 1.0 - yes - no - unknown])

    def run(seq, hops, threshold=0.55, refractory=1.5):
        smoother, gate = sp.PosteriorSmoother(hops), sp.DetectionGate(labels, threshold, refractory)
        out = []
        for k, p in enumerate(seq):
            d = gate.step(1.0 + 0.1 * k, smoother.update(p), 1.0)
            if d is not None:
                out.append((round(d.time, 2), d.label, round(d.score, 3)))
        return out

    spike = [probs()] * 3 + [probs(yes=0.9)] + [probs()] * 3
    assert run(spike, hops=1) == [(1.3, "yes", 0.9)]
    assert run(spike, hops=3) == []                       # one odd window is smoothed away
    held = [probs()] * 2 + [probs(no=0.9)] * 25
    # the 3-hop average passes 0.55 on the 2nd "no" window; fires again only after 1.5 s
    assert run(held, hops=3) == [(1.3, "no", 0.6), (2.8, "no", 0.9)]
    assert run(held, hops=3, refractory=5.0) == [(1.3, "no", 0.6)]
    assert run(held, hops=3, threshold=0.95) == []
    # the refractory time is per keyword: "yes" right after "no" fires, "no" again not
    switch = [probs(no=0.9)] * 3 + [probs(yes=0.9)] * 3 + [probs(no=0.9)] * 3
    assert run(switch, hops=1) == [(1.0, "no", 0.9), (1.3, "yes", 0.9)]
    # the non-keyword classes never fire, however sure
    assert run([probs(unknown=1.0)] * 10 + [probs()] * 10, hops=1, threshold=0.1) == []
    # the best keyword fires (argmax over keywords only)
    assert run([probs(yes=0.3, no=0.5, unknown=0.2)], hops=1, threshold=0.4) == [(1.0, "no", 0.5)]
    # replaying a recorded trace at another threshold is the live gate at that threshold
    trace = sp.Trace([1.0 + 0.1 * k for k in range(len(held))], [p for p in held])
    assert [(round(d.time, 2), d.label) for d in sp.replay(trace, labels, 0.6, 1.5)] == \
        [(1.0 + 0.1 * k, "no") for k in (2, 17)]


def test_settings_are_checked():
    for bad, word in [(dict(hop_seconds=0), "hop"), (dict(hop_seconds=1.5), "hop"),
                      (dict(threshold=0), "threshold"), (dict(threshold=1.2), "threshold"),
                      (dict(smooth_seconds=-1), "smoothing"),
                      (dict(refractory_seconds=-0.1), "refractory")]:
        with pytest.raises(ValueError, match=word):
            sp.SpotSettings(**bad).check()


def test_scoring_hits_repeats_and_false_detections():
    occ = [sp.Occurrence("yes", 1.0, 2.0, "a"), sp.Occurrence(None, 3.0, 4.0, "b"),
           sp.Occurrence("no", 5.0, 6.0, "c"), sp.Occurrence("yes", 9.0, 10.0, "d")]

    def det(label, t):
        return sp.Detection(label, 0, t, 0.9, t - 1)

    r = sp.score_detections([det("yes", 1.8), det("yes", 2.9), det("no", 3.5),
                             det("yes", 5.5), det("no", 7.2)], occ, reach_seconds=1.3)
    # yes@1.8 hits, yes@2.9 repeats it, no@3.5 is before the "no" clip, yes@5.5 is the
    # wrong keyword, no@7.2 hits (within the reach after the clip's end)
    assert (r["hits"], r["misses"], r["repeats"], r["false_detections"]) == (2, 1, 1, 2)
    assert r["hit_rate"] == pytest.approx(66.67)
    assert r["per_keyword"] == {"no": {"keywords": 1, "hits": 1, "hit_rate": 100.0},
                                "yes": {"keywords": 2, "hits": 1, "hit_rate": 50.0}}
    assert sp.false_alarms_per_hour([det("yes", 1)] * 3, 1800.0) == 6.0


def test_a_stream_shorter_than_a_window_is_one_clip(model):
    rng = np.random.default_rng(8)
    x = torch.from_numpy(_add_tone(_noise(0.6, rng), 0.1, "no", rng))
    spotter = sp.KeywordSpotter(model, sp.SpotSettings(smooth_seconds=0), record=True)
    assert sp.feed(spotter, x) == [] and spotter.stats.windows == 0
    spotter.finish()
    assert spotter.stats.windows == 1 and spotter.trace.times == [pytest.approx(0.6)]
    torch.testing.assert_close(spotter.trace.smoothed[0], sp.classify_clip(model, x),
                               rtol=0, atol=1e-6)


# ----------------------------------------------------------------- evaluation ---------

@pytest.fixture(scope="module")
def tone_folder(tmp_path_factory):
    """A Speech Commands-layout folder of tone clips, with _unknown_, _silence_ and a
    _background_noise_ recording; and a second folder of another "word" (unknown)."""
    root = tmp_path_factory.mktemp("tone_sc") / "test"
    rng = np.random.default_rng(11)
    for word, folder, n in [("yes", "yes", 4), ("no", "no", 4), ("unknown", "_unknown_", 3),
                            ("silence", "_silence_", 2)]:
        for k in range(n):
            _write(root / folder / f"spk{k}_nohash_0.wav", _clip(word, rng))
    _write(root / "_background_noise_" / "hum.wav", _noise(5.0, rng))
    other = tmp_path_factory.mktemp("tone_other") / "corpus"
    for k in range(2):
        _write(other / "bed" / f"spk{k}_nohash_0.wav", _clip("unknown", rng))
    return str(root), str(other)


def test_evaluate_hit_rate_false_alarms_sweep_and_plot(model, tone_folder, tmp_path, capsys):
    data, other = tone_folder
    png, run = tmp_path / "sweep.png", tmp_path / "run"
    saved = run / "spotting.json"
    assert _run_cli(model.path, "--evaluate", data, "--negatives", other, "--plot", png,
                    "--save", saved, "--json") == 0
    r = json.loads(capsys.readouterr().out)
    assert json.loads(saved.read_text()) == r
    kw, free = r["keyword_stream"], r["keyword_free_stream"]
    assert kw["clips"] == 13 and kw["keywords"] == 8
    assert kw["hit_rate"] == 100.0 and kw["false_detections"] == 0
    assert kw["clip_accuracy"] == 100.0  # the same keyword clips, one by one
    # the report shows the saved result in the run's row
    from denseshift_speech.integrations.speechbrain.report import build_report, markdown
    (run / "results.json").write_text(json.dumps({"task": "kws", "arch": "xvector", "bits": 4,
                                                  "accuracy": 100.0}))
    rows = build_report([run], tmp_path / "report")
    assert rows[0]["spotting"]["hit_rate"] == 100.0
    assert "## Keyword spotting on a stream" in markdown(rows)
    # keyword-free: 3 _unknown_ + 2 _silence_ + 2 "bed" clips + 1 background noise file
    assert free["items"] == 8 and free["false_alarms"] == 0
    assert free["false_alarms_per_hour"] == 0.0 and free["seconds"] > 8.0
    rows = r["sweep"]
    assert [row["threshold"] for row in rows] == sorted(sp.DEFAULT_THRESHOLDS)
    at = next(row for row in rows if row["threshold"] == 0.7)
    assert at["hit_rate"] == kw["hit_rate"] and at["false_alarms_per_hour"] == 0.0
    # (neither column need be monotone: a wrong keyword fired early at a low threshold
    # silences the right one for the refractory time)
    assert rows[0]["false_detections_keyword_stream"] > 0
    assert r["cost"]["rtf"] > 0 and r["model_file_bytes"] == os.path.getsize(model.path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the sweep replays what a live run at that threshold detects
    assert _run_cli(model.path, "--evaluate", data, "--negatives", other, "--threshold", 0.3,
                    "--thresholds", "0.3,0.9", "--json") == 0
    live = json.loads(capsys.readouterr().out)
    replayed = live["sweep"][0]
    assert replayed["hit_rate"] == live["keyword_stream"]["hit_rate"]
    assert replayed["false_detections_keyword_stream"] == live["keyword_stream"]["false_detections"]
    assert replayed["false_alarms"] == live["keyword_free_stream"]["false_alarms"]
    # the table
    assert _run_cli(model.path, "--evaluate", data, "--thresholds", "0.5,0.9", "--limit", 6) == 0
    text = capsys.readouterr().out
    assert "hit rate" in text and "per hour" in text
    assert len(text.split("threshold sweep:")[1].strip().splitlines()) == 1 + 2


def test_folder_and_manifest_modes_classify_each_clip(model, tone_folder, tmp_path, capsys):
    data, _ = tone_folder
    assert _run_cli(model.path, "--folder", data, "--limit", 0, "--json") == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["results"]) == 13 and r["clip_accuracy"] == 100.0
    assert {x["reference"] for x in r["results"]} == set(CLASSES)
    rows = ["ID,duration,wav,start,stop,command,spk_id"]
    rows.append(f"a,1.0,{data}/yes/spk0_nohash_0.wav,0,16000,yes,spk0")
    rows.append(f"b,1.0,{data}/_background_noise_/hum.wav,16000,32000,silence,silence")
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n")
    assert _run_cli(model.path, "--manifest", tmp_path / "test.csv") == 0
    text = capsys.readouterr().out
    assert "(1.00 s): yes" in text and "(1.00 s): silence" in text and "2/2 right" in text


# ----------------------------------------------------------------------- ONNX ---------

def test_export_onnx_runs_in_stock_onnxruntime_with_the_packed_predictions(
        model, tone_folder, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from denseshift_speech.onnx_runtime import ort_session
    data, _ = tone_folder
    out = tmp_path / "kws.onnx"
    assert cli_main(["export", model.path, "--onnx", "--out", str(out), "--compare", data]) == 0
    text = capsys.readouterr().out
    assert "MatMuls as int8" in text and "same prediction 13/13" in text
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == CLASSES and meta["task"] == "kws"
    assert {"MatMulInteger", "Conv"} <= {n.op_type for n in proto.graph.node}
    # a stream window's features in, the spotter's posteriors out (batch of 3, 1 s each)
    rng = np.random.default_rng(4)
    clips = torch.from_numpy(np.stack([_clip(label, rng) for label in ("yes", "no", "silence")]))
    feats = model.compute_features(clips)
    probs = ort_session(out).run(["probs"], {"feats": feats.numpy()})[0]
    with sp.deterministic_pooling(model):
        ref = model.posteriors(clips).numpy()
    assert probs.shape == (3, 4) and (probs.argmax(1) == ref.argmax(1)).all()
    assert np.abs(probs - ref).max() < 0.05
    # the ASR option on a keyword spotter: one line
    assert cli_main(["export", model.path, "--onnx", "--out", str(out), "--wer", "m.csv"]) == 2
    assert "--compare" in capsys.readouterr().err


# ------------------------------------------------------------------- errors -----------

def test_the_wrong_model_kind_gets_one_clear_error(model, tmp_path, capsys, stream_wav):
    # a conformer CTC model (conformer_fp.yaml, shrunk, random weights) given to spot
    hp, text = recipe.load_hparams(os.path.join(ROOT, "hparams", "conformer_fp.yaml"), {
        "d_model": 32, "nhead": 2, "num_encoder_layers": 1, "d_ffn": 64, "vocab_size": 30,
        "output_folder": str(tmp_path / "asr")})
    recipe.save_resolved_hparams(str(tmp_path / "asr"), text)
    asr = recipe.export_packed(hp, None, "asr")
    assert _run_cli(asr, "--wav", stream_wav) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an ASR model" in err and "not a keyword spotter" in err
    assert "denseshift-speech stream" in err
    # and the keyword spotter given to stream
    assert cli_main(["stream", model.path, "--wav", stream_wav]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an ASR model" in err


@pytest.mark.parametrize("args, message", [
    ((), "exactly one input"),
    (("--wav", "x.wav", "--mic"), "exactly one input"),
    (("--wav", "x.wav", "--threshold", "0"), "threshold"),
    (("--wav", "x.wav", "--hop", "2"), "hop"),
    (("--wav", "x.wav", "--plot", "a.png"), "need --evaluate"),
    (("--evaluate", "x", "--thresholds", "0.5,high"), "--thresholds"),
])
def test_bad_options_get_one_line(model, args, message, tmp_path, capsys):
    args = [a.replace("x.wav", str(tmp_path / "x.wav")) for a in args]
    _write(tmp_path / "x.wav", _noise(1.5, np.random.default_rng(0)))
    assert _run_cli(model.path, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_mic_without_a_microphone_gets_one_line(model, capsys):
    try:
        import sounddevice
        sounddevice.query_devices(kind="input")
        pytest.skip("this machine has a microphone")
    except Exception:  # no package, no PortAudio, no input device: the case under test
        pass
    assert _run_cli(model.path, "--mic", "--seconds", 0.1) == 2
    err = capsys.readouterr().err
    assert "--mic" in err and err.count("\n") == 1


def test_bad_audio_follows_the_stream_input_policy(model, tmp_path, capsys):
    rng = np.random.default_rng(3)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    assert _run_cli(model.path, "--wav", empty) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "empty" in err and err.count("\n") == 1
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not audio")
    assert _run_cli(model.path, "--wav", junk) == 2
    assert "cannot read audio" in capsys.readouterr().err
    # (a model file that is not one: one line too)
    assert _run_cli(junk, "--wav", empty) == 2
    err = capsys.readouterr().err
    assert str(junk) in err and err.count("\n") == 1
    # 8 kHz stereo: resampled and downmixed, noted; NaN samples zeroed and reported
    stereo = np.stack([_noise(2.0, rng, 0.1)[::2]] * 2, axis=1)
    _write(tmp_path / "stereo.wav", stereo, sr=8000)
    x = _noise(2.0, rng)
    x[SR:SR + 40] = np.nan
    nan_path = tmp_path / "nan.wav"
    sf.write(nan_path, x, SR, subtype="FLOAT")
    assert _run_cli(model.path, "--wav", tmp_path / "stereo.wav", "--wav", nan_path, "--json") == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    notes = out["results"][0]["input_notes"]
    assert any("resampled from 8000" in n for n in notes) and any("downmixed" in n for n in notes)
    assert out["results"][1]["nonfinite_samples_zeroed"] == 40
    assert "40 non-finite samples (NaN/inf) at 1.00 s replaced by zeros" in captured.err
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR // 2, np.float32), SR)
    assert _run_cli(model.path, "--wav", silent) == 0
    assert "silent" in capsys.readouterr().err


def test_bench_kws_times_the_packed_spotter_beside_its_twins(tone_spotter, tmp_path, capsys):
    """`bench --kws MODEL`: every line side by side, the JSON, one error for a bad file."""
    out = tmp_path / "kws.json"
    assert cli_main(["bench", "--kws", tone_spotter, "--min-time", "0.02",
                     "--json", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {"ds-int8", "ds-exact", "torch-fp32", "torch-int8"} <= set(rows)
    for name, row in rows.items():
        assert row["us"] > 0 and name in text
    assert rows["ds-exact"]["same_class_as_fp32"] and 0 < data["spotter_rtf"] < 1
    assert data["sizes"] and "real-time factor" in text
    bad = tmp_path / "bad.dsp"
    bad.write_bytes(b"not a model")
    assert cli_main(["bench", "--kws", str(bad), "--json", ""]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert cli_main(["bench", "--kws", tone_spotter, "--threads", "1,2"]) == 2
    assert "one thread count" in capsys.readouterr().err
