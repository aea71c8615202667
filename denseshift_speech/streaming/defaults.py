"""Streaming defaults (no heavy imports: the CLI parser reads them for --help).

Chosen from the latency/WER sweep on the synthetic test split
(``denseshift-speech stream MODEL --manifest test-clean.csv --sweep ...``): 16 encoder
frames (0.64 s) per chunk, 4 chunks (2.56 s) of attention left context.
"""
DEFAULT_CHUNK_SIZE = 16
DEFAULT_LEFT_CONTEXT = 4

# Keyword spotting (streaming.spotter, `denseshift-speech spot`): the one-second window
# moves by 100 ms; posteriors are averaged over 300 ms of hops; a keyword fires at a
# smoothed posterior of 0.7; then that keyword does not fire again for 1.5 s, longer than
# a keyword stays in view (the window plus the smoothing span), as TensorFlow's
# RecognizeCommands suppresses a repeated command.
DEFAULT_SPOT_HOP = 0.1
DEFAULT_SPOT_SMOOTH = 0.3
DEFAULT_SPOT_THRESHOLD = 0.7
DEFAULT_SPOT_REFRACTORY = 1.5
