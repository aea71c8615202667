"""Glue the recipes share: per-epoch diagnostics, model sizes, the language model, data set-up and the results JSON.

Recipes stay thin (a Brain subclass + a data pipeline); everything here is what two or
more recipes would otherwise repeat.  This module is also the recipes' one namespace:
it re-exports the hparams loading (:mod:`.hparams`), DenseShift from hparams
(:mod:`.quantize`), the tokenizer (:mod:`.tokenizer`),
the packed-file export (:mod:`.export`) and the inference spec they use
(:mod:`denseshift_speech.packed.spec`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time

import torch

from ...core.convert import QuantizeSummary
from ...core.diagnostics import CodeFlipTracker, code_histograms, summarize_histograms
from ...fsio import atomic_open
from ...packed.spec import module_container, restore_normalizer_stats
from .export import PACKED_FILE, export_packed, normalizer_stats
from .hparams import (RESOLVED_HPARAMS, HparamsError, exit_on_hparams_error, load_hparams,
                      merged_yaml_text, save_resolved_hparams)
from .quantize import apply_denseshift, load_float_checkpoint
from .tokenizer import _transcripts, tokenizer_file, train_tokenizer

# the recipe API (names the recipes and tests use as ``recipe.<name>``)
__all__ = [
    "RESULTS_FILE", "RESOLVED_HPARAMS", "PACKED_FILE", "HparamsError", "load_hparams",
    "merged_yaml_text", "exit_on_hparams_error", "save_resolved_hparams", "apply_denseshift",
    "module_container", "restore_normalizer_stats", "normalizer_stats",
    "load_float_checkpoint", "EpochDiagnostics", "parameter_counts", "write_results",
    "real_speech", "check_real_speech",
    "WallClock", "train_tokenizer", "tokenizer_file", "export_packed", "check_decoding",
    "language_model", "finish", "end_distributed", "ensure_data",
]

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"



class EpochDiagnostics:
    """Code-flip rate and code distribution, measured at the end of every training epoch."""

    def __init__(self, model: torch.nn.Module | None):
        self.tracker = CodeFlipTracker(model) if model is not None else None

    def __call__(self) -> dict:
        if self.tracker is None:
            return {}
        rates = self.tracker.update()
        dist = summarize_histograms(code_histograms(self.tracker.model))
        return {"code_flip": round(rates["total"], 5),
                "code_dist": " ".join(f"{p:.2f}" for p in dist)}


# ---------------------------------------------------------------------------
# Sizes and results
# ---------------------------------------------------------------------------

def parameter_counts(model: torch.nn.Module, summary: QuantizeSummary | None) -> dict:
    """Parameters of the model as its full-precision twin counts them (latents excluded)."""
    if summary is None:
        params = sum(p.numel() for p in model.parameters())
        return {"params": params, "quantized_params": 0, "quantized_fraction": 0.0,
                "fp32_bytes": 4 * params}
    return {"params": summary.total_params, "quantized_params": summary.quantized_weights,
            "quantized_fraction": round(summary.quantized_fraction, 4),
            "fp32_bytes": 4 * summary.total_params}


def write_results(folder: str, results: dict) -> str:
    path = os.path.join(folder, RESULTS_FILE)
    with atomic_open(path) as f:  # never leave a half-written results file
        json.dump(results, f, indent=2, sort_keys=True)
    return path


class WallClock:
    def __init__(self):
        self.start = time.time()

    def seconds(self) -> float:
        return round(time.time() - self.start, 1)


def check_decoding(hparams: dict) -> None:
    """Fail at start on a decoding set-up that could only fail after training."""
    if hparams["decoding"] not in ("greedy", "beam_lm"):
        raise HparamsError(f"decoding must be 'greedy' or 'beam_lm', got {hparams['decoding']!r}")
    if hparams["decoding"] == "beam_lm" and hparams["lm_arpa"] and not os.path.isfile(
            hparams["lm_arpa"]):
        raise HparamsError(f"lm_arpa: no language model file at {hparams['lm_arpa']} "
                           "(an ARPA or KenLM binary file; null estimates one from the "
                           "training transcripts)")
    if not 2 <= hparams["lm_order"] <= 6:
        raise HparamsError(f"lm_order must be 2..6 (KenLM), got {hparams['lm_order']}")


# The built-in estimator (lm.py) holds every n-gram count in Python dicts: fine for a
# few million words, not for LibriSpeech's 800-million-word LM text (use its ARPA files).
LM_TEXT_MAX_BYTES = 200 * 2**20


def check_lm_text(hparams: dict) -> None:
    """Fail at start (after the corpus is in place) on an ``lm_text`` the LM estimate
    could only fail on after training: missing, or too large for the estimator."""
    text = hparams["lm_text"]
    if hparams["decoding"] != "beam_lm" or hparams["lm_arpa"] or not text:
        return
    if not os.path.isfile(text):
        raise HparamsError(f"lm_text: no text file at {text} (one sentence per line, as "
                           "LibriSpeech's librispeech-lm-norm.txt; null: the training "
                           "transcripts only)")
    size = os.path.getsize(text)
    if size > LM_TEXT_MAX_BYTES:
        raise HparamsError(f"lm_text: {text} is {size / 2**20:.0f} MiB, "
                           f"more than the built-in n-gram estimator takes "
                           f"({LM_TEXT_MAX_BYTES // 2**20} MiB); estimate an ARPA file "
                           "with KenLM's lmplz and pass it as lm_arpa")


def language_model(hparams: dict) -> str | None:
    """The word n-gram LM the test searcher fuses: ``lm_arpa`` when set (an existing
    ARPA or KenLM binary, e.g. LibriSpeech's 3-gram), else an ``lm_order``-gram estimated
    from the training transcripts plus the sentences of ``lm_text`` (when set) into the
    save folder (main process only).  ``None`` with ``decoding: greedy``."""
    from speechbrain.utils.distributed import run_on_main
    if hparams["decoding"] == "greedy":
        return None
    if hparams["lm_arpa"]:
        return hparams["lm_arpa"]
    path = os.path.join(hparams["save_folder"], f"lm_{hparams['lm_order']}gram.arpa")
    run_on_main(_estimate_lm, kwargs={"csv_file": hparams["train_csv"], "path": path,
                                      "order": hparams["lm_order"],
                                      "text_file": hparams["lm_text"]})
    return path


def _estimate_lm(csv_file, path, order, text_file=None):
    from .lm import LMError, write_arpa
    if os.path.isfile(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sentences = _transcripts(csv_file)
    if text_file:
        with open(text_file, encoding="utf-8") as fh:
            sentences += [line.strip() for line in fh if line.strip()]
    try:
        write_arpa(sentences, path, order)
    except LMError as err:
        raise HparamsError(f"language model from {csv_file}"
                           f"{' and ' + text_file if text_file else ''}: {err}") from err


def finish(hparams: dict, task: str, metrics: dict, summary, clock: "WallClock",
           tokenizer=None) -> dict:
    """Export the packed model and write results.json (task, arch, bits, sizes, and the
    recipe's ``metrics``: error rates, epochs trained, best_epoch tested)."""
    counts = parameter_counts(module_container(hparams["modules"]), summary)
    train_seconds = clock.seconds()
    packed = export_packed(hparams, summary, task, tokenizer)
    config = hparams.get("denseshift")
    results = {
        "task": task, "arch": hparams["arch"], "experiment": hparams["experiment_name"],
        "bits": config.bits if config is not None else 32,
        "denseshift": config.to_dict() if config is not None else None,
        **counts, "packed_bytes": os.path.getsize(packed), "packed_file": packed,
        "train_seconds": train_seconds, **metrics,
    }
    real = real_speech(hparams, packed)
    if real:
        results["real_speech"] = real
    write_results(hparams["output_folder"], results)
    logger.info("results: %s", json.dumps({k: v for k, v in results.items() if k != "denseshift"}))
    return results


def real_speech(hparams: dict, model_file: str) -> dict:
    """The exported ``model_file`` on each folder of real recordings in the hparam
    ``real_speech_folders`` (a Speech Commands-layout folder, a folder of spoken digits,
    or a CSV of wav + transcript: ``denseshift-speech evaluate``): ``{name: figures}``,
    ``name`` the folder's last two path parts; a set the model cannot be measured on (spoken
    digits for a keyword spotter) is recorded as ``{"skipped": why}``.  Measured only,
    never trained on or used to pick a checkpoint.  A missing folder is one clear error
    before training (:func:`check_real_speech`)."""
    from ...errors import UserError
    from ...streaming.evaluate import evaluate
    out = {}
    for folder in hparams.get("real_speech_folders") or []:
        name = "/".join(os.path.normpath(os.fspath(folder)).split(os.sep)[-2:])
        try:
            res = evaluate(model_file, folder)
        except UserError as err:  # e.g. spoken digits for a keyword spotter: not its classes
            out[name] = {"skipped": str(err)}
            logger.warning("real speech %s skipped: %s", name, err)
            continue
        keep = ("accuracy", "clips", "correct") if res["task"] == "kws" else (
            "wer", "exact_rate", "utterances", "exact", "decoding")
        out[name] = {"layout": res["layout"], **{k: res[k] for k in keep},
                     "rtf": res.get("rtf")}
        logger.info("real speech %s: %s", name, out[name])
    return out


def check_real_speech(hparams: dict) -> None:
    """Each of ``real_speech_folders`` exists and is a layout ``evaluate`` reads."""
    folders = hparams.get("real_speech_folders") or []
    if not isinstance(folders, (list, tuple)):
        raise HparamsError(f"real_speech_folders must be a list of folders, got {folders!r}")
    for folder in folders:
        from ...streaming.evaluate import detect_layout
        try:
            detect_layout(folder)
        except Exception as err:  # the evaluate layer's own one-line error
            raise HparamsError(f"real_speech_folders: {err}") from None


def rates_by_voice(items, voices: dict) -> dict:
    """Error or accuracy rates per speaker group of a synthetic corpus: ``items`` are
    ``(speaker id, count, total)`` (edits and reference words, or right and 1), ``voices``
    its SPEAKERS.TXT (read_speakers: id -> ``engine:voice``).  Returns ``{"voice":
    {engine:voice: %}, "engine": {engine: %}}`` over the named speakers (others, such as
    the silence clips, are left out)."""
    sums = {"voice": {}, "engine": {}}
    for spk, count, total in items:
        voice = voices.get(spk)
        if voice is None:
            continue
        for kind, key in (("voice", voice), ("engine", voice.split(":")[0])):
            c, t = sums[kind].get(key, (0, 0))
            sums[kind][key] = (c + count, t + total)
    return {kind: {k: round(100.0 * c / max(t, 1), 2) for k, (c, t) in sorted(d.items())}
            for kind, d in sums.items()}


def evaluate_packed_paths(brain, tests: dict, hparams: dict, summary) -> dict:
    """Test each kernel path of ``hparams['eval_packed_paths']`` on the packed model.

    Packs ``hparams['model']`` in place (call after the regular test: it holds the best
    checkpoint) and re-runs ``brain.evaluate`` on every test split per path, with the
    checkpointer detached so nothing is reloaded.  Returns ``{path: {split: {WER, CER,
    WER_greedy}}}``; the model is left on the default path, ready for export.  Skipped
    (empty result) for full-precision models and off the CPU (the kernels are CPU code).
    """
    from ...packed import DEFAULT_PATH, check_path, pack_, set_path_
    paths = [check_path(str(p)) for p in (hparams.get("eval_packed_paths") or [])]
    if not paths or summary is None:
        return {}
    if str(brain.device) != "cpu":
        logger.warning("eval_packed_paths: skipped, the packed kernels run on the CPU only "
                       "(device is %s)", brain.device)
        return {}
    model = module_container(hparams["modules"])
    pack_(model)
    checkpointer, brain.checkpointer = brain.checkpointer, None
    saved, results = brain.test_results, {}
    try:
        for path in paths:
            set_path_(model, path)
            brain.test_results = {}
            for split, dataset in tests.items():
                brain.split = f"{split}.packed-{path}"  # wer_<split>.packed-<path>.txt
                brain.evaluate(dataset, test_loader_kwargs=hparams["test_dataloader_opts"])
            results[path] = {name.split(".packed-")[0]: r for name, r in brain.test_results.items()}
    finally:
        brain.checkpointer, brain.test_results = checkpointer, saved
        set_path_(model, DEFAULT_PATH)
    return results


def set_training_steps(scheduler, train_items: int, hparams: dict) -> None:
    """Give a scheduler that anneals to the end of the run (SpeechBrain's
    ``LinearWarmupScheduler``, with ``num_training_steps: null`` in the hparams) its
    length: ``number_of_epochs`` x the optimizer steps of an epoch, as this process
    sees them (``train_items`` dealt over the data-parallel processes, in batches of
    ``batch_size``, ``grad_accumulation_factor`` batches a step).  Other schedulers, and
    one whose length the hparams give, are left alone."""
    if getattr(scheduler, "num_training_steps", 0) is not None:
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batches = math.ceil(math.ceil(train_items / world) / hparams["batch_size"])
    steps = hparams["number_of_epochs"] * (batches // hparams["grad_accumulation_factor"])
    if steps <= scheduler.num_warmup_steps:
        raise HparamsError(f"the run has {steps} optimizer steps, not more than warmup_steps "
                           f"({scheduler.num_warmup_steps}): lower warmup_steps or train longer")
    scheduler.num_training_steps = steps


def end_distributed():
    """Wait for the main process to finish writing, then close the process group: a rank
    leaving while gloo's threads still run dies with 'terminate called...' (exit -6)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _warn_if_other_settings(folder, synthesize, seed, synth_kwargs) -> None:
    from ...data import DataError
    from ...data.synth import corpus_differences, is_synthetic_corpus
    if not is_synthetic_corpus(folder):
        return
    try:
        asked = synthesize(out_dir=folder, seed=seed, options_only=True, **synth_kwargs)
    except DataError:  # (an engine missing here: nothing to compare with)
        return
    differences = corpus_differences(folder, asked)
    if differences:
        logger.warning("%s holds a synthetic corpus written with other settings than the "
                       "synth_* hparams ask; it is used as it is (remove the folder, or point "
                       "--data_folder at a new one, to have the asked corpus written): %s",
                       folder, "; ".join(differences))


def ensure_data(hparams: dict, dataset: str, synthesize, **synth_kwargs):
    """Use ``hparams['data_folder']`` as it is, synthesize it (main process only), or fail.

    A real dataset, or a finished synthetic corpus (whatever options wrote it), is used as
    it is -- unless an older version of the synthesizer wrote it (then it is written
    anew: an older corpus lacks the engines, conditions and splits the recipes expect).
    A corpus written with other settings than the synth_* hparams ask is named in a
    warning with each difference (it is not rewritten: that may be hours of synthesis
    someone chose to keep).
    A corpus of a newer synthesizer than this one is one clear error (never removed).
    A synthetic corpus still being written (by a twin started at the same time) or
    left unfinished by a killed run is handed to ``synthesize``, which waits for the
    twin's lock or starts again.  With ``synthesize_if_missing: False`` a missing folder
    is one clear error naming ``dataset``.
    """
    from speechbrain.utils.distributed import run_on_main

    from ...data import DataError
    from ...data.synth import check_not_newer, is_outdated_corpus, is_unfinished_corpus
    folder = hparams["data_folder"]
    try:
        check_not_newer(folder)
    except DataError as err:
        raise HparamsError(f"data_folder: {err}") from None
    if os.path.isdir(folder) and not is_unfinished_corpus(folder):
        if not is_outdated_corpus(folder):
            _warn_if_other_settings(folder, synthesize, hparams["synth_seed"], synth_kwargs)
            return
        logger.warning("%s was written by an older synthesizer; writing it anew", folder)
    if not hparams["synthesize_if_missing"]:
        if os.path.isdir(folder):
            return
        raise HparamsError(
            f"data_folder {folder!r} does not exist and synthesize_if_missing is False: "
            f"point --data_folder at a {dataset} folder or allow synthesis")
    run_on_main(synthesize, kwargs={"out_dir": folder, "seed": hparams["synth_seed"],
                                    **synth_kwargs})
