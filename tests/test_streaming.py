"""Streaming decoder and the `stream` verb, on a tiny conformer built here (no results/).

The model is the recipe's conformer (hparams/conformer_ds.yaml) shrunk by overrides,
quantized with apply_denseshift, exported with the recipe's export_packed (packed file)
and as its fp32 file (denseshift: null), with a SentencePiece tokenizer trained here.
"""
import copy
import json
import os
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from denseshift_speech import kernels
from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.cli import main as cli_main
from denseshift_speech.streaming import (StreamingDecoder, StreamingFrontEnd, StreamingModel,
                                         decode_full, frontend_full, load_model, stream_manifest)
from denseshift_speech.streaming.run import count_packed_calls, stream_samples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000
WORDS = ("yes no up down left right on off stop go zero one two three four five six seven "
         "eight nine red green blue black white cat dog bird fish tree house car").split()


def _signal(seconds, seed, lead_silence=0.3):
    """Speech-like test signal: leading digital silence, then modulated chirps + noise."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SR)
    t = torch.arange(n) / SR
    f = 150 + 900 * (0.5 + 0.5 * torch.sin(2 * np.pi * 0.7 * t + seed))
    x = 0.3 * torch.sin(2 * np.pi * torch.cumsum(f, 0) / SR) * (0.6 + 0.4 * torch.sin(2 * np.pi * 3 * t))
    x = x + 0.02 * torch.randn(n, generator=g)
    x[: int(lead_silence * SR)] = 0.0
    return x.float()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Streaming is a one-core workload (the CLI's default); more threads on a shared
    2-core machine only add OpenMP contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    import sentencepiece as spm
    out = tmp_path_factory.mktemp("stream_model")
    rng = np.random.default_rng(0)
    text = out / "text.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS, 6)).upper() for _ in range(200)))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(out / "tok"), vocab_size=40,
                                   model_type="unigram", character_coverage=1.0,
                                   bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2)
    tokenizer = types.SimpleNamespace(prefix_model_file=str(out / "tok"))
    overrides = {"d_model": 32, "nhead": 2, "num_encoder_layers": 2, "d_ffn": 64, "kernel_size": 7,
                 "n_mels": 40, "vocab_size": 40, "dropout": 0.0}
    files = {}

    def build(hp_file, folder):
        hparams, text_yaml = recipe.load_hparams(os.path.join(ROOT, "hparams", hp_file),
                                                 {**overrides, "output_folder": str(folder)})
        recipe.save_resolved_hparams(str(folder), text_yaml)
        norm = hparams["normalize"]
        feats = hparams["compute_features"](_signal(2.0, 99).unsqueeze(0))
        norm.glob_mean, norm.glob_std = feats[0].mean(0), feats[0].std(0) + 1.0
        summary = recipe.apply_denseshift(hparams["modules"], hparams)
        return hparams, summary

    files["fp32"] = recipe.export_packed(*build("conformer_fp.yaml", out / "fp32"), "asr", tokenizer)
    # The quantized (parametrized, not packed) model is the reference.  pack_ edits the
    # parametrized classes it packs, so the reference is an identical second build (same
    # seed), not a deepcopy.
    ref_hp, _ = build("conformer_ds.yaml", out / "ref")
    ref = recipe.module_container(ref_hp["modules"]).eval()
    hparams, summary = build("conformer_ds.yaml", out / "packed")
    container = recipe.module_container(hparams["modules"]).eval()
    for (ka, a), (kb, b) in zip(ref.state_dict().items(), container.state_dict().items()):
        assert ka == kb and torch.equal(a, b), ka
    files["unpacked_modules"] = (ref_hp["compute_features"], ref)
    files["packed"] = recipe.export_packed(hparams, summary, "asr", tokenizer)
    return files


@pytest.fixture(scope="module")
def packed(tiny):
    return load_model(tiny["packed"])


@pytest.fixture(scope="module")
def wav():
    return _signal(2.37, 1)       # 2.37 s: not a multiple of any chunk tried below


def _unpacked_model(tiny, like: StreamingModel) -> StreamingModel:
    fbank, mods = tiny["unpacked_modules"]
    norm = copy.deepcopy(like.normalize)
    return StreamingModel(path="<unpacked>", compute_features=fbank, normalize=norm,
                          CNN=mods["CNN"], Transformer=mods["Transformer"], ctc_lin=mods["ctc_lin"],
                          tokenizer=like.tokenizer, sample_rate=like.sample_rate,
                          blank_index=like.blank_index, hparams=like.hparams, sizes={},
                          packed=False, fp32=False, bits=[])


# --------------------------------------------------------------------------- decoding ---

@pytest.mark.parametrize("piece", [333, 4000, 10240])
def test_streaming_frontend_equals_full_frontend(packed, wav, piece):
    fe = StreamingFrontEnd(packed)
    outs = [fe.push(wav[i:i + piece]) for i in range(0, wav.numel(), piece)]
    outs.append(fe.push(torch.zeros(0), final=True))
    got = torch.cat([o for o in outs if o.numel()], 1)
    full = frontend_full(packed, wav)
    assert got.shape == full.shape
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)


NEAR_TIE = 0.01  # logit margin below which int8 quantization noise may flip a label


@pytest.mark.parametrize("chunk,left", [(7, 2), (9, 1), (16, 4), (26, 3)])
def test_streaming_tokens_equal_masked_full_utterance(packed, wav, chunk, left):
    dec = StreamingDecoder(packed, chunk, left)
    frames = frontend_full(packed, wav).shape[1]
    assert frames % chunk != 0                          # the last chunk is a partial one
    hyp = stream_samples(dec, wav, piece_samples=3001)  # pieces unaligned with chunks
    tokens, labels, logits = decode_full(packed, wav, chunk, left)
    assert len(tokens) > 3
    # The int8 path quantizes each chunk's activations on their own, so a frame's logits
    # may differ by quantization noise (a few 1e-3 here): the untrained model's labels
    # must agree wherever the full-context winner leads by more than that.
    top2 = logits[0].topk(2).values
    near_tie = (top2[:, 0] - top2[:, 1] < NEAR_TIE).tolist()
    assert len(dec.labels) == len(labels)
    assert all(a == b or tie for a, b, tie in zip(dec.labels, labels, near_tie))
    # tokens: the stream's own labels, CTC-collapsed (the full utterance's where they agree)
    blank = packed.blank_index
    collapsed = [lab for i, lab in enumerate(dec.labels)
                 if lab != blank and (i == 0 or lab != dec.labels[i - 1])]
    assert hyp.tokens == collapsed
    if dec.labels == labels:
        assert hyp.tokens == tokens
    # the stream's text is whitespace-normalized (a lone word-boundary piece decodes to
    # a double space)
    assert hyp.text == " ".join(packed.tokenizer.decode_ids(hyp.tokens).split())
    assert dec.stats.chunks == -(-frames // chunk)
    # the comparison is sensitive to the left context the streaming state carries
    _, _, no_ctx = decode_full(packed, wav, chunk, 0)
    assert not torch.allclose(no_ctx, logits, atol=1e-4)


def test_partial_hypotheses_only_grow_and_words_finalize(packed, wav):
    dec = StreamingDecoder(packed, 8, 2)
    updates = []
    final = stream_samples(dec, torch.cat([wav, wav]), on_update=updates.append)
    assert final.is_final and updates[-1] is final
    for a, b in zip(updates, updates[1:]):
        assert b.tokens[:len(a.tokens)] == a.tokens                # emitted tokens never change
        assert b.final_words[:len(a.final_words)] == a.final_words  # final words stay final
    assert final.final_words == final.text.split() and final.pending == ""


def test_nan_chunk_does_not_poison_later_chunks(packed, wav):
    chunk, left = 8, 2
    dec = StreamingDecoder(packed, chunk, left)
    bad = wav.clone()
    a, b = dec.chunk_samples * 1, dec.chunk_samples * 2
    bad[a:b] = float("nan")
    bad[b + 5] = float("inf")
    zeroed = torch.nan_to_num(bad, nan=0.0, posinf=0.0, neginf=0.0)
    hyp = stream_samples(dec, bad)
    assert dec.stats.nonfinite_samples == (b - a) + 1
    assert len(dec.stats.nonfinite_events) == 2
    tokens, labels, logits = decode_full(packed, zeroed, chunk, left)
    assert torch.isfinite(logits).all()
    assert dec.labels == labels and hyp.tokens == tokens
    # chunks well after the NaN piece decode as if it had never been there (the first 16 frames
    # are the left context that still sees the zeroed piece)
    ref = StreamingDecoder(packed, chunk, left)
    stream_samples(ref, wav)
    later = (b // dec.frontend.stride) + (left + 2) * chunk
    assert dec.labels[later:] == ref.labels[later:]


def test_packed_model_streams_with_native_kernel_and_matches_unpacked(tiny, packed, wav):
    assert packed.packed and packed.bits == [3]
    assert kernels.native_available(), kernels.NATIVE_ERROR
    assert packed.packed_modules(), "no packed module runs the denseshift op"
    dec = StreamingDecoder(packed, 16, 4)
    with count_packed_calls(packed) as calls:
        hyp = stream_samples(dec, wav)
    assert calls["calls"] > 0
    ref_model = _unpacked_model(tiny, packed)
    ref = StreamingDecoder(ref_model, 16, 4)
    ref_hyp = stream_samples(ref, wav)
    assert hyp.tokens == ref_hyp.tokens and hyp.text == ref_hyp.text
    # the fp32 twin (packed weights decoded to dense layers) gives the same transcript too
    twin = load_model(tiny["packed"], fp32=True)
    assert twin.fp32 and not twin.packed_modules()
    assert stream_samples(StreamingDecoder(twin, 16, 4), wav).tokens == hyp.tokens


def test_fp32_file_loads_and_streams(tiny, wav):
    model = load_model(tiny["fp32"])
    assert not model.packed and not model.packed_modules()
    dec = StreamingDecoder(model, 8, 2)
    hyp = stream_samples(dec, wav)
    assert hyp.tokens == decode_full(model, wav, 8, 2)[0]


# -------------------------------------------------------------------------------- CLI ---

def _write(path, data, sr=SR, subtype=None):
    sf.write(str(path), np.asarray(data, dtype=np.float32), sr, subtype=subtype)
    return str(path)


def _stream(*args):
    return cli_main(["stream", *map(str, args)])


def test_cli_json_summary(tiny, wav, tmp_path, capsys):
    f = _write(tmp_path / "a.flac", wav.numpy())
    assert _stream(tiny["packed"], "--wav", f, "--json", "--chunk-size", 8) == 0
    out = json.loads(capsys.readouterr().out)
    expect = stream_samples(StreamingDecoder(load_model(tiny["packed"]), 8, 4),
                            torch.from_numpy(sf.read(f, dtype="float32")[0]))
    assert out["transcript"] == expect.text
    assert out["native_kernel"] is True and out["packed_kernel_calls"] > 0
    assert out["threads"] == 1 and out["chunk_size_frames"] == 8
    for key in ("audio_seconds", "compute_seconds", "rtf", "chunk_latency_ms_median",
                "chunk_latency_ms_p95", "model_file_bytes"):
        assert out[key] > 0, key
    assert out["model_file_bytes"] == os.path.getsize(tiny["packed"])


def test_cli_text_output_partials_and_summary(tiny, wav, tmp_path, capsys):
    f = _write(tmp_path / "a.wav", wav.numpy())
    assert _stream(tiny["packed"], "--wav", f, "--chunk-size", 4, "--full-context") == 0
    out = capsys.readouterr().out
    assert "partial" in out and "final" in out and "full context:" in out
    for word in ("real-time factor", "chunk latency", "median", "p95", "model file",
                 "native kernel    yes"):
        assert word in out


def test_cli_fp32_twin(tiny, wav, tmp_path, capsys):
    f = _write(tmp_path / "a.wav", wav.numpy())
    assert _stream(tiny["packed"], "--wav", f, "--json", "--fp32") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["native_kernel"] is False and out["compute"].startswith("fp32")


def test_cli_empty_file_is_refused(tiny, tmp_path, capsys):
    f = _write(tmp_path / "empty.wav", np.zeros(0))
    assert _stream(tiny["packed"], "--wav", f) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "empty" in err and "empty.wav" in err


def test_cli_silent_file_is_flagged(tiny, tmp_path, capsys):
    f = _write(tmp_path / "silent.wav", np.zeros(SR))
    assert _stream(tiny["packed"], "--wav", f, "--json") == 0
    cap = capsys.readouterr()
    assert "silent" in cap.err
    out = json.loads(cap.out)
    assert out["utterances"][0]["input_notes"] and out["audio_seconds"] == 1.0


def test_cli_very_short_file_decodes(tiny, tmp_path, capsys):
    f = _write(tmp_path / "short.wav", 0.1 * np.random.default_rng(0).standard_normal(10))
    assert _stream(tiny["packed"], "--wav", f, "--json") == 0
    assert json.loads(capsys.readouterr().out)["audio_seconds"] == round(10 / SR, 3)


def test_cli_other_sample_rate_is_resampled(tiny, wav, tmp_path, capsys):
    import torchaudio.functional as AF
    x8 = AF.resample(wav.unsqueeze(0), SR, 8000)[0].numpy()
    f = _write(tmp_path / "a8k.wav", x8, sr=8000)
    assert _stream(tiny["packed"], "--wav", f, "--json") == 0
    cap = capsys.readouterr()
    assert "resampled from 8000 Hz to 16000 Hz" in cap.err
    out = json.loads(cap.out)
    assert abs(out["audio_seconds"] - len(x8) / 8000) < 1e-3


def test_cli_stereo_is_downmixed(tiny, wav, tmp_path, capsys):
    mono = _write(tmp_path / "mono.wav", wav.numpy(), subtype="FLOAT")
    stereo = _write(tmp_path / "stereo.wav", np.stack([wav.numpy()] * 2, 1), subtype="FLOAT")
    assert _stream(tiny["packed"], "--wav", mono, "--json") == 0
    a = json.loads(capsys.readouterr().out)
    assert _stream(tiny["packed"], "--wav", stereo, "--json") == 0
    cap = capsys.readouterr()
    assert "2 channels downmixed to mono" in cap.err
    assert json.loads(cap.out)["transcript"] == a["transcript"]


def test_cli_nan_samples_are_zeroed_and_reported(tiny, wav, tmp_path, capsys):
    x = wav.numpy().copy()
    x[SR // 2: SR] = np.nan
    f = _write(tmp_path / "nan.wav", x, subtype="FLOAT")
    assert _stream(tiny["packed"], "--wav", f, "--json") == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["nonfinite_samples_zeroed"] == SR // 2
    assert "replaced by zeros" in cap.err


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_cli_bad_model_file_gives_one_clear_line(tiny, wav, tmp_path, capsys, damage):
    data = open(tiny["packed"], "rb").read()
    bad = tmp_path / "bad.dsp"
    if damage == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        b = bytearray(data)
        b[-100] ^= 0xFF
        bad.write_bytes(bytes(b))
    else:
        bad.write_bytes(b"not a model at all")
    f = _write(tmp_path / "a.wav", wav.numpy())
    assert _stream(bad, "--wav", f) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.dsp" in err
    assert "Traceback" not in err


def test_cli_input_mistakes(tiny, tmp_path, capsys):
    assert _stream(tiny["packed"]) == 2
    assert "exactly one input" in capsys.readouterr().err
    assert _stream(tiny["packed"], "--wav", tmp_path / "missing.wav") == 2
    assert "no such audio file" in capsys.readouterr().err
    assert _stream(tmp_path / "missing.dsp", "--wav", "x.wav") == 2
    assert "no such packed model file" in capsys.readouterr().err


def test_cli_mic_without_sounddevice(tiny, capsys):
    try:
        import sounddevice  # noqa: F401
        pytest.skip("sounddevice is installed here")
    except (ImportError, OSError):
        pass
    assert _stream(tiny["packed"], "--mic") == 2
    assert "sounddevice" in capsys.readouterr().err


def _two_utterance_manifest(tmp_path):
    rows = ["ID,duration,wav,spk_id,wrd"]
    for i in range(2):
        f = _write(tmp_path / f"u{i}.flac", _signal(1.5 + i * 0.3, i + 5).numpy())
        rows.append(f"u{i},1.5,{f},spk,HELLO WORLD")
    csv = tmp_path / "test-clean.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_stream_manifest_prints_hyp_beside_ref(tiny, wav, tmp_path, capsys):
    csv = _two_utterance_manifest(tmp_path)
    s = stream_manifest(tiny["packed"], csv, limit=5, chunk_size=8, left_context_chunks=2)
    out = capsys.readouterr().out
    assert out.count("REF : HELLO WORLD") == 2 and out.count("HYP :") == 2
    assert len(s["utterances"]) == 2 and s["ref_words"] == 4
    assert s["wer_stream"] >= 0 and s["wer_full"] is not None and s["native_kernel"]
    assert _stream(tiny["packed"], "--manifest", csv, "--sweep", "4:1,8:2", "--json") == 0
    sweep = json.loads(capsys.readouterr().out)["sweep"]
    assert [(r["chunk_size_frames"], r["left_context_chunks"]) for r in sweep] == [(4, 1), (8, 2)]


def test_recipe_wrapper_defaults_to_test_clean(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "lsstream", os.path.join(ROOT, "recipes", "librispeech", "stream.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    folder = str(tmp_path)
    assert mod.wrap([folder, "--limit", "2"]) == [
        "stream", os.path.join(folder, "model.dsp"), "--manifest",
        os.path.join(folder, "test-clean.csv"), "--limit", "2"]
    assert mod.wrap([folder, "--wav", "a.flac"]) == [
        "stream", os.path.join(folder, "model.dsp"), "--wav", "a.flac"]


def test_kernel_path_is_read_from_the_file_and_can_be_chosen(tiny, wav):
    from denseshift_speech.packed import PackedConv1d, PackedLinear
    from denseshift_speech.streaming.model import ModelFileError

    def paths(model):
        return {m.path for m in model.packed_modules() if isinstance(m, (PackedLinear, PackedConv1d))}

    assert paths(load_model(tiny["packed"])) == {"int8"}  # the default it was exported with
    exact = load_model(tiny["packed"], kernel_path="exact")
    assert paths(exact) == {"exact"}
    with pytest.raises(ModelFileError, match="kernel path must be one of int8, exact, shift"):
        load_model(tiny["packed"], kernel_path="fastest")


# ------------------------------------------------------------- LM-fused streaming ------

@pytest.fixture(scope="module")
def arpa(tmp_path_factory):
    from denseshift_speech.integrations.speechbrain.lm import write_arpa
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("lm") / "lm_3gram.arpa"
    write_arpa([" ".join(rng.choice(WORDS, 6)).upper() for _ in range(100)], str(path))
    return str(path)


def _lm_stream(model, wav, arpa, chunk=8):
    from denseshift_speech.streaming.lm_search import StreamingLMSearch
    search = StreamingLMSearch.for_model(model, arpa, beam_size=8)
    seen, step = [], search.step
    search.step = lambda lp: (seen.append(lp.clone()), step(lp))[-1]
    dec = StreamingDecoder(model, chunk, 4, lm_search=search)
    updates = []
    hyp = stream_samples(dec, wav, on_update=updates.append)
    return search, hyp, updates, seen


@pytest.mark.parametrize("chunk", [4, 16])
def test_lm_streaming_equals_offline_lm_search_on_the_same_log_probs(packed, wav, arpa, chunk):
    """Chunk by chunk, the beams are exactly those of one offline pass over the same
    (chunk-masked) log-probabilities: SpeechBrain's partial decoding works frame by frame."""
    search, hyp, _, seen = _lm_stream(packed, wav, arpa, chunk)
    assert len(seen) > 1
    lp = torch.cat(seen).numpy()
    offline = search.searcher.decode_log_probs(lp, lp.shape[0])[0].text
    assert hyp.is_final and hyp.text == offline


def test_lm_partials_only_finalize_words_that_stay(packed, wav, arpa):
    _, hyp, updates, _ = _lm_stream(packed, wav, arpa)
    final_words = hyp.text.split()
    for h in updates:
        assert h.final_words == final_words[:len(h.final_words)], (h.final_words, final_words)
        assert h.text.split()[:len(h.final_words)] == h.final_words


def test_cli_beam_lm_and_a_missing_lm(tiny, wav, arpa, tmp_path, capsys):
    path = tmp_path / "a.wav"
    sf.write(path, wav.numpy(), 16000)
    assert _stream(tiny["packed"], "--wav", path, "--decoding", "beam_lm", "--lm-arpa", arpa, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rtf"] > 0
    assert (out["decoding"], out["lm_arpa"]) == ("beam_lm", arpa)
    assert out["decoding_reason"] == f"beam_lm: asked for ({arpa})"
    assert _stream(tiny["packed"], "--wav", path, "--decoding", "beam_lm",
                   "--lm-arpa", tmp_path / "none.arpa") == 2
    assert "LM file not found" in capsys.readouterr().err


# The default decoding: the best the model file supports (lm_search.default_decoding).

@pytest.fixture
def run_with_lm(tiny, arpa, tmp_path):
    """A run folder as the recipe leaves it: model.dsp with save/lm_3gram.arpa beside it."""
    import shutil
    run = tmp_path / "run"
    (run / "save").mkdir(parents=True)
    shutil.copy(tiny["packed"], run / "model.dsp")
    shutil.copy(arpa, run / "save" / "lm_3gram.arpa")
    return str(run / "model.dsp"), str(run / "save" / "lm_3gram.arpa")


def test_default_decoding_is_beam_lm_when_the_lm_sits_beside_the_model(run_with_lm, arpa, wav,
                                                                       tmp_path, capsys):
    from denseshift_speech.streaming.lm_search import default_decoding
    model, lm = run_with_lm
    choice = default_decoding(model)             # lm_order read from the file's hparams
    assert choice == ("beam_lm", lm, f"beam_lm: LM beside the model ({lm})")
    assert default_decoding(model, load_model(model).hparams) == choice
    f = _write(tmp_path / "a.wav", wav.numpy())
    assert _stream(model, "--wav", f, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["decoding"], out["lm_arpa"], out["decoding_reason"]) == choice
    assert _stream(model, "--wav", f, "--json", "--decoding", "beam_lm", "--lm-arpa", arpa) == 0
    assert json.loads(capsys.readouterr().out)["transcript"] == out["transcript"]  # same LM
    assert _stream(model, "--wav", f) == 0
    assert f"  decoding         beam_lm: LM beside the model ({lm})" in capsys.readouterr().out
    s = stream_manifest(model, _two_utterance_manifest(tmp_path), out=None)  # the API too
    assert s["decoding"] == "beam_lm" and s["lm_arpa"] == lm


def test_default_decoding_is_greedy_without_an_lm(tiny, wav, tmp_path, capsys):
    from denseshift_speech.streaming.lm_search import default_decoding, lm_beside_model
    looked = lm_beside_model(tiny["packed"])
    assert not os.path.exists(looked)
    reason = f"greedy: no LM beside the model (looked for {looked})"
    assert default_decoding(tiny["packed"]) == ("greedy", None, reason)
    f = _write(tmp_path / "a.wav", wav.numpy())
    assert _stream(tiny["packed"], "--wav", f, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["decoding"], out["lm_arpa"], out["decoding_reason"]) == ("greedy", None, reason)
    from denseshift_speech.streaming import DEFAULT_CHUNK_SIZE, DEFAULT_LEFT_CONTEXT
    expect = stream_samples(StreamingDecoder(load_model(tiny["packed"]), DEFAULT_CHUNK_SIZE,
                                             DEFAULT_LEFT_CONTEXT),
                            torch.from_numpy(sf.read(f, dtype="float32")[0]))
    assert out["transcript"] == expect.text
    assert _stream(tiny["packed"], "--wav", f) == 0
    assert f"  decoding         {reason}" in capsys.readouterr().out
    s = stream_manifest(tiny["packed"], _two_utterance_manifest(tmp_path), out=None)
    assert (s["decoding"], s["decoding_reason"]) == ("greedy", reason)


def test_explicit_decoding_overrides_the_default(run_with_lm, tiny, wav, tmp_path, capsys, monkeypatch):
    from denseshift_speech.streaming import lm_search
    model, lm = run_with_lm
    f = _write(tmp_path / "a.wav", wav.numpy())
    assert _stream(model, "--wav", f, "--json", "--decoding", "greedy") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["decoding"], out["lm_arpa"], out["decoding_reason"]) == ("greedy", None, "greedy: asked for")
    assert _stream(tiny["packed"], "--wav", f, "--json") == 0      # greedy by default there
    assert json.loads(capsys.readouterr().out)["transcript"] == out["transcript"]
    # an explicit beam_lm with no LM stays a clear error, naming where it looked
    assert _stream(tiny["packed"], "--wav", f, "--decoding", "beam_lm") == 2
    err = capsys.readouterr().err
    assert "--decoding beam_lm: LM file not found" in err
    assert lm_search.lm_beside_model(tiny["packed"]) in err
    # a named LM asks for it: missing, it is an error, not a quiet greedy run
    assert _stream(tiny["packed"], "--wav", f, "--lm-arpa", tmp_path / "none.arpa") == 2
    assert "--lm-arpa: LM file not found" in capsys.readouterr().err
    # without kenlm the default falls back to greedy and says why; beam_lm asked for fails
    monkeypatch.setattr(lm_search, "_kenlm_installed", lambda: False)
    choice = lm_search.default_decoding(model)
    assert choice.decoding == "greedy" and "'kenlm'" in choice.reason and lm in choice.reason
    with pytest.raises(lm_search.LMSearchError, match="kenlm"):
        lm_search.choose_decoding(model, "beam_lm")


# -------------------------------------------------------------------- endpointing ------

class _ScriptedCTC(torch.nn.Module):
    """Stands in for ctc_lin: emits a scripted label per encoder frame (then blanks)."""

    def __init__(self, labels, vocab):
        super().__init__()
        self.labels, self.vocab, self.pos = list(labels), vocab, 0

    def forward(self, enc):
        t = enc.shape[1]
        out = torch.full((1, t, self.vocab), -10.0)
        for i in range(t):
            lab = self.labels[self.pos] if self.pos < len(self.labels) else 0
            out[0, i, lab] = 10.0
            self.pos += 1
        return out


def test_endpointing_cuts_segments_at_trailing_blank(packed, tiny):
    from denseshift_speech.streaming import Endpointing
    model = copy.copy(packed)
    sp = model.tokenizer
    letter = next(i for i in range(sp.vocab_size()) if sp.id_to_piece(i).strip("\u2581").isalpha())
    space = next((i for i in range(sp.vocab_size()) if sp.id_to_piece(i) == "\u2581"), None)
    script = [0] * 10 + [letter] * 3 + [0] * 30 + ([space] if space is not None else [0]) + [0] * 5 \
        + [letter] * 4 + [0] * 25
    model.ctc_lin = _ScriptedCTC(script, sp.vocab_size())
    dec = StreamingDecoder(model, 8, 2, endpoint=Endpointing(trailing_silence=0.8, max_segment=30))
    fs = dec.frame_seconds
    samples = torch.zeros(int((len(script) + 8) * fs * model.sample_rate))
    stream_samples(dec, samples)
    starts = [round(s["start"] / fs) for s in dec.segments]
    ends = [round(s["end"] / fs) for s in dec.segments]
    # a lone word-boundary piece in the pause is not speech: two segments, not three
    assert starts == [10, 10 + 3 + 30 + 1 + 5], dec.segments
    assert ends == [13, 10 + 3 + 30 + 1 + 5 + 4], dec.segments
    assert all(seg["text"] for seg in dec.segments)
    # latency: the final text comes once the trailing silence is heard (and its chunk is
    # complete); the first partial within about a chunk of the start of speech
    chunk_s = dec.chunk_seconds + dec.lookahead_samples / model.sample_rate
    assert len(dec.stats.final_delays) == 2
    for d in dec.stats.final_delays[:1]:
        assert 0.8 <= d <= 0.8 + chunk_s + 0.5, dec.stats.final_delays
    assert len(dec.stats.first_partial_delays) == 2
    assert all(0.0 <= d <= chunk_s + 0.5 for d in dec.stats.first_partial_delays), dec.stats.first_partial_delays


def test_endpointing_forced_cut_and_bad_settings(packed):
    from denseshift_speech.streaming import Endpointing
    model = copy.copy(packed)
    sp = model.tokenizer
    letter = next(i for i in range(sp.vocab_size()) if sp.id_to_piece(i).strip("\u2581").isalpha())
    model.ctc_lin = _ScriptedCTC([letter, 0] * 60, sp.vocab_size())  # speech without pauses
    dec = StreamingDecoder(model, 8, 2, endpoint=Endpointing(trailing_silence=0.8, max_segment=1.0))
    fs = dec.frame_seconds
    stream_samples(dec, torch.zeros(int(130 * fs * model.sample_rate)))
    assert len(dec.segments) >= 4
    assert all(s["end"] - s["start"] <= 1.0 + 2 * fs for s in dec.segments)
    with pytest.raises(ValueError, match="positive"):
        Endpointing(trailing_silence=0)


def test_cli_endpoint_json_has_segments(tiny, wav, tmp_path, capsys):
    path = tmp_path / "a.wav"
    sf.write(path, wav.numpy(), 16000)
    assert _stream(tiny["packed"], "--wav", path, "--endpoint", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["utterances"][0]["segments"], list)
    assert _stream(tiny["packed"], "--wav", path, "--endpoint", "--endpoint-silence", "0") == 2
    assert "--endpoint" in capsys.readouterr().err


def test_live_view_under_a_pseudo_terminal(tiny, wav, tmp_path):
    """--realtime on a file stands in for the microphone: on a terminal the partial is
    redrawn in place on one line ("\\r" + erase line), then the final text and summary."""
    import pty
    import select
    import subprocess
    import sys
    from conftest import ROOT
    path = tmp_path / "a.wav"
    sf.write(path, wav.numpy()[:32000], 16000)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "denseshift_speech", "stream", str(tiny["packed"]),
                             "--wav", str(path), "--realtime", "--endpoint"],
                            stdout=slave, stderr=subprocess.PIPE, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(60) == 0, proc.stderr.read().decode()[-2000:]
    text = out.decode(errors="replace")
    assert text.count("\r\x1b[K") >= 2, text[:500]
    assert "summary:" in text and "s partial " not in text  # no plain per-update lines on a tty


def test_sweep_with_the_lm_matches_stream_manifest(packed, arpa, tmp_path):
    """`stream --decoding beam_lm --sweep`: each row streams with the LM search and its
    full-context reference is the offline LM search, as one stream_manifest run does."""
    from denseshift_speech.streaming.lm_search import StreamingLMSearch
    from denseshift_speech.streaming.run import sweep
    csv = _two_utterance_manifest(tmp_path)
    search = StreamingLMSearch.for_model(packed, arpa, beam_size=8)
    (row,) = sweep(packed, csv, [(8, 2)], out=None, lm_search=search)
    s = stream_manifest(packed, csv, limit=5, chunk_size=8, left_context_chunks=2,
                        out=None, lm_search=search)
    assert row["decoding"] == "beam_lm" and s["decoding"] == "beam_lm"
    assert row["wer_stream"] == round(s["wer_stream"], 2)
    assert row["wer_full"] == round(s["wer_full"], 2)
    (greedy,) = sweep(packed, csv, [(8, 2)], out=None)
    assert greedy["decoding"] == "greedy"


# ---------------------------------------------------------------- several streams ------

def _waves():
    """Streams of different lengths (one shorter than a chunk), so streams end and start at
    different rounds and their caches differ in length for a while."""
    return [_signal(2.37, 1), _signal(1.1, 2), _signal(3.05, 3), _signal(0.2, 4), _signal(1.7, 5)]


@pytest.mark.parametrize("threads", [1, 2])
def test_stream_batch_gives_each_stream_its_own_transcript(packed, threads):
    """N streams served together (chunks ready in the same round: one encoder call) give
    every stream the frame labels, tokens and text of decoding it alone."""
    from denseshift_speech.streaming import stream_many
    waves = _waves()
    alone = []
    for w in waves:
        dec = StreamingDecoder(packed, 8, 2)
        hyp = stream_samples(dec, w)
        alone.append((hyp.tokens, hyp.text, list(dec.labels)))
    labels = {}
    torch.set_num_threads(threads)
    try:
        hyps, stats, batch = stream_many(packed, waves, streams=3, chunk_size=8, left_context_chunks=2,
                                         on_final=lambda i, h, d: labels.setdefault(i, list(d.labels)))
    finally:
        torch.set_num_threads(1)
    for i, (tokens, text, lab) in enumerate(alone):
        assert hyps[i].is_final and (hyps[i].tokens, hyps[i].text) == (tokens, text), i
        assert labels[i] == lab, i
    b = batch.stats
    assert len(batch) == 3 and b.chunks == sum(s.chunks for s in stats)
    assert b.encoder_calls < b.chunks and b.chunks_per_call > 1.5  # the chunks were batched
    assert b.audio_seconds == pytest.approx(sum(w.numel() for w in waves) / SR)
    assert b.throughput > 0
    assert sum(s.compute_seconds for s in stats) == pytest.approx(b.compute_seconds, rel=1e-6)


def test_stream_batch_api_and_argument_checks(packed, wav):
    from denseshift_speech.streaming import StreamBatch
    batch = StreamBatch.create(packed, 2, chunk_size=8, left_context_chunks=2)
    piece = wav[:batch.decoders[0].chunk_samples + batch.decoders[0].lookahead_samples]
    out = batch.accept([piece, None])
    assert len(out) == 2 and out[1] is None
    assert batch.decoders[0].stats.chunks == 1 and batch.decoders[1].stats.chunks == 0
    finals = batch.finish()
    assert set(finals) == {0, 1} and all(h.is_final for h in finals.values())
    with pytest.raises(RuntimeError, match="already finished"):
        batch.accept([piece, None])
    batch.reset()
    calls, chunks = batch.stats.encoder_calls, batch.stats.chunks
    batch.accept([piece, piece])  # both streams' first chunk: one call
    assert (batch.stats.encoder_calls - calls, batch.stats.chunks - chunks) == (1, 2)
    with pytest.raises(ValueError, match="pieces for 2 streams"):
        batch.accept([piece])
    with pytest.raises(ValueError, match="share one model"):
        StreamBatch([StreamingDecoder(packed, 8, 2), StreamingDecoder(packed, 16, 2)])
    with pytest.raises(ValueError, match="streams must be >= 1"):
        StreamBatch.create(packed, 0)


def test_stream_many_with_the_lm_forks_one_search_per_stream(packed, arpa):
    from denseshift_speech.streaming import stream_many
    from denseshift_speech.streaming.lm_search import StreamingLMSearch
    waves = _waves()[:3]
    search = StreamingLMSearch.for_model(packed, arpa, beam_size=8)
    alone = [stream_samples(StreamingDecoder(packed, 8, 2, lm_search=search), w).text for w in waves]
    hyps, _, batch = stream_many(packed, waves, 3, 8, 2, lm_search=search)
    assert [h.text for h in hyps] == alone
    searches = [d.lm_search for d in batch.decoders]
    assert len({id(s) for s in searches}) == 3 and all(s.searcher is search.searcher for s in searches)


def test_cli_streams(tiny, tmp_path, capsys):
    files = [_write(tmp_path / f"{i}.wav", w.numpy()) for i, w in enumerate(_waves()[:3])]
    base = [tiny["packed"], "--chunk-size", 8, "--left-context", 2]
    for f in files:
        base += ["--wav", f]
    args = base + ["--json"]
    assert _stream(*args) == 0
    one = json.loads(capsys.readouterr().out)
    assert _stream(*args, "--streams", 3) == 0
    many = json.loads(capsys.readouterr().out)
    assert [u["transcript"] for u in many["utterances"]] == [u["transcript"] for u in one["utterances"]]
    assert many["streams"] == 3 and many["chunks_per_call"] > 1 and many["throughput_x_realtime"] > 0
    assert many["batched_chunks"] == many["chunks"] and "streams" not in one
    assert _stream(*base, "--streams", 2) == 0
    text = capsys.readouterr().out
    assert "streams          2 at once" in text and "real time for all streams together" in text
    assert _stream(tiny["packed"], "--wav", files[0], "--streams", 0) == 2
    assert "--streams must be >= 1" in capsys.readouterr().err
    assert _stream(tiny["packed"], "--wav", files[0], "--streams", 2, "--realtime") == 2
    assert "does not combine with --realtime" in capsys.readouterr().err


def test_stream_manifest_on_several_streams(tiny, tmp_path, capsys):
    csv = _two_utterance_manifest(tmp_path)
    one = stream_manifest(tiny["packed"], csv, limit=5, chunk_size=8, left_context_chunks=2, out=None)
    two = stream_manifest(tiny["packed"], csv, limit=5, chunk_size=8, left_context_chunks=2, out=None,
                          streams=2)
    assert [u["hyp"] for u in two["utterances"]] == [u["hyp"] for u in one["utterances"]]
    assert two["wer_stream"] == one["wer_stream"] and two["streams"] == 2
    assert _stream(tiny["packed"], "--manifest", csv, "--streams", 2, "--chunk-size", 8) == 0
    out = capsys.readouterr().out
    assert out.count("HYP :") == 2 and "streams          2 at once" in out
