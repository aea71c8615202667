"""The SentencePiece tokenizer of the ASR recipes, trained on the training transcripts."""
from __future__ import annotations

import os

from .hparams import HparamsError


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
