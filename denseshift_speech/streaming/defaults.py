"""Streaming defaults (no heavy imports: the CLI parser reads them for --help).

Chosen from the latency/WER sweep on the synthetic test split
(``denseshift-speech stream MODEL --manifest test-clean.csv --sweep ...``): 16 encoder
frames (0.64 s) per chunk, 4 chunks (2.56 s) of attention left context.
"""
DEFAULT_CHUNK_SIZE = 16
DEFAULT_LEFT_CONTEXT = 4
