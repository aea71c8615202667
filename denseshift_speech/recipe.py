"""Glue the recipes share: hparams loading with DenseShift twins, applying DenseShift from
hparams, per-epoch diagnostics, model sizes and the results JSON.

Recipes stay thin (a Brain subclass + a data pipeline); everything here is what two or
more recipes would otherwise repeat.

Hparams twins: a DenseShift hparams file may start with ``extends: <fp file>``.  Its other
top-level keys are laid over the full-precision file (new keys allowed), then the command
line overrides go on top (those must name existing keys).  So ``conformer_ds.yaml``
contains only its quantization block, and differs from ``conformer_fp.yaml`` in nothing
else by construction.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from io import StringIO

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references

from .core.convert import DenseShiftConfig, QuantizeSummary, quantize_
from .core.diagnostics import CodeFlipTracker, code_histograms, summarize_histograms
from .packed.spec import module_container, restore_normalizer_stats  # noqa: F401 (recipe API)

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
RESOLVED_HPARAMS = "hyperparams_resolved.yaml"


class HparamsError(ValueError):
    """Invalid hyperparameters: the message names the file/key and what was expected."""


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def _yaml():
    return ruamel.yaml.YAML()


def merged_yaml_text(hparams_file: str, overrides: str | dict | None = None) -> str:
    """The experiment as one YAML text: base file (if ``extends``) + twin keys + overrides,
    with !ref/!copy resolved (tags like !new: are kept)."""
    if not os.path.isfile(hparams_file):
        raise HparamsError(f"hparams file not found: {hparams_file}")
    with open(hparams_file) as f:
        doc = _yaml().load(f) or {}
    cli = _parse_overrides(overrides)
    base_file, layer = hparams_file, {}
    if "extends" in doc:
        base_file = os.path.join(os.path.dirname(os.path.abspath(hparams_file)), str(doc["extends"]))
        if not os.path.isfile(base_file):
            raise HparamsError(f"{hparams_file}: 'extends' names {base_file}, which does not exist")
        layer = {k: v for k, v in doc.items() if k != "extends"}
    with open(base_file) as f:
        base = _yaml().load(f) or {}
    known = set(base) | set(layer)
    unknown = sorted(set(cli) - known)
    if unknown:
        raise HparamsError(
            f"unknown hparam(s) {', '.join(unknown)} for {hparams_file} "
            f"(known keys: {', '.join(sorted(k for k in known if not k.startswith('_')))})")
    # Top-level keys are replaced whole (a twin's 'denseshift' block replaces 'null').
    for key, value in list(layer.items()) + list(cli.items()):
        base[key] = value
    stream = resolve_references(StringIO(_dump(base)))
    return stream.getvalue()


def load_hparams(hparams_file: str, overrides=None):
    """(hparams dict, resolved yaml text).  Errors become one HparamsError naming the file."""
    text = merged_yaml_text(hparams_file, overrides)
    try:
        return load_hyperpyyaml(text), text
    except (ValueError, TypeError, KeyError) as err:
        raise HparamsError(f"{hparams_file}: {err}") from err


def _parse_overrides(overrides) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    try:
        return dict(_yaml().load(overrides) or {})
    except ruamel.yaml.YAMLError as err:
        raise HparamsError(f"could not read the command-line overrides: {err}") from err


def _dump(mapping) -> str:
    out = StringIO()
    _yaml().dump(mapping, out)
    return out.getvalue()


def exit_on_hparams_error(func):
    """Run ``func``; an HparamsError prints one line and exits with status 2."""
    try:
        return func()
    except HparamsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


# ---------------------------------------------------------------------------
# DenseShift from hparams
# ---------------------------------------------------------------------------

def apply_denseshift(modules: dict, hparams: dict) -> QuantizeSummary | None:
    """Quantize the recipe's trainable modules as ``hparams['denseshift']`` says.

    ``modules`` maps the names used in include/exclude patterns (``CNN``, ``Transformer``,
    ``ctc_lin``...) to modules.  With ``init: from_float`` and ``init_from_fp`` naming a
    full-precision checkpoint folder (a Checkpointer ``CKPT+...`` directory or its
    ``model.ckpt``), the float weights are loaded first and DenseShift starts from them.
    Must run before the Brain builds its optimizer.
    """
    config = hparams.get("denseshift")
    if config is None:
        return None
    if not isinstance(config, DenseShiftConfig):
        raise HparamsError(f"'denseshift' must be a !new:denseshift_speech.DenseShiftConfig, "
                           f"got {type(config).__name__}")
    container = module_container(modules)
    init_from = hparams.get("init_from_fp")
    if init_from:
        if config.init != "from_float":
            raise HparamsError("init_from_fp is set but denseshift init is not 'from_float'")
        load_float_checkpoint(hparams["model"], init_from)
    summary = quantize_(container, config)
    logger.info("%s", summary)
    return summary


def load_float_checkpoint(model: torch.nn.Module, path: str):
    """Load a full-precision recipe checkpoint into ``model`` (the hparams' ``model``, the
    object the Checkpointer saves as <dir>/model.ckpt), strictly.

    ``path``: a ``model.ckpt`` file, a ``CKPT+...`` folder, or a run's output folder (or
    its ``save/``), whose checkpoint with the lowest validation WER (the one the recipe
    tests) is used.
    """
    ckpt = os.path.join(path, "model.ckpt") if os.path.isdir(path) else path
    if os.path.isdir(path) and not os.path.isfile(ckpt):
        ckpt = os.path.join(_best_checkpoint(path), "model.ckpt")
    if not os.path.isfile(ckpt):
        raise HparamsError(f"init_from_fp: no checkpoint at {ckpt}")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise HparamsError(f"init_from_fp: {ckpt} does not match this architecture: {err}") from None


def _best_checkpoint(run_dir: str) -> str:
    """The CKPT+ folder under ``run_dir`` (or ``run_dir``/save) the recipe would test."""
    from speechbrain.utils.checkpoints import Checkpointer
    for folder in (os.path.join(run_dir, "save"), run_dir):
        if os.path.isdir(folder) and any(d.startswith("CKPT+") for d in os.listdir(folder)):
            found = Checkpointer(folder).find_checkpoint(min_key="WER")
            return str(found.path) if found is not None else run_dir
    return run_dir


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
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    os.replace(tmp, path)  # never leave a half-written results file
    return path


class WallClock:
    def __init__(self):
        self.start = time.time()

    def seconds(self) -> float:
        return round(time.time() - self.start, 1)


def save_resolved_hparams(folder: str, text: str) -> str:
    """The whole experiment as one self-contained YAML (what export and stream rebuild)."""
    path = os.path.join(folder, RESOLVED_HPARAMS)
    from speechbrain.utils.distributed import if_main_process
    if if_main_process():
        os.makedirs(folder, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return path


def train_tokenizer(hparams: dict):
    """SentencePiece trained on the training transcripts (once, on the main process).

    Trained with identity normalization: transcripts are already normalized (upper-case
    LibriSpeech style), and the default NFKC table alone weighs 237 KB -- more than a
    demo model's packed weights -- and travels inside every packed model file.
    """
    from speechbrain.tokenizers.SentencePiece import SentencePiece
    from speechbrain.utils.distributed import run_on_main
    model_dir = os.path.join(hparams["save_folder"], "tokenizer")
    prefix = os.path.join(model_dir, f"{hparams['vocab_size']}_{hparams['token_type']}")
    run_on_main(_train_sentencepiece, kwargs={
        "csv_file": hparams["train_csv"], "prefix": prefix,
        "vocab_size": hparams["vocab_size"], "model_type": hparams["token_type"]})
    return SentencePiece(model_dir=model_dir, vocab_size=hparams["vocab_size"],
                         model_type=hparams["token_type"])


def _transcripts(csv_file) -> list:
    """The non-empty ``wrd`` column of a prepared manifest (tokenizer and LM text)."""
    import csv
    with open(csv_file, newline="") as f:
        return [row["wrd"] for row in csv.DictReader(f) if row["wrd"].strip()]


def _train_sentencepiece(csv_file, prefix, vocab_size, model_type):
    import sentencepiece as spm
    if os.path.isfile(prefix + ".model"):
        return
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    lines = _transcripts(csv_file)
    if not lines:
        raise HparamsError(f"no transcripts in {csv_file} to train the tokenizer on")
    text_file = prefix + "_train.txt"
    with open(text_file, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        spm.SentencePieceTrainer.train(
            input=text_file, model_prefix=prefix, vocab_size=vocab_size, model_type=model_type,
            character_coverage=1.0, normalization_rule_name="identity", unk_id=0, bos_id=-1,
            eos_id=-1, pad_id=-1, minloglevel=2)
    except RuntimeError as err:
        raise HparamsError(f"tokenizer training failed for vocab_size={vocab_size} on "
                           f"{csv_file}: {err}") from err


def tokenizer_file(tokenizer) -> str:
    return tokenizer.prefix_model_file + ".model"


PACKED_FILE = "model.dsp"
# Deterministic buffers SpeechBrain rebuilds with the architecture: not worth shipping.
REBUILT_BUFFERS = ("*positional_encoding*.pe",)


def normalizer_stats(container: torch.nn.Module) -> dict:
    """{module name: {glob_mean, glob_std}} of every InputNormalization in ``container``:
    SpeechBrain keeps these statistics outside the state dict, so the file carries them."""
    from speechbrain.processing.features import InputNormalization
    return {name: {"glob_mean": m.glob_mean.flatten().tolist(),
                   "glob_std": m.glob_std.flatten().tolist()}
            for name, m in container.named_modules() if isinstance(m, InputNormalization)}


def export_packed(hparams: dict, summary, task: str, tokenizer=None, path: str | None = None,
                  metadata: dict | None = None) -> str:
    """Pack the trained modules in place and write the packed model file.

    The file (default <output_folder>/model.dsp) is self-contained: the resolved hparams
    (the architecture), normalization statistics, the tokenizer and any extra
    ``metadata`` (str -> str) travel inside it, so ``denseshift-speech stream`` needs
    nothing else.  Call after the last evaluation (the modules become inference-only).
    """
    from .packed import pack_, save_packed
    container = module_container(hparams["modules"]).cpu()  # the packed kernels are CPU code
    if summary is not None:
        pack_(container)
    with open(os.path.join(hparams["output_folder"], RESOLVED_HPARAMS)) as f:
        meta = {"task": task, "arch": hparams["arch"], "hparams_yaml": f.read(),
                "normalizers": json.dumps(normalizer_stats(container)), **(metadata or {})}
    blobs = {}
    if tokenizer is not None:
        with open(tokenizer_file(tokenizer), "rb") as f:
            blobs["tokenizer.model"] = f.read()
    path = path or os.path.join(hparams["output_folder"], PACKED_FILE)
    save_packed(container, path, metadata=meta, blobs=blobs, config=hparams.get("denseshift"),
                rebuilt_buffers=REBUILT_BUFFERS)
    return path


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


def language_model(hparams: dict) -> str | None:
    """The word n-gram LM the test searcher fuses: ``lm_arpa`` when set (an existing
    ARPA or KenLM binary, e.g. LibriSpeech's 3-gram), else an ``lm_order``-gram estimated
    from the training transcripts into the save folder (main process only).  ``None``
    with ``decoding: greedy``."""
    from speechbrain.utils.distributed import run_on_main
    if hparams["decoding"] == "greedy":
        return None
    if hparams["lm_arpa"]:
        return hparams["lm_arpa"]
    path = os.path.join(hparams["save_folder"], f"lm_{hparams['lm_order']}gram.arpa")
    run_on_main(_estimate_lm, kwargs={"csv_file": hparams["train_csv"], "path": path,
                                      "order": hparams["lm_order"]})
    return path


def _estimate_lm(csv_file, path, order):
    from .lm import LMError, write_arpa
    if os.path.isfile(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        write_arpa(_transcripts(csv_file), path, order)
    except LMError as err:
        raise HparamsError(f"language model from {csv_file}: {err}") from err


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
    write_results(hparams["output_folder"], results)
    logger.info("results: %s", json.dumps({k: v for k, v in results.items() if k != "denseshift"}))
    return results


def end_distributed():
    """Wait for the main process to finish writing, then close the process group: a rank
    leaving while gloo's threads still run dies with 'terminate called...' (exit -6)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def ensure_data(hparams: dict, dataset: str, synthesize, **synth_kwargs):
    """Use ``hparams['data_folder']`` as it is, synthesize it (main process only), or fail.

    A real dataset, or a finished synthetic corpus (whatever options wrote it), is used as
    it is.  A synthetic corpus still being written (by a twin started at the same time) or
    left unfinished by a killed run is handed to ``synthesize``, which waits for the
    twin's lock or starts again.  With ``synthesize_if_missing: False`` a missing folder
    is one clear error naming ``dataset``.
    """
    from speechbrain.utils.distributed import run_on_main

    from .data.synth import is_unfinished_corpus
    folder = hparams["data_folder"]
    if os.path.isdir(folder) and not is_unfinished_corpus(folder):
        return
    if not hparams["synthesize_if_missing"]:
        if os.path.isdir(folder):
            return
        raise HparamsError(
            f"data_folder {folder!r} does not exist and synthesize_if_missing is False: "
            f"point --data_folder at a {dataset} folder or allow synthesis")
    run_on_main(synthesize, kwargs={"out_dir": folder, "seed": hparams["synth_seed"],
                                    **synth_kwargs})
