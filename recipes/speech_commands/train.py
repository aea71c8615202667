#!/usr/bin/env python3
"""Keyword spotting on Google Speech Commands v0.02 (or its embedded synthetic twin), full
precision or DenseShift, chosen by the hparams file.

    python recipes/speech_commands/train.py hparams/kws_ds.yaml [--key=value ...]

Writes to <output_folder>: checkpoints (save/), train/valid/test CSVs, noise.csv,
results.json (accuracy, confusion matrix, sizes), the model file model.dsp (packed
DenseShift weights, or float32 weights for the full-precision twin; loadable with
denseshift_speech.packed.load_packed) and the resolved hparams.
"""
import copy
import json
import logging
import os
import sys
import time

import numpy as np
import soundfile as sf
import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.integrations.speechbrain.augment import write_source_csvs, write_wave_list
from denseshift_speech.data import (DataError, prepare_speech_commands, read_speakers,
                                    synthesize_speech_commands)

logger = logging.getLogger(__name__)

BG_DIR = "_background_noise_"
TRAIN_NOISE_REGION = 0.8  # the preparer cuts test/valid silence from the last 20%


class KWS(sb.Brain):
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        if stage == sb.Stage.TRAIN and self.hparams.apply_data_augmentation:
            wavs, lens = self.hparams.wav_augment(wavs, lens)
        feats = self.hparams.compute_features(wavs)
        if stage == sb.Stage.TRAIN and self.hparams.warp_features:
            feats = self.hparams.vocal_tract_warp(feats)
        feats = self.modules.mean_var_norm(feats, lens)
        return self.modules.classifier(self.modules.embedding_model(feats)), lens

    def compute_objectives(self, predictions, batch, stage):
        predictions, lens = predictions
        labels, _ = batch.command_encoded
        if stage == sb.Stage.TRAIN and self.hparams.apply_data_augmentation:
            labels = self.hparams.wav_augment.replicate_labels(labels)
        loss = self.hparams.compute_cost(predictions, labels, lens)
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(batch.id, predictions, labels, lens)
            pred = predictions.squeeze(1).argmax(-1).cpu()
            for t, p in zip(labels.view(-1).cpu().tolist(), pred.tolist()):
                self.confusion[t, p] += 1
        return loss

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.error_metrics = self.hparams.error_stats()
            n = self.hparams.num_classes
            self.confusion = torch.zeros(n, n, dtype=torch.long)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = {**stats, **self.diagnostics()}
            return
        stats["ErrorRate"] = self.error_metrics.summarize("average")
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(epoch)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": old_lr}, train_stats=self.train_stats, valid_stats=stats)
            self.checkpointer.save_and_keep_only(meta={"ErrorRate": stats["ErrorRate"]},
                                                 min_keys=["ErrorRate"])
        else:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats)
            self.test_stats = stats


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def check_data(hparams):
    """The corpus in data_folder, synthesized when missing (synth_train_engines; festival
    for the held-out-engine test list)."""
    n_eval = hparams["synth_eval_speakers"]
    recipe.ensure_data(hparams, "Speech Commands v0.02", synthesize_speech_commands,
                       train_speakers=hparams["synth_train_speakers"], valid_speakers=n_eval,
                       test_speakers=n_eval, test_other_speakers=n_eval,
                       repeats=hparams["synth_repeats"],
                       train_engines=tuple(hparams["synth_train_engines"]),
                       engine_share=hparams["synth_engine_share"])


def check_hparams(hparams):
    if hparams["num_classes"] not in (12, 35) and hparams["num_classes"] != len(hparams["words"]) \
            + (hparams["percentage_unknown"] > 0) + (hparams["percentage_silence"] > 0):
        raise recipe.HparamsError(
            f"num_classes={hparams['num_classes']}: expected 12, 35, or len(words) + unknown "
            f"+ silence = {len(hparams['words'])} + "
            f"{int(hparams['percentage_unknown'] > 0) + int(hparams['percentage_silence'] > 0)}")
    both = hparams["ckpt_interval_minutes"] > 0 and hparams["ckpt_interval_steps"] > 0
    if both:
        raise recipe.HparamsError("ckpt_interval_minutes and ckpt_interval_steps are "
                                  "exclusive: set one of them to 0")


def prepare_noise_csv(hparams):
    """Cut the train region of each background-noise file into 1-s pieces for AddNoise."""
    bg = os.path.join(hparams["data_folder"], BG_DIR)
    csv_path = hparams["noise_csv"]
    out_dir = os.path.join(hparams["output_folder"], "noise")
    if os.path.isfile(csv_path):
        return
    if not os.path.isdir(bg):
        raise recipe.HparamsError(f"{bg} not found: noise augmentation needs the corpus' "
                                  "background noise (or --apply_data_augmentation=False)")
    os.makedirs(out_dir, exist_ok=True)
    sr = hparams["sample_rate"]
    rows = []
    for fn in sorted(os.listdir(bg)):
        if not fn.lower().endswith(".wav"):
            continue
        try:
            audio, file_sr = sf.read(os.path.join(bg, fn), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as err:
            logger.warning("skipping unreadable background noise %s: %s", fn, err)
            continue
        if file_sr != sr:
            logger.warning("skipping background noise %s: %d Hz, expected %d", fn, file_sr, sr)
            continue
        audio = audio.mean(axis=1)[: int(len(audio) * TRAIN_NOISE_REGION)]
        for k in range(len(audio) // sr):
            name = f"{fn[:-4]}_{k:04d}"
            path = os.path.join(out_dir, name + ".wav")
            sf.write(path, audio[k * sr:(k + 1) * sr], sr, subtype="PCM_16")
            rows.append((name, 1.0, path))
    if not rows:
        raise recipe.HparamsError(f"no usable {sr} Hz background noise file in {bg} "
                                  "(or set --apply_data_augmentation=False)")
    write_wave_list(csv_path, rows)


def read_classes(hparams):
    with open(os.path.join(hparams["output_folder"], "classes.txt")) as f:
        classes = [line.strip() for line in f if line.strip()]
    if len(classes) != hparams["num_classes"]:
        raise recipe.HparamsError(
            f"num_classes={hparams['num_classes']} but the prepared data has "
            f"{len(classes)} classes ({', '.join(classes)})")
    return classes


def dataio_prepare(hparams, classes):
    folder = hparams["output_folder"]
    encoder = sb.dataio.encoder.CategoricalEncoder()
    encoder.update_from_iterable(classes)  # fixed order: the confusion matrix's rows
    encoder.expect_len(len(classes))
    datasets = {}
    splits = [("train", "max_train_items"), ("valid", "max_eval_items"),
              ("test", "max_eval_items")]
    if os.path.isfile(os.path.join(folder, "test_other.csv")):  # held-out engine
        splits.append(("test_other", "max_eval_items"))
    for split, limit in splits:
        data = sb.dataio.dataset.DynamicItemDataset.from_csv(os.path.join(folder, f"{split}.csv"))
        if hparams[limit]:
            rng = np.random.default_rng(hparams["seed"])
            keys = sorted(data.data_ids)
            pick = rng.choice(len(keys), min(hparams[limit], len(keys)), replace=False)
            data = data.filtered_sorted(key_test={"id": set(keys[i] for i in pick).__contains__})
        datasets[split] = data
    all_sets = list(datasets.values())

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav, start, stop):
        return sb.dataio.dataio.read_audio({"file": wav, "start": int(start), "stop": int(stop)})

    @sb.utils.data_pipeline.takes("command")
    @sb.utils.data_pipeline.provides("command", "command_encoded")
    def label_pipeline(command):
        yield command
        yield encoder.encode_sequence_torch([command])

    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(all_sets, label_pipeline)
    sb.dataio.dataset.set_output_keys(all_sets, ["id", "sig", "command_encoded", "spk_id"])
    return datasets


# ---------------------------------------------------------------------------
# Export and results
# ---------------------------------------------------------------------------

def export_model(hparams, summary, classes):
    """Write <output_folder>/model.dsp and load it back; return (path, loaded modules).

    The file (safetensors, no pickle; see denseshift_speech.packed) holds the b-bit codes
    + per-channel scales of the DenseShift weights and everything else in float32 -- for
    the full-precision twin, all weights in float32 -- plus the resolved hparams,
    normalization statistics and the class names, so it is all a device needs.  It is
    loaded back into a copy of the architecture and run on the test set (with the packed
    kernels for DenseShift), so the accuracy reported for the file is measured.
    """
    from denseshift_speech.packed import load_packed
    path = recipe.export_packed(hparams, summary, "kws",
                                metadata={"classes": json.dumps(classes)})
    deployed = copy.deepcopy(recipe.module_container(hparams["modules"])).cpu()
    info = load_packed(deployed, path)
    recipe.restore_normalizer_stats(deployed, json.loads(info.metadata["normalizers"]))
    return path, deployed


@torch.no_grad()
def outcomes_of(hparams, model, test_set) -> list:
    """``[(speaker id, right)]`` per test item for the recipe's modules ``model`` (a
    ModuleDict), run outside the Brain, on the CPU."""
    loader = sb.dataio.dataloader.make_dataloader(test_set, **hparams["test_dataloader_opts"])
    model.eval()
    out = []
    for batch in loader:
        wavs, lens = batch.sig
        feats = model["mean_var_norm"](hparams["compute_features"](wavs), lens)
        pred = model["classifier"](model["embedding_model"](feats)).squeeze(1).argmax(-1)
        labels = batch.command_encoded[0].view(-1)
        out += zip(batch.spk_id, (pred == labels).tolist())
    return out


def accuracy(outcomes) -> float:
    return round(100.0 * sum(right for _, right in outcomes) / max(len(outcomes), 1), 3)


def by_voice(outcomes: dict, voices: dict) -> dict:
    """accuracy_by_voice / accuracy_by_engine: {split: {name: %}}; no keys for a corpus
    without synthetic voices (as the ASR recipe's wer_by_voice / wer_by_engine)."""
    if not voices:
        return {}
    rates = {split: recipe.rates_by_voice([(spk, int(right), 1) for spk, right in rows], voices)
             for split, rows in outcomes.items()}
    return {f"accuracy_by_{kind}": {split: r[kind] for split, r in rates.items()}
            for kind in ("voice", "engine")}


def finish(hparams, brain, summary, classes, test_set, train_seconds, clock,
           other_set=None):
    packed, deployed = export_model(hparams, summary, classes)
    confusion = brain.confusion
    total = int(confusion.sum())
    test_accuracy = 100.0 * int(confusion.diag().sum()) / max(total, 1)
    outcomes = {"test": outcomes_of(hparams, deployed, test_set)}   # the file's
    if other_set is not None:
        outcomes["test_other"] = outcomes_of(hparams, deployed, other_set)
    voices = read_speakers(hparams["data_folder"])
    results = {
        "task": "kws",
        "arch": hparams["arch"],
        "experiment": hparams["experiment_name"],
        "bits": summary.bits if summary else 32,
        **recipe.parameter_counts(hparams["model"], summary),
        "packed_bytes": os.path.getsize(packed),
        "packed_file": os.path.basename(packed),
        "accuracy": round(test_accuracy, 3),
        "packed_accuracy": accuracy(outcomes["test"]),
        "test_items": total,
        # clips by a speech engine never used in training (the embedded corpus' festival
        # voices in simulated rooms with noise), run through the packed file
        "accuracy_other_engine": (accuracy(outcomes["test_other"])
                                  if other_set is not None else None),
        # per engine:voice and per engine of the embedded corpus (SPEAKERS.TXT), the file's
        **by_voice(outcomes, voices),
        "test_loss": round(float(brain.test_stats["loss"]), 5),
        "classes": classes,
        "confusion_matrix": confusion.tolist(),  # rows: true class, columns: predicted
        "per_class_accuracy": {
            c: round(100.0 * int(confusion[i, i]) / max(int(confusion[i].sum()), 1), 2)
            for i, c in enumerate(classes)},
        **brain.trained,                                # epochs, optimizer_steps
        "best_epoch": brain.hparams.epoch_counter.current,  # the checkpoint tested
        "train_seconds": round(train_seconds, 1),
        "total_seconds": clock.seconds(),
        "num_classes": hparams["num_classes"],
        "data_folder": os.path.abspath(hparams["data_folder"]),
    }
    if summary is not None:
        results["denseshift"] = hparams["denseshift"].to_dict()
    real = recipe.real_speech(hparams, packed)
    if real:
        results["real_speech"] = real
    path = recipe.write_results(hparams["output_folder"], results)
    logger.info("accuracy %.2f%% on %d test items; results in %s", test_accuracy, total,
                path)
    if other_set is not None:
        print(f"held-out engine accuracy {results['accuracy_other_engine']:.2f}% "
              f"({len(other_set)} items)")
    print(f"test accuracy {test_accuracy:.2f}% ({total} items), model file {packed} "
          f"({results['packed_bytes']:,} bytes), results {path}")


# ---------------------------------------------------------------------------

def user_errors(func):
    """Run ``func``; a data problem the user can fix (DataError) or an hparams error ends
    the run with one line (exit status 2)."""
    def call():
        try:
            return func()
        except DataError as err:
            raise recipe.HparamsError(str(err)) from err
    return recipe.exit_on_hparams_error(call)


def main():
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    hparams, resolved = user_errors(lambda: recipe.load_hparams(hparams_file, overrides))
    user_errors(lambda: check_hparams(hparams))
    user_errors(lambda: recipe.check_real_speech(hparams))
    if hparams["torch_threads"]:
        torch.set_num_threads(hparams["torch_threads"])
    sb.utils.distributed.ddp_init_group(run_opts)
    user_errors(lambda: check_data(hparams))
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    recipe.save_resolved_hparams(hparams["output_folder"], resolved)
    clock = recipe.WallClock()

    user_errors(lambda: run_on_main(prepare_speech_commands, kwargs={
        "data_folder": hparams["data_folder"], "save_folder": hparams["output_folder"],
        "words": hparams["words"], "num_classes": hparams["num_classes"],
        "percentage_unknown": hparams["percentage_unknown"],
        "percentage_silence": hparams["percentage_silence"],
        "skip_prep": hparams["skip_prep"], "strict": hparams["strict_audio"],
        "seed": hparams["seed"], "expected_sr": hparams["sample_rate"]}))
    classes = user_errors(lambda: read_classes(hparams))
    if hparams["apply_data_augmentation"]:
        user_errors(lambda: run_on_main(prepare_noise_csv, args=[hparams]))
        recipe.exit_on_hparams_error(lambda: run_on_main(write_source_csvs, args=[
            hparams["augmentation_folder"], hparams["rir_csv"], None]))
    datasets = dataio_prepare(hparams, classes)

    # DenseShift swaps the weights in before the Brain builds its optimizer.
    summary = user_errors(lambda: recipe.apply_denseshift(hparams["modules"], hparams))
    brain = KWS(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.diagnostics = recipe.EpochDiagnostics(hparams["model"] if summary else None)
    start = time.time()
    # (Brain adds keys to the loader options it is given: pass copies)
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"],
              train_loader_kwargs=dict(hparams["train_dataloader_opts"]),
              valid_loader_kwargs=dict(hparams["test_dataloader_opts"]))
    train_seconds = time.time() - start
    # (evaluate() restores the best checkpoint, counters included: read them first)
    brain.trained = {"epochs": hparams["epoch_counter"].current,
                     "optimizer_steps": brain.optimizer_step}
    brain.evaluate(datasets["test"], min_key="ErrorRate",
                   test_loader_kwargs=dict(hparams["test_dataloader_opts"]))
    if if_main_process():
        finish(hparams, brain, summary, classes, datasets["test"], train_seconds, clock,
               datasets.get("test_other"))
    recipe.end_distributed()


if __name__ == "__main__":
    main()
