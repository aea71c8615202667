"""The text grammar of the synthetic ASR corpus: determinism, output format, vocabulary
size and spread, sentence lengths, sentences restricted to a training vocabulary."""
import collections
import random
import re

import pytest

from denseshift_speech.data import grammar

WORD = re.compile(r"^[A-Z']+$")


def draw(seed, n):
    rng = random.Random(seed)
    return [grammar.sentence(rng) for _ in range(n)]


def test_deterministic_for_a_seed():
    assert draw(42, 300) == draw(42, 300)
    assert draw(42, 300) != draw(43, 300)
    # a pure function of the given rng: the global random state neither matters nor moves
    random.seed(1)
    state = random.getstate()
    a = draw("x", 100)
    assert random.getstate() == state
    random.seed(2)
    assert draw("x", 100) == a


def test_words_format_and_vocabulary():
    vocab = grammar.vocabulary()
    assert isinstance(vocab, frozenset)
    assert all(WORD.match(w) for w in vocab)
    for s in draw(0, 5000):
        assert s == " ".join(s.split()), s          # single spaces, no padding
        words = s.split()
        assert all(WORD.match(w) for w in words), s  # A-Z and apostrophe only
        assert set(words) <= vocab, (s, set(words) - vocab)


def test_vocabulary_size():
    assert len(grammar.vocabulary()) >= 1000


def test_vocabulary_is_reached():
    """vocabulary() is computed from the lists, not sampled; sampling reaches most of it."""
    seen = {w for s in draw(5, 20000) for w in s.split()}
    assert len(seen) >= 0.97 * len(grammar.vocabulary())


def test_word_frequencies_not_too_skewed():
    counts = collections.Counter(w for s in draw(7, 3000) for w in s.split())
    assert len(counts) >= 1000
    assert sum(c >= 3 for c in counts.values()) >= 900


def test_sentence_lengths():
    lo, hi = grammar.length_bounds()
    assert 3 <= lo and hi <= 20
    lengths = [len(s.split()) for s in draw(3, 3000)]
    assert min(lengths) >= 3 and max(lengths) <= 20
    assert 7 <= sum(lengths) / len(lengths) <= 10


def test_helpers_keep_their_format():
    rng = random.Random(9)
    for _ in range(200):
        for text in (grammar.clock(rng), grammar.date(rng), grammar.when(rng),
                     grammar.number(rng, 1, 999)):
            assert all(WORD.match(w) for w in text.split()) and text == " ".join(text.split())
    assert grammar.spell(342) == "THREE HUNDRED AND FORTY TWO"
    assert grammar.spell(0) == "ZERO"
    with pytest.raises(ValueError):
        grammar.spell(1000)


def test_notation_errors():
    for bad in ("[A|B", "A]", "{nope}", "{n:5:1}", "lower case", "A-B"):
        with pytest.raises(ValueError):
            grammar._parse(bad)


def test_sentence_within_a_small_vocabulary():
    """Held-out sentences from a tiny training set's words, without a rejection loop."""
    train = draw("train", 12)
    words = {w for s in train for w in s.split()}
    rng = random.Random("held-out")
    out = [grammar.sentence_within(rng, words) for _ in range(50)]
    assert all(set(s.split()) <= words for s in out)
    assert len(set(out)) > 10
    rng = random.Random("held-out")
    assert [grammar.sentence_within(rng, words) for _ in range(50)] == out
    with pytest.raises(ValueError):
        grammar.sentence_within(random.Random(0), {"HELLO"})
