"""How ``v1_linear_conv.dsp`` (a packed file in format version 1) was made.

The file was written by ``save_packed`` at format version 1 (commit 02dc993, before
format version 2 stored the codes as one dense bit stream).  It is committed so that the
tests can check that files written by older releases still load and compute the same
output (``tests/test_packing.py::test_version1_fixture_still_loads``).  Running this
script again with a newer denseshift-speech writes a file in the *current* format, so do
not regenerate the committed fixture; ``--out`` writes elsewhere.

Model: ``nn.Sequential(Linear(20, 70), ReLU, Linear(70, 16), Conv1d(4, 6, 3, padding=1))``
with DenseShift weights of 3, 4 and 2 bits (one per layer: rows of K = 20, 70 and 12
codes, none a multiple of 64), packed with ``pack_(model, path="exact")``.  Input: the
fixed tensor of :func:`fixed_input`, shape (2, 4, 20) (the Linear layers act on the last
dimension, the Conv1d reads it as 4 channels of length 16).  ``v1_linear_conv.json``
holds the output of the packed model on it (shape (2, 6, 16), row-major floats).
"""
from __future__ import annotations

import argparse
import json
import os

import torch
from torch import nn
from torch.nn.utils import parametrize

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "v1_linear_conv.dsp")
EXPECTED = os.path.join(HERE, "v1_linear_conv.json")
BITS = (3, 4, 2)


def architecture() -> nn.Sequential:
    """The float architecture the fixture loads into (weights come from the file)."""
    return nn.Sequential(nn.Linear(20, 70), nn.ReLU(), nn.Linear(70, 16),
                         nn.Conv1d(4, 6, 3, padding=1)).eval()


def fixed_input() -> torch.Tensor:
    """A deterministic input that needs no random generator: shape (2, 4, 20)."""
    return torch.sin(torch.arange(2 * 4 * 20, dtype=torch.float32) * 0.37).reshape(2, 4, 20)


def build_packed():
    from denseshift_speech import pack_
    from denseshift_speech.core.nn import DenseShiftWeight

    torch.manual_seed(0)
    model = architecture()
    for layer, bits in zip((model[0], model[2], model[3]), BITS):
        parametrize.register_parametrization(layer, "weight",
                                             DenseShiftWeight(bits=bits, init="from_float"))
    model.eval()
    pack_(model, path="exact")
    return model


def main(argv=None):
    from denseshift_speech.packed import fileformat, save_packed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=FIXTURE, help="packed file to write")
    ap.add_argument("--expected", default=EXPECTED, help="JSON of the expected output")
    args = ap.parse_args(argv)
    model = build_packed()
    save_packed(model, args.out, metadata={"fixture": "v1_linear_conv"})
    with torch.no_grad():
        y = model(fixed_input())
    with open(args.expected, "w") as f:
        json.dump({"format_version": fileformat.FORMAT_VERSION, "bits": list(BITS),
                   "input": "torch.sin(torch.arange(160) * 0.37).reshape(2, 4, 20)",
                   "shape": list(y.shape), "output": [float(v) for v in y.reshape(-1)]}, f)
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, format version "
          f"{fileformat.FORMAT_VERSION}) and {args.expected}")


if __name__ == "__main__":
    main()
