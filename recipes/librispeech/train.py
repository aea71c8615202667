#!/usr/bin/env python3
"""Conformer / CRDNN CTC ASR on LibriSpeech (or its embedded synthetic twin), full
precision or DenseShift, chosen by the hparams file.  Optionally joint CTC/attention:
--num_decoder_layers=N (conformer, Transformer decoder) or --attention_decoder=True
(CRDNN, attentional GRU decoder); see the hparams files' "attention decoder" section.

    python recipes/librispeech/train.py hparams/conformer_ds.yaml [--key=value ...]
    torchrun --nproc_per_node=2 recipes/librispeech/train.py hparams/conformer_ds.yaml

Writes to <output_folder>: checkpoints (save/), wer_<split>.txt, results.json, the packed
model (model.dsp) and the resolved hparams.
"""
import itertools
import os
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from denseshift_speech.integrations.speechbrain import recipe
from denseshift_speech.data import prepare_librispeech, read_speakers, synthesize_librispeech
from denseshift_speech.integrations.speechbrain.augment import write_source_csvs
from denseshift_speech.integrations.speechbrain.hparams import update_resolved_hparams


class ASR(sb.Brain):
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        if stage == sb.Stage.TRAIN and self.hparams.apply_data_augmentation:
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
        feats = self.hparams.compute_features(wavs)
        if stage == sb.Stage.TRAIN and self.hparams.warp_features:
            feats = self.hparams.vocal_tract_warp(feats)
        feats = self.modules.normalize(feats, wav_lens, epoch=self.hparams.epoch_counter.current)
        if stage == sb.Stage.TRAIN and self.hparams.augment_features:
            feats = self.hparams.freq_drop(self.hparams.time_drop(feats))
        if not self.attention:
            encoded = self.encode(feats, wav_lens, stage)
            return self.hparams.log_softmax(self.modules.ctc_lin(encoded)), wav_lens
        # Joint CTC/attention: (p_ctc, wav_lens, p_seq, encoder output for the search).
        encoded, seq_logits = self.encode(feats, wav_lens, stage, batch.tokens_bos[0])
        return (self.hparams.log_softmax(self.modules.ctc_lin(encoded)), wav_lens,
                self.hparams.log_softmax(seq_logits), encoded)

    def encode(self, feats, wav_lens, stage, tokens_bos=None):
        """The encoder output; with ``tokens_bos``, (encoder output, decoder logits)."""
        if self.hparams.arch == "crdnn":
            encoded = self.modules.CRDNN(feats)
            if tokens_bos is None:
                return encoded
            return encoded, self.modules.decoder(encoded, tokens_bos, wav_lens)
        chunking = self.hparams.dynchunktrain_config_sampler(stage)
        return self.modules.Transformer(self.modules.CNN(feats), tokens_bos, wav_len=wav_lens,
                                        dynchunktrain_config=chunking)

    def compute_objectives(self, predictions, batch, stage):
        p_ctc, wav_lens, *attention = predictions
        tokens, tokens_lens = batch.tokens
        loss = self.hparams.ctc_cost(p_ctc, tokens, wav_lens, tokens_lens)
        if attention:
            p_seq, encoded = attention
            tokens_eos, tokens_eos_lens = batch.tokens_eos
            loss_seq = self.hparams.seq_cost(p_seq, tokens_eos, length=tokens_eos_lens)
            loss = self.hparams.ctc_weight * loss + (1 - self.hparams.ctc_weight) * loss_seq
        if stage != sb.Stage.TRAIN:
            refs = [w.split() for w in batch.wrd]
            greedy = sb.decoders.ctc_greedy_decode(p_ctc, wav_lens, self.hparams.blank_index)
            words = [self.tokenizer.sp.decode_ids(h).split() for h in greedy]
            self.greedy_wer_metric.append(batch.id, words, refs)
            if stage == sb.Stage.TEST and self.searcher is not None:
                words = [hyp[0].text.split() for hyp in self.searcher(p_ctc, wav_lens)]
            if stage == sb.Stage.TEST and attention:
                # Weights computed once per batch, not at every decoder step.
                with torch.nn.utils.parametrize.cached():
                    hyps, _, _, _ = self.attention_searcher(attention[1].detach(), wav_lens)
                words = [self.tokenizer.sp.decode_ids(h).split() for h in hyps]
            self.wer_metric.append(batch.id, words, refs)
            self.cer_metric.append(batch.id, words, refs)
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_annealing(self.optimizer)

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_computer()
            self.greedy_wer_metric = self.hparams.error_rate_computer()
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
            self.test_results[self.split] = {
                "WER": stats["WER"], "CER": stats["CER"],
                "WER_greedy": self.greedy_wer_metric.summarize("error_rate"),
                **self.by_voice()}

    def by_voice(self) -> dict:
        """WER_by_voice / WER_by_engine of the test split just decoded (synthetic corpus)."""
        rates = recipe.rates_by_voice(
            [(str(sc["key"]).split("-")[0], sc["num_edits"], sc["num_ref_tokens"])
             for sc in self.wer_metric.scores], getattr(self, "voices", {}))
        return {"WER_by_voice": rates["voice"], "WER_by_engine": rates["engine"]}


def check_data(hparams):
    """The corpus in data_folder, synthesized when missing (synth_train_engines; festival
    for test-other; synth_lm_sentences of LM text), the lists of its rooms and noises for
    augmentation, and the LM text it may hold."""
    n_eval = hparams["synth_eval_utterances"]
    recipe.ensure_data(hparams, "LibriSpeech", synthesize_librispeech,
                       train_utts=hparams["synth_train_utterances"], dev_utts=n_eval,
                       train_speakers=hparams["synth_train_speakers"],
                       test_utts=n_eval, test_other_utts=n_eval,
                       train_engines=tuple(hparams["synth_train_engines"]),
                       engine_share=hparams["synth_engine_share"],
                       vocabulary_size=hparams["synth_vocabulary_size"],
                       lm_sentences=hparams["synth_lm_sentences"],
                       device_share=hparams["synth_device_share"])
    if hparams["apply_data_augmentation"]:
        run_on_main(write_source_csvs, args=[hparams["augmentation_folder"],
                                             hparams["rir_csv"], hparams["noise_csv"]])
    recipe.check_lm_text(hparams)


def test_searcher(hparams, tokenizer, **weights):
    """CTC prefix beam search fused with the word n-gram LM, or None (greedy decoding).
    ``weights``: ``alpha`` (lm_weight) and ``beta`` (word_bonus) instead of the hparams'."""
    lm_path = recipe.exit_on_hparams_error(lambda: recipe.language_model(hparams))
    if lm_path is None:
        return None
    pieces = [tokenizer.sp.id_to_piece(i) for i in range(tokenizer.sp.vocab_size())]
    return hparams["test_searcher"](vocab_list=pieces, kenlm_model_path=lm_path, **weights)


def tune_lm(asr, valid, hparams, tokenizer):
    """Choose lm_weight and word_bonus on the dev split: the best checkpoint's CTC outputs
    on it, decoded with every pair of ``lm_weight_grid`` x ``word_bonus_grid``; the pair
    with the lowest WER (ties: the smaller weights) becomes the test splits' searcher and
    is written to the resolved hparams (so the packed model streams with it).  Returns
    what to record in results.json, or None when off (empty grids, or no LM search)."""
    grid = list(itertools.product(hparams["lm_weight_grid"] or [hparams["lm_weight"]],
                                  hparams["word_bonus_grid"] or [hparams["word_bonus"]]))
    if asr.searcher is None or len(grid) < 2:
        return None
    asr.on_evaluate_start(min_key="WER")
    asr.modules.eval()
    outputs = []
    with torch.no_grad():
        for batch in asr.make_dataloader(valid, sb.Stage.VALID, **hparams["valid_dataloader_opts"]):
            p_ctc, wav_lens = asr.compute_forward(batch, sb.Stage.VALID)[:2]
            outputs.append((batch.id, p_ctc, wav_lens, [w.split() for w in batch.wrd]))
    wers, best = {}, None
    for pair in grid:
        searcher = test_searcher(hparams, tokenizer, alpha=pair[0], beta=pair[1])
        metric = hparams["error_rate_computer"]()
        for ids, p_ctc, wav_lens, refs in outputs:
            metric.append(ids, [hyp[0].text.split() for hyp in searcher(p_ctc, wav_lens)], refs)
        wers[pair] = metric.summarize("error_rate")
        if best is None or (wers[pair], pair) < (wers[best[0]], best[0]):
            best = (pair, searcher)  # kept with its LM loaded (two LMs in memory at most)
    (lm_weight, word_bonus), asr.searcher = best
    run_on_main(update_resolved_hparams, args=[hparams["output_folder"],
                                               {"lm_weight": lm_weight, "word_bonus": word_bonus}])
    return {"split": hparams["dev_splits"][0], "lm_weight": lm_weight, "word_bonus": word_bonus,
            "dev_wer": {f"{a}/{b}": wer for (a, b), wer in wers.items()}}


def attention_decoder(hparams):
    """Whether the optional attention decoder is on (conformer: num_decoder_layers > 0;
    CRDNN: attention_decoder: True), after checking its hparams."""
    if hparams["arch"] == "crdnn":
        on = hparams["attention_decoder"]
        if not isinstance(on, bool):
            raise recipe.HparamsError(f"attention_decoder must be True or False, got {on!r}")
    else:
        layers = hparams["num_decoder_layers"]
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
            raise recipe.HparamsError(f"num_decoder_layers must be an integer >= 0, got {layers!r}")
        on = layers > 0
    if on and not 0 <= hparams["ctc_weight"] < 1:
        raise recipe.HparamsError(f"ctc_weight must be in [0, 1) with a decoder (its loss "
                                  f"weighs 1 - ctc_weight), got {hparams['ctc_weight']!r}")
    return on


def dataio_prepare(hparams, tokenizer, attention=False):
    """Datasets with audio and token pipelines; the train set sorted by duration.  With
    ``attention``, also the decoder's input (bos + tokens) and target (tokens + eos)."""
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
    keys = ["id", "sig", "wrd", "tokens"]
    if attention:
        @sb.utils.data_pipeline.takes("tokens")
        @sb.utils.data_pipeline.provides("tokens_bos", "tokens_eos")
        def decoder_pipeline(tokens):
            yield torch.cat([torch.LongTensor([hparams["bos_index"]]), tokens])
            yield torch.cat([tokens, torch.LongTensor([hparams["eos_index"]])])

        sb.dataio.dataset.add_dynamic_item(datasets, decoder_pipeline)
        keys += ["tokens_bos", "tokens_eos"]
    sb.dataio.dataset.set_output_keys(datasets, keys)
    return train, valid, tests


def main():
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    hparams, resolved = recipe.exit_on_hparams_error(
        lambda: recipe.load_hparams(hparams_file, overrides))
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    recipe.save_resolved_hparams(hparams["output_folder"], resolved)
    clock = recipe.WallClock()

    recipe.exit_on_hparams_error(lambda: recipe.check_decoding(hparams))
    attention = recipe.exit_on_hparams_error(lambda: attention_decoder(hparams))
    recipe.exit_on_hparams_error(lambda: check_data(hparams))
    recipe.exit_on_hparams_error(lambda: recipe.check_real_speech(hparams))
    run_on_main(prepare_librispeech, kwargs={
        "data_folder": hparams["data_folder"], "save_folder": hparams["output_folder"],
        "tr_splits": hparams["train_splits"], "dev_splits": hparams["dev_splits"],
        "te_splits": hparams["test_splits"], "merge_lst": hparams["train_splits"],
        "merge_name": "train", "skip_prep": hparams["skip_prep"],
        "strict": hparams["strict_audio"]})
    tokenizer = recipe.train_tokenizer(hparams)
    train, valid, tests = dataio_prepare(hparams, tokenizer, attention)
    recipe.exit_on_hparams_error(
        lambda: recipe.set_training_steps(hparams["lr_annealing"], len(train), hparams))

    summary = recipe.exit_on_hparams_error(
        lambda: recipe.apply_denseshift(hparams["modules"], hparams))
    asr = ASR(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
              run_opts=run_opts, checkpointer=hparams["checkpointer"])
    asr.tokenizer = tokenizer
    # With a decoder, the test splits use joint CTC/attention beam search instead.
    asr.attention = attention
    asr.attention_searcher = hparams["attention_searcher"]() if attention else None
    asr.searcher = None if attention else test_searcher(hparams, tokenizer)
    asr.diagnostics = recipe.EpochDiagnostics(hparams["model"] if summary else None)
    asr.fit(hparams["epoch_counter"], train, valid,
            train_loader_kwargs=hparams["train_dataloader_opts"],
            valid_loader_kwargs=hparams["valid_dataloader_opts"])
    trained_epochs = hparams["epoch_counter"].current  # evaluate() restores the best one

    lm_tuning = tune_lm(asr, valid, hparams, tokenizer)
    asr.test_results = {}
    asr.voices = read_speakers(hparams["data_folder"])  # per engine:voice WER (synthetic)
    for split, dataset in tests.items():
        asr.split = split
        asr.evaluate(dataset, min_key="WER", test_loader_kwargs=hparams["test_dataloader_opts"])
    packed_paths = recipe.evaluate_packed_paths(asr, tests, hparams, summary)
    if if_main_process():
        metrics = {key.lower(): {s: r[key] for s, r in asr.test_results.items()}
                   for key in ("WER", "CER", "WER_greedy", "WER_by_voice", "WER_by_engine")}
        if not asr.voices:  # not a synthetic corpus: no SPEAKERS.TXT voices
            metrics.pop("wer_by_voice"), metrics.pop("wer_by_engine")
        if packed_paths:
            metrics["packed_paths"] = packed_paths
        metrics["decoding"] = "attention_ctc" if attention else hparams["decoding"]
        if lm_tuning:
            metrics["lm_tuning"] = lm_tuning
        metrics.update(epochs=trained_epochs, best_epoch=hparams["epoch_counter"].current)
        recipe.finish(hparams, "asr", metrics, summary, clock, tokenizer)
    recipe.end_distributed()


if __name__ == "__main__":
    main()
