#!/usr/bin/env python3
"""Conformer / CRDNN CTC ASR on LibriSpeech (or its embedded synthetic twin), full
precision or DenseShift, chosen by the hparams file.

    python recipes/librispeech/train.py hparams/conformer_ds.yaml [--key=value ...]
    torchrun --nproc_per_node=2 recipes/librispeech/train.py hparams/conformer_ds.yaml

Writes to <output_folder>: checkpoints (save/), wer_<split>.txt, results.json, the packed
model (model.dsp) and the resolved hparams.
"""
import os
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from denseshift_speech import recipe
from denseshift_speech.data import prepare_librispeech, synthesize_librispeech


class ASR(sb.Brain):
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        feats = self.modules.normalize(self.hparams.compute_features(wavs), wav_lens,
                                       epoch=self.hparams.epoch_counter.current)
        if stage == sb.Stage.TRAIN and self.hparams.augment_features:
            feats = self.hparams.freq_drop(self.hparams.time_drop(feats))
        encoded = self.encode(feats, wav_lens, stage)
        return self.hparams.log_softmax(self.modules.ctc_lin(encoded)), wav_lens

    def encode(self, feats, wav_lens, stage):
        if self.hparams.arch == "crdnn":
            return self.modules.CRDNN(feats)
        chunking = self.hparams.dynchunktrain_config_sampler(stage)
        return self.modules.Transformer(self.modules.CNN(feats), wav_lens,
                                        dynchunktrain_config=chunking)

    def compute_objectives(self, predictions, batch, stage):
        p_ctc, wav_lens = predictions
        tokens, tokens_lens = batch.tokens
        loss = self.hparams.ctc_cost(p_ctc, tokens, wav_lens, tokens_lens)
        if stage != sb.Stage.TRAIN:
            hyps = sb.decoders.ctc_greedy_decode(p_ctc, wav_lens, self.hparams.blank_index)
            words = [self.tokenizer.sp.decode_ids(h).split() for h in hyps]
            refs = [w.split() for w in batch.wrd]
            self.wer_metric.append(batch.id, words, refs)
            self.cer_metric.append(batch.id, words, refs)
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_annealing(self.optimizer)

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_computer()
            self.cer_metric = self.hparams.cer_computer()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = {**stats, **self.diagnostics()}
            return
        stats["WER"] = self.wer_metric.summarize("error_rate")
        stats["CER"] = self.cer_metric.summarize("error_rate")
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=stats)
            self.checkpointer.save_and_keep_only(meta={"WER": stats["WER"]}, min_keys=["WER"])
        else:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats)
            if if_main_process():
                with open(os.path.join(self.hparams.output_folder, f"wer_{self.split}.txt"), "w") as f:
                    self.wer_metric.write_stats(f)
            self.test_results[self.split] = {"WER": stats["WER"], "CER": stats["CER"]}


def check_data(hparams):
    """The corpus in data_folder, synthesized with espeak-ng when missing."""
    n_eval = hparams["synth_eval_utterances"]
    recipe.ensure_data(hparams, "LibriSpeech", synthesize_librispeech,
                       train_utts=hparams["synth_train_utterances"], dev_utts=n_eval,
                       test_utts=n_eval, test_other_utts=n_eval)


def dataio_prepare(hparams, tokenizer):
    """Datasets with audio and token pipelines; the train set sorted by duration."""
    csvs = {split: os.path.join(hparams["output_folder"], f"{split}.csv")
            for split in hparams["dev_splits"] + hparams["test_splits"]}
    train = sb.dataio.dataset.DynamicItemDataset.from_csv(hparams["train_csv"])
    train = train.filtered_sorted(sort_key="duration", reverse=hparams["sorting"] == "descending",
                                  select_n=hparams["max_train_utterances"])
    valid = sb.dataio.dataset.DynamicItemDataset.from_csv(hparams["valid_csv"])
    valid = valid.filtered_sorted(sort_key="duration")
    tests = {s: sb.dataio.dataset.DynamicItemDataset.from_csv(csvs[s]).filtered_sorted(
        sort_key="duration") for s in hparams["test_splits"]}
    datasets = [train, valid, *tests.values()]

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("wrd", "tokens")
    def text_pipeline(wrd):
        yield wrd
        yield torch.LongTensor(tokenizer.sp.encode_as_ids(wrd))

    sb.dataio.dataset.add_dynamic_item(datasets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(datasets, text_pipeline)
    sb.dataio.dataset.set_output_keys(datasets, ["id", "sig", "wrd", "tokens"])
    return train, valid, tests


def main():
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    hparams, resolved = recipe.exit_on_hparams_error(
        lambda: recipe.load_hparams(hparams_file, overrides))
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    recipe.save_resolved_hparams(hparams["output_folder"], resolved)
    clock = recipe.WallClock()

    recipe.exit_on_hparams_error(lambda: check_data(hparams))
    run_on_main(prepare_librispeech, kwargs={
        "data_folder": hparams["data_folder"], "save_folder": hparams["output_folder"],
        "tr_splits": hparams["train_splits"], "dev_splits": hparams["dev_splits"],
        "te_splits": hparams["test_splits"], "merge_lst": hparams["train_splits"],
        "merge_name": "train", "skip_prep": hparams["skip_prep"],
        "strict": hparams["strict_audio"]})
    tokenizer = recipe.train_tokenizer(hparams)
    train, valid, tests = dataio_prepare(hparams, tokenizer)

    summary = recipe.exit_on_hparams_error(
        lambda: recipe.apply_denseshift(hparams["modules"], hparams))
    asr = ASR(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
              run_opts=run_opts, checkpointer=hparams["checkpointer"])
    asr.tokenizer = tokenizer
    asr.diagnostics = recipe.EpochDiagnostics(hparams["model"] if summary else None)
    asr.fit(hparams["epoch_counter"], train, valid,
            train_loader_kwargs=hparams["train_dataloader_opts"],
            valid_loader_kwargs=hparams["valid_dataloader_opts"])

    asr.test_results = {}
    for split, dataset in tests.items():
        asr.split = split
        asr.evaluate(dataset, min_key="WER", test_loader_kwargs=hparams["test_dataloader_opts"])
    if if_main_process():
        metrics = {"wer": {s: r["WER"] for s, r in asr.test_results.items()},
                   "cer": {s: r["CER"] for s, r in asr.test_results.items()}}
        recipe.finish(hparams, "asr", metrics, summary, clock, tokenizer)
    recipe.end_distributed()


if __name__ == "__main__":
    main()
