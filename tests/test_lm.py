"""The word n-gram LM: a proper distribution in KenLM's hands, and one that fixes the
spelling a CTC model gets wrong when SpeechBrain's prefix beam search fuses it."""
import math

import kenlm
import pytest
import torch
from speechbrain.decoders.ctc import CTCPrefixBeamSearcher

from denseshift_speech.integrations.speechbrain import lm

SENTENCES = ["STOP THE MUSIC", "STOP THE RADIO", "PLAY THE MUSIC AGAIN", "OPEN THE WINDOWS",
             "STOP", "CALL MY MOTHER LATER", "PLAY ROCK AGAIN", "STOP THE MUSIC"]
VOCAB = sorted({w for s in SENTENCES for w in s.split()} | {lm.EOS, lm.UNK})


def _load(tmp_path, order):
    return kenlm.Model(lm.write_arpa(SENTENCES, str(tmp_path / f"{order}.arpa"), order))


def _next_word_mass(model, context):
    state = kenlm.State()
    model.BeginSentenceWrite(state)
    for word in context:
        out = kenlm.State()
        model.BaseScore(state, word, out)
        state = out
    return sum(10 ** model.BaseScore(state, w, kenlm.State()) for w in VOCAB)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("context", [[], ["STOP"], ["STOP", "THE"], ["PLAY", "THE", "MUSIC"],
                                     ["NEVER", "SEEN"], ["MUSIC", "STOP"]])
def test_every_context_sums_to_one(order, context, tmp_path):
    assert _next_word_mass(_load(tmp_path, order), context) == pytest.approx(1.0, abs=1e-5)


def test_seen_word_order_beats_a_shuffle(tmp_path):
    model = _load(tmp_path, 3)
    assert model.score("STOP THE MUSIC") > model.score("MUSIC THE STOP") + 1.0
    assert model.score("STOP THE RADIO") > model.score("STOP THE RADIOS")  # <unk>


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(lm.LMError, match="empty transcripts"):
        lm.estimate_arpa(["", "  "])
    with pytest.raises(lm.LMError, match="order must be 2..6, got 1"):
        lm.estimate_arpa(SENTENCES, order=1)
    assert not list(tmp_path.iterdir())


def test_fused_lm_corrects_an_acoustically_ambiguous_spelling(tmp_path):
    """Frames spell "STAP THE MUSIC" by a hair (A over O); the LM knows only STOP."""
    pieces = ["<blank>", "▁"] + list("ACDEGHIKLMNOPRSTUW")
    index = {p: i for i, p in enumerate(pieces)}
    frames = []
    for ch in "▁STAP▁THE▁MUSIC":
        row = torch.full((len(pieces),), 1e-4)
        row[index[ch]] = 1.0
        if ch == "A":
            row[index["O"]] = 0.8
        frames += [row, torch.full((len(pieces),), 1e-4).index_fill(0, torch.tensor(0), 1.0)]
    log_probs = torch.stack(frames).log_softmax(-1).unsqueeze(0)

    greedy = "".join(pieces[i] for i in log_probs[0].argmax(-1) if i != 0).replace("▁", " ")
    assert greedy.split() == ["STAP", "THE", "MUSIC"]
    searcher = CTCPrefixBeamSearcher(blank_index=0, vocab_list=pieces, beam_size=20,
                                     kenlm_model_path=lm.write_arpa(
                                         SENTENCES, str(tmp_path / "lm.arpa"), 3),
                                     alpha=0.5, beta=1.0, prune_history=False)
    assert searcher(log_probs)[0][0].text == "STOP THE MUSIC"
    assert math.isfinite(searcher(log_probs)[0][0].score)


def _manifest(path, sentences):
    import csv
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["ID", "wrd"])
        w.writeheader()
        w.writerows({"ID": str(i), "wrd": s} for i, s in enumerate(sentences))
    return str(path)


def test_recipe_lm_reads_the_transcripts_and_the_lm_text(tmp_path):
    """The recipes' LM: the training transcripts plus lm_text's lines (blank lines
    skipped), so a word or word pair only the text holds is known to it."""
    from denseshift_speech.integrations.speechbrain import recipe
    csv_file = _manifest(tmp_path / "train.csv", SENTENCES)
    text = tmp_path / "lm.txt"
    text.write_text("PLAY THE RADIO AGAIN\n\nCALL MY SISTER\n")
    both = kenlm.Model(_estimate(recipe, csv_file, tmp_path / "both.arpa", str(text)))
    alone = kenlm.Model(_estimate(recipe, csv_file, tmp_path / "alone.arpa", None))
    assert "SISTER" in both and "SISTER" not in alone
    assert "STOP" in both
    # a pair only the text holds gets more probability with it than without
    assert (both.score("PLAY THE RADIO", bos=True, eos=False)
            > alone.score("PLAY THE RADIO", bos=True, eos=False))


def _estimate(recipe, csv_file, path, text_file):
    recipe._estimate_lm(csv_file, str(path), 3, text_file)
    return str(path)


def test_lm_text_missing_or_too_large_is_one_clear_error(tmp_path, monkeypatch):
    from denseshift_speech.integrations.speechbrain import recipe
    hp = {"decoding": "beam_lm", "lm_arpa": None, "lm_text": str(tmp_path / "none.txt")}
    with pytest.raises(recipe.HparamsError, match="lm_text: no text file at"):
        recipe.check_lm_text(hp)
    text = tmp_path / "lm.txt"
    text.write_text("STOP THE MUSIC\n" * 100)
    recipe.check_lm_text(dict(hp, lm_text=str(text)))                  # fine
    recipe.check_lm_text(dict(hp, lm_text=None))                       # transcripts only
    recipe.check_lm_text(dict(hp, decoding="greedy"))                  # no LM at all
    recipe.check_lm_text(dict(hp, lm_arpa=str(text)))                  # an ARPA instead
    monkeypatch.setattr(recipe, "LM_TEXT_MAX_BYTES", 1000)
    with pytest.raises(recipe.HparamsError, match="more than the built-in n-gram estimator"):
        recipe.check_lm_text(dict(hp, lm_text=str(text)))
