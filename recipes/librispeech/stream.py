#!/usr/bin/env python3
"""Stream audio through a trained recipe's exported model, chunk by chunk, on a CPU.

    python recipes/librispeech/stream.py results/conformer_ds3                # 5 test-clean utts
    python recipes/librispeech/stream.py results/conformer_ds3 --limit 10 --chunk-size 8
    python recipes/librispeech/stream.py results/conformer_ds3 --wav utt.flac --json

The first argument is the recipe's output folder (or its model.dsp).  Without --wav,
--manifest or --mic, the folder's test-clean.csv is streamed with hypothesis beside
reference.  Every other option is `denseshift-speech stream`'s (see --help there).
"""
import os
import sys

from denseshift_speech.cli import main


def wrap(argv):
    if not argv or argv[0].startswith("-"):
        return ["stream", *argv]
    target, rest = argv[0], argv[1:]
    folder = target if os.path.isdir(target) else os.path.dirname(target)
    model = os.path.join(target, "model.dsp") if os.path.isdir(target) else target
    if not any(a in rest for a in ("--wav", "--manifest", "--mic", "-h", "--help")):
        rest = ["--manifest", os.path.join(folder, "test-clean.csv"), *rest]
    return ["stream", model, *rest]


if __name__ == "__main__":
    sys.exit(main(wrap(sys.argv[1:])))
