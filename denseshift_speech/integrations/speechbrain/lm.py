"""Word n-gram language models for CTC beam search, written as ARPA files.

SpeechBrain's CTC beam searchers (``speechbrain.decoders.ctc``) fuse a KenLM model with
the acoustic scores; KenLM reads ARPA, but the tool that estimates one (``lmplz``) is not
on pip.  :func:`estimate_arpa` fills that gap for transcript-sized corpora: interpolated
Kneser-Ney (one discount per order, Ney's estimate), written in ARPA backoff form, so a
real corpus LM (LibriSpeech's own ``3-gram.arpa``, say) drops in at the same place.

    >>> write_arpa(["STOP THE MUSIC", "STOP THE RADIO"], "lm.arpa", order=3)
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable

from ...fsio import atomic_open

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG0 = -99.0  # ARPA's log10(0)


class LMError(ValueError):
    """Unusable language-model input."""


def estimate_arpa(sentences: Iterable[str], order: int = 3) -> str:
    """ARPA text of an interpolated Kneser-Ney ``order``-gram model of ``sentences``
    (whitespace-tokenized, case kept).  Lower orders use continuation counts, except
    for n-grams that start with ``<s>``; unigrams interpolate with a uniform over the
    vocabulary plus ``<unk>``."""
    if not 2 <= order <= 6:  # KenLM reads bigrams and up
        raise LMError(f"n-gram order must be 2..6, got {order}")
    counts = _raw_counts(sentences, order)
    if not counts[1]:
        raise LMError("no words to estimate a language model from (empty transcripts?)")
    kn = _kn_counts(counts, order)
    probs, bows = _interpolate(kn, order)
    return _format(probs, bows, order)


def write_arpa(sentences: Iterable[str], path: str, order: int = 3) -> str:
    """Estimate (:func:`estimate_arpa`) and write ``path`` atomically; returns ``path``."""
    text = estimate_arpa(sentences, order)
    with atomic_open(path, encoding="utf-8") as fh:
        fh.write(text)
    return path


def _raw_counts(sentences, order):
    counts = {n: Counter() for n in range(1, order + 1)}
    for line in sentences:
        words = [BOS] + line.split() + [EOS]
        if len(words) == 2:
            continue
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                gram = tuple(words[i:i + n])
                if gram != (BOS,) * n:
                    counts[n][gram] += 1
    return counts


def _kn_counts(counts, order):
    """Highest order: raw counts; lower orders: distinct left contexts (continuation
    counts), raw counts for n-grams that open a sentence."""
    kn = {order: counts[order]}
    for n in range(1, order):
        cont = Counter()
        for gram in counts[n + 1]:
            cont[gram[1:]] += 1
        # every other n-gram has a left neighbour, so its continuation count is >= 1
        kn[n] = Counter({g: (c if g[0] == BOS else cont[g]) for g, c in counts[n].items()})
    return kn


def _discount(counts: Counter) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
    return min(max(d, 0.1), 0.9)


def _interpolate(kn, order):
    """Interpolated probabilities of every seen n-gram and the backoff weight (gamma)
    of every context; ARPA's backoff form then reproduces the interpolated model."""
    vocab = sorted({g[0] for g in kn[1]} - {BOS} | {UNK})
    probs, bows = {}, {}
    for n in range(1, order + 1):
        d = _discount(kn[n])
        totals, types = defaultdict(float), defaultdict(int)
        for g, c in kn[n].items():
            totals[g[:-1]] += c
            types[g[:-1]] += 1
        gamma = {h: d * types[h] / totals[h] for h in totals}
        level = {}
        for g, c in kn[n].items():
            lower = 1.0 / len(vocab) if n == 1 else _lookup(g[1:], probs, bows)
            level[g] = max(c - d, 0.0) / totals[g[:-1]] + gamma[g[:-1]] * lower
        if n == 1:  # words never seen get the uniform share; <s> is never predicted
            for w in vocab:
                level.setdefault((w,), gamma[()] / len(vocab))
            level[(BOS,)] = 0.0
        probs.update(level)
        bows.update({h: g for h, g in gamma.items() if h})
    return probs, bows


def _lookup(gram, probs, bows):
    """p(gram[-1] | gram[:-1]) under the orders estimated so far, backing off."""
    if gram in probs or len(gram) == 1:
        return probs.get(gram, probs[(UNK,)])
    return bows.get(gram[:-1], 1.0) * _lookup(gram[1:], probs, bows)


def _format(probs, bows, order):
    lines = ["\\data\\"]
    by_order = defaultdict(list)
    for g in probs:
        by_order[len(g)].append(g)
    for n in range(1, order + 1):
        lines.append(f"ngram {n}={len(by_order[n])}")
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for g in sorted(by_order[n]):
            p = probs[g]
            lp = math.log10(p) if p > 0 else LOG0
            entry = f"{lp:.6f}\t{' '.join(g)}"
            if n < order and g in bows:
                entry += f"\t{math.log10(bows[g]):.6f}"
            elif n < order:
                entry += "\t0"
            lines.append(entry)
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)
