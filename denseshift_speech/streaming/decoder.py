"""Chunk-by-chunk streaming decoding of a dynamic-chunk-trained conformer CTC model.

Pipeline per pushed piece of audio (mono float32 at the model's sample rate)::

    samples -> non-finite samples zeroed -> StreamingFrontEnd (Fbank with a causal dB
    floor -> global norm -> CNN front-end, recomputed over a small overlapping window so
    that every frame equals the same computation on the whole utterance) -> frames queued until a chunk of `chunk_size`
    encoder frames is ready -> TransformerASR.encode_streaming (SpeechBrain's streaming
    context: cached attention left context of `left_context_chunks` chunks and the
    dynamic-chunk-convolution left context) -> ctc_lin -> greedy CTC (argmax, collapse
    repeats across chunk boundaries, drop blanks).

Emitted tokens never change (a chunk's encoder output depends only on that chunk and its
left context), so every word but the last is final; the last word becomes final when
the next word starts or the stream ends.

:func:`decode_full` is the offline twin: the whole utterance through the same modules at
once, with the matching DynChunkTrainConfig attention/convolution mask (or none:
full context).  Streaming with (C, L) gives the same tokens as ``decode_full`` with
``DynChunkTrainConfig(C, L)``; the tests check it.

One deliberate difference from the recipe's offline features: SpeechBrain's Fbank floors
log-mels at (utterance max - 80 dB), which needs the whole utterance; streaming uses a
causal floor (see :class:`CausalFbank`).  ``decode_full(..., floor="utterance")`` is the
recipe's own offline decoding, used for the full-context WER.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time

import torch
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig
from speechbrain.utils.filter_analysis import stack_filter_properties

from .defaults import DEFAULT_CHUNK_SIZE, DEFAULT_LEFT_CONTEXT
from .model import StreamingModel


def _percentile(values, q):
    if not values:
        return 0.0
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


class CausalFbank:
    """The model's Fbank with a causal dB floor, computable chunk by chunk.

    SpeechBrain's Filterbank clips log-mel values at ``utterance max - top_db`` (80 dB):
    the floor depends on the loudest frame of the *whole* utterance, future included,
    which a stream cannot know.  Streaming uses instead, for fbank frame ``t``, the floor
    ``max(peak_db, max over frames <= t) - top_db``: equal to the training floor once the
    loudest frame has been heard, and seeded with ``peak_db`` so leading digital silence
    is floored near where training put it.  ``peak_db`` defaults to an estimate from the
    model's normalization statistics (max over mel bins of mean + std).
    """

    def __init__(self, model: StreamingModel, peak_db: float | None = None):
        fb = copy.deepcopy(model.compute_features)
        self.top_db = float(getattr(fb.compute_fbanks, "top_db", float("inf")))
        fb.compute_fbanks.top_db = float("inf")      # raw log-mels; the floor is applied here
        self.fbank = fb.eval()
        self.hop = int(fb.compute_STFT.hop_length)
        self.half_window = int(fb.compute_STFT.n_fft) // 2
        if peak_db is None:
            norm = model.normalize
            peak_db = float((norm.glob_mean + norm.glob_std).max()) \
                if getattr(norm, "glob_mean", None) is not None and torch.is_tensor(norm.glob_mean) \
                and norm.glob_mean.numel() else -float("inf")
        self.peak_db = float(peak_db)

    def raw(self, wav: torch.Tensor) -> torch.Tensor:
        return self.fbank(wav)

    def floor(self, x: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, (running - self.top_db).view(1, -1, 1))

    def full(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.raw(wav)
        running = torch.cummax(x[0].amax(-1).clamp(min=self.peak_db), 0).values
        return self.floor(x, running)


class StreamingFrontEnd:
    """Fbank -> global normalization -> CNN front-end, fed with audio pieces of any size.

    Each output frame ``k`` of the front-end is centred on sample ``k * stride`` and
    depends on samples within ``radius`` of it (SpeechBrain filter properties of
    Fbank + CNN).  A frame is emitted once the samples it depends on have all arrived,
    computed over a window that starts at a multiple of ``stride`` far enough to its
    left (or at the true start of the stream), so padding at window edges never reaches
    an emitted frame: the output equals :func:`frontend_full` frame for frame.  At
    :meth:`push` with ``final=True`` the stream's true end is known and the remaining
    frames are produced as the full computation pads them.  The dB floor is causal
    (see :class:`CausalFbank`); its running maximum is kept per fbank frame.
    """

    def __init__(self, model: StreamingModel, peak_db: float | None = None):
        self.model = model
        props = stack_filter_properties([model.compute_features, model.CNN])
        self.stride = int(props.stride)
        self.radius = int(props.window_size) // 2 + 1
        self.fbank = CausalFbank(model, peak_db)
        if self.stride % self.fbank.hop:
            raise ValueError(f"front-end stride {self.stride} is not a multiple of the fbank hop "
                             f"{self.fbank.hop}")
        self.reset()

    def reset(self):
        self.buf = torch.zeros(0)
        self.buf_start = 0       # global index of buf[0]
        self.n_total = 0         # samples received
        self.emitted = 0         # front-end frames emitted
        self.run_max = torch.zeros(0)   # running max (dB) of fbank frames [run_start, known)
        self.run_start = 0

    @property
    def known(self) -> int:
        return self.run_start + self.run_max.numel()

    def _window_start(self, k: int) -> int:
        s = max(0, k * self.stride - self.radius)
        return (s // self.stride) * self.stride

    def _features(self, wav: torch.Tensor, s: int, final: bool) -> torch.Tensor:
        fb = self.fbank
        x = fb.raw(wav)                                   # (1, Fw, n_mels)
        j0 = s // fb.hop
        known = self.known
        old = self.run_max[j0 - self.run_start:]          # frames already seen: recorded
        new_peaks = x[0, known - j0:].amax(-1)
        base = float(self.run_max[-1]) if self.run_max.numel() else fb.peak_db
        new = torch.cummax(new_peaks.clamp(min=base), 0).values if new_peaks.numel() else new_peaks
        running = torch.cat((old, new))
        # record the running max of fbank frames whose samples have all arrived
        exact = x.shape[1] if final else max(0, (self.n_total - fb.half_window) // fb.hop + 1 - j0)
        n_new = max(0, exact - (known - j0))
        self.run_max = torch.cat((self.run_max, new[:n_new]))
        return fb.floor(x, running)

    @torch.no_grad()
    def push(self, samples: torch.Tensor, final: bool = False) -> torch.Tensor:
        """Append samples; return newly exact frames as ``(1, n, features)``."""
        if samples.numel():
            self.buf = torch.cat((self.buf, samples.reshape(-1).float()))
            self.n_total += samples.numel()
        if final:
            if self.n_total == 0:
                return torch.zeros(1, 0, 0)
            k_end = None
        else:
            k_end = max(0, (self.n_total - self.radius) // self.stride + 1)
            if k_end <= self.emitted:
                return torch.zeros(1, 0, 0)
        s = self._window_start(self.emitted)
        wav = self.buf[s - self.buf_start:].unsqueeze(0)
        m = self.model
        feats = m.normalize(self._features(wav, s, final), torch.ones(1))
        out = m.CNN(feats)
        out = out.reshape(1, out.shape[1], -1)
        first = s // self.stride
        if k_end is None:
            k_end = first + out.shape[1]
        frames = out[:, self.emitted - first:k_end - first]
        self.emitted = max(self.emitted, k_end)
        keep = self._window_start(self.emitted)
        if keep > self.buf_start:
            self.buf = self.buf[keep - self.buf_start:]
            self.buf_start = keep
        keep_frames = keep // self.fbank.hop
        if keep_frames > self.run_start + 1:   # keep one frame before the window for the base
            drop = min(keep_frames - 1 - self.run_start, self.run_max.numel() - 1)
            if drop > 0:
                self.run_max = self.run_max[drop:]
                self.run_start += drop
        return frames


@dataclasses.dataclass
class Hypothesis:
    """The transcript so far: ``final_words`` never change; ``pending`` may still grow."""
    text: str
    final_words: list
    pending: str
    tokens: list
    is_final: bool
    audio_seconds: float     # audio consumed when this hypothesis was made

    def display(self) -> str:
        stable = " ".join(self.final_words)
        if self.is_final or not self.pending:
            return stable
        return f"{stable} [{self.pending}]" if stable else f"[{self.pending}]"


@dataclasses.dataclass
class StreamStats:
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    chunks: int = 0                       # encoder chunks run
    chunk_latencies: list = dataclasses.field(default_factory=list)  # seconds per fed piece
    nonfinite_samples: int = 0
    nonfinite_events: list = dataclasses.field(default_factory=list)  # (start second, count)
    # per segment (the whole stream without endpointing), seconds: from the start of speech
    # to the first partial, and from the end of speech to the final text (audio that had to
    # arrive, chunking and lookahead included, plus compute)
    first_partial_delays: list = dataclasses.field(default_factory=list)
    final_delays: list = dataclasses.field(default_factory=list)

    @property
    def rtf(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def latency_ms(self, q: float) -> float:
        return 1000.0 * _percentile(self.chunk_latencies, q)


@dataclasses.dataclass
class Endpointing:
    """When a segment of a long stream ends (seconds): after ``trailing_silence`` of blank
    CTC frames following speech, or once it is ``max_segment`` long.  At an endpoint the
    segment's text is finalized and the search state reset; the encoder keeps only its
    bounded left-context cache, so memory stays flat however long the stream."""
    trailing_silence: float = 0.8
    max_segment: float = 30.0

    def __post_init__(self):
        if not self.trailing_silence > 0 or not self.max_segment > 0:
            raise ValueError(f"endpointing needs positive trailing_silence and max_segment, got "
                             f"{self.trailing_silence} and {self.max_segment}")


class StreamingDecoder:
    """CTC streaming decoder over a :class:`StreamingModel`: greedy, or LM-fused prefix beam
    search when ``lm_search`` (a :class:`~.lm_search.StreamingLMSearch`) is given.

    >>> dec = StreamingDecoder(load_model("model.dsp"))        # doctest: +SKIP
    >>> for piece in pieces:                                    # doctest: +SKIP
    ...     hyp = dec.accept(piece)     # a Hypothesis when the text changed, else None
    >>> final = dec.finish()                                    # doctest: +SKIP

    ``chunk_size``: encoder frames per chunk (one frame = ``frame_seconds``, 40 ms for the
    recipes' CNN front-end); ``left_context_chunks``: chunks of attention left context.
    """

    def __init__(self, model: StreamingModel, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 left_context_chunks: int = DEFAULT_LEFT_CONTEXT, peak_db: float | None = None,
                 lm_search=None, endpoint: "Endpointing | None" = None):
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1 encoder frame, got {chunk_size}")
        if left_context_chunks is None or int(left_context_chunks) < 0:
            raise ValueError(f"left_context_chunks must be >= 0, got {left_context_chunks}")
        self.model = model
        self.chunk_size = int(chunk_size)
        self.left_context_chunks = int(left_context_chunks)
        self.config = DynChunkTrainConfig(self.chunk_size, self.left_context_chunks)
        self.frontend = StreamingFrontEnd(model, peak_db)
        # a StreamingLMSearch (lm_search.py): LM-fused prefix beam search over the chunks'
        # log-probabilities; None: greedy CTC
        self.lm_search = lm_search
        # endpointing (long audio): a segment ends after `endpoint.trailing_silence` seconds
        # of blank frames following speech, or at `endpoint.max_segment`; None: one segment
        self.endpoint = endpoint
        # labels that are not speech for endpointing: blank, and pieces that are only the
        # word-boundary marker (models emit a lone "▁" in silence)
        sp = model.tokenizer
        self._silent = {model.blank_index} | {
            i for i in range(sp.vocab_size()) if not sp.id_to_piece(i).replace("\u2581", "").strip()}
        self.reset()

    @property
    def frame_seconds(self) -> float:
        return self.frontend.stride / self.model.sample_rate

    @property
    def chunk_samples(self) -> int:
        """Audio samples per encoder chunk (the natural piece size to push)."""
        return self.frontend.stride * self.chunk_size

    @property
    def lookahead_samples(self) -> int:
        """Samples past a chunk's end its last frame needs (the front-end's right context)."""
        return max(0, self.frontend.radius - self.frontend.stride)

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_samples / self.model.sample_rate

    def reset(self):
        self.frontend.reset()
        self.context = self.model.Transformer.make_streaming_context(self.config)
        self.pending_frames = None
        self.labels = []          # per-frame argmax (for tests / alignment)
        self.stats = StreamStats()
        self._last_text = ""
        self.finished = False
        self.segments = []        # finalized segments: {"text", "start", "end"} (seconds)
        self.frame_index = 0      # encoder frames seen in the stream
        self._reset_segment()

    def _reset_segment(self):
        """Decoder state of one segment (the encoder's bounded left context carries on)."""
        self.prev_label = self.model.blank_index
        self.tokens = []
        self.seg_first = None     # frame index of the segment's first / last non-blank
        self.seg_last = None
        self.seg_start = self.frame_index
        self._partial_seen = False
        if self.lm_search is not None:
            self.lm_search.reset()

    # -- internals ---------------------------------------------------------------
    def _sanitize(self, samples) -> torch.Tensor:
        x = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        bad = ~torch.isfinite(x)
        if bad.any():
            n = int(bad.sum())
            start = self.frontend.n_total / self.model.sample_rate
            self.stats.nonfinite_samples += n
            self.stats.nonfinite_events.append((round(start, 3), n))
            x = x.masked_fill(bad, 0.0)
        return x

    @torch.no_grad()
    def _encode(self, frames: torch.Tensor):
        m = self.model
        self._consume(m.ctc_lin(m.Transformer.encode_streaming(frames, self.context)))

    def _consume(self, logits: torch.Tensor):
        """One encoded chunk's CTC logits (1, frames, vocab): labels, tokens, endpoints."""
        m = self.model
        self._chunk_t0, self._chunk_end = time.perf_counter(), self.frame_index + logits.shape[1]
        log_probs = torch.log_softmax(logits.float(), -1)[0] if self.lm_search is not None else None
        labels = logits.argmax(-1)[0].tolist()
        self.labels.extend(labels)
        fed = 0  # frames of this chunk already given to the LM search
        for i, lab in enumerate(labels):
            if lab != m.blank_index:
                if lab != self.prev_label:
                    self.tokens.append(lab)
                if lab not in self._silent:
                    self.seg_first = self.frame_index if self.seg_first is None else self.seg_first
                    self.seg_last = self.frame_index
            self.prev_label = lab
            self.frame_index += 1
            if self.endpoint is not None and self._at_endpoint():
                if log_probs is not None:
                    self.lm_search.step(log_probs[fed:i + 1])
                    fed = i + 1
                self._close_segment()
        if log_probs is not None:
            self.lm_search.step(log_probs[fed:])
        self.stats.chunks += 1

    def _at_endpoint(self) -> bool:
        """Trailing blank after speech, or a segment at its maximum length."""
        ep, fs = self.endpoint, self.frame_seconds
        if self.seg_last is None:
            return False
        if (self.frame_index - 1 - self.seg_last) * fs >= ep.trailing_silence:
            return True
        return (self.frame_index - self.seg_start) * fs >= ep.max_segment

    def _close_segment(self, final_at: float | None = None):
        """Finalize the segment.  ``final_at``: audio seconds (compute included) at which
        its text is final; default: when the current chunk's audio was complete."""
        hyp = self._hypothesis(final=True)
        fs = self.frame_seconds
        if self.seg_first is not None:
            if final_at is None:
                final_at = (self._chunk_end * fs + self.lookahead_samples / self.model.sample_rate
                            + time.perf_counter() - self._chunk_t0)
            self.stats.final_delays.append(max(0.0, final_at - (self.seg_last + 1) * fs))
            self.segments.append({"text": hyp.text, "start": round(self.seg_first * fs, 3),
                                  "end": round((self.seg_last + 1) * fs, 3)})
        self._reset_segment()

    def _queue(self, frames: torch.Tensor, final: bool):
        self._enqueue(frames)
        n = 0
        while (chunk := self._next_chunk(final)) is not None:
            self._encode(chunk)
            n += 1
        return n

    def _enqueue(self, frames: torch.Tensor):
        if frames.shape[1]:
            self.pending_frames = frames if self.pending_frames is None else \
                torch.cat((self.pending_frames, frames), 1)

    def _next_chunk(self, final: bool):
        """The next chunk to encode (taken off the queue), or None: a full chunk, or at the
        end of the stream whatever is left."""
        p = self.pending_frames
        if p is None or not (p.shape[1] >= self.chunk_size or (final and p.shape[1] > 0)):
            return None
        chunk, rest = p[:, :self.chunk_size], p[:, self.chunk_size:]
        self.pending_frames = rest if rest.shape[1] else None
        return chunk

    def _take(self, samples):
        """Sanitize ``samples`` and run them through the front-end; frames join the queue."""
        if self.finished:
            raise RuntimeError("stream already finished; call reset() to start a new one")
        x = self._sanitize(samples)
        self.stats.audio_seconds += x.numel() / self.model.sample_rate
        self._enqueue(self.frontend.push(x))

    def _take_final(self):
        """End of stream: flush the front-end into the queue."""
        tail = torch.zeros(0)
        if 0 < self.frontend.n_total < self.frontend.radius:
            # a stream shorter than one front-end window (~40 ms): zero-pad it so the CNN's
            # reflect padding has enough frames (the offline recipe would fail on it)
            tail = torch.zeros(self.frontend.radius - self.frontend.n_total)
        self._enqueue(self.frontend.push(tail, final=True))
        self.finished = True

    def _accepted(self, compute: float, n: int, latency: float | None = None):
        """After a piece: the hypothesis if it changed; ``compute`` seconds are this stream's
        share, ``latency`` what it waited (default ``compute``)."""
        hyp = self._hypothesis(final=False)
        latency = compute if latency is None else latency
        if hyp.text and not self._partial_seen and self.seg_first is not None:
            self._partial_seen = True
            now = self.frontend.n_total / self.model.sample_rate + latency
            self.stats.first_partial_delays.append(max(0.0, now - self.seg_first * self.frame_seconds))
        self.stats.compute_seconds += compute
        if n:
            self.stats.chunk_latencies.append(latency)
        if hyp.display() != self._last_text:
            self._last_text = hyp.display()
            return hyp
        return None

    def _finished(self, t0: float, n: int, compute: float | None = None):
        """After the last chunk (the flush started at ``t0``): the final hypothesis.
        ``compute``: this stream's share of the seconds (default: all since ``t0``)."""
        hyp = self._hypothesis(final=True)
        final_at = self.frontend.n_total / self.model.sample_rate + time.perf_counter() - t0
        if self.endpoint is not None:
            self._close_segment(final_at)  # the last segment (the returned hypothesis is its text)
        elif self.seg_last is not None:
            self.stats.final_delays.append(max(0.0, final_at - (self.seg_last + 1) * self.frame_seconds))
        dt = time.perf_counter() - t0
        self.stats.compute_seconds += dt if compute is None else compute
        if n:
            self.stats.chunk_latencies.append(dt)
        return hyp

    def _hypothesis(self, final: bool):
        if self.lm_search is not None:
            if final:
                words = self.lm_search.finish().split()
                stable, pending = words, ""
            else:
                text, stable = self.lm_search.partial()
                words = text.split()
                pending = " ".join(words[len(stable):])
        else:
            text = self.model.tokenizer.decode_ids(self.tokens) if self.tokens else ""
            words = text.split()
            if final or not words:
                stable, pending = words, ""
            else:
                stable, pending = words[:-1], words[-1]
        return Hypothesis(text=" ".join(words), final_words=stable, pending=pending,
                          tokens=list(self.tokens), is_final=final,
                          audio_seconds=self.frontend.n_total / self.model.sample_rate)

    # -- public ------------------------------------------------------------------
    @torch.no_grad()
    def accept(self, samples) -> Hypothesis | None:
        """Push mono float samples (any count); returns the hypothesis if it changed.

        Non-finite samples (NaN/inf) are replaced by zeros and counted in
        ``stats.nonfinite_*``, so a corrupt piece cannot poison later chunks.
        """
        t0 = time.perf_counter()
        self._take(samples)
        n = self._queue(torch.zeros(1, 0, 0), final=False)
        return self._accepted(time.perf_counter() - t0, n)

    @torch.no_grad()
    def finish(self) -> Hypothesis:
        """End of stream: flush the front-end and the last (possibly short) chunk."""
        t0 = time.perf_counter()
        self._take_final()
        n = self._queue(torch.zeros(1, 0, 0), final=True)
        return self._finished(t0, n)


@dataclasses.dataclass
class BatchStats:
    """What serving several streams at once cost: encoder calls, chunks they carried, and
    the compute (wall seconds of accept / finish) for the audio of all streams."""
    encoder_calls: int = 0
    chunks: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def throughput(self) -> float:
        """Seconds of audio decoded per second of compute (all streams together)."""
        return self.audio_seconds / self.compute_seconds if self.compute_seconds else 0.0

    @property
    def chunks_per_call(self) -> float:
        return self.chunks / self.encoder_calls if self.encoder_calls else 0.0


class StreamBatch:
    """Several independent streams served together: each stream keeps its own
    :class:`StreamingDecoder` (front-end, attention and convolution caches, CTC search,
    endpointing), and the chunks that are ready at the same time go through the encoder in
    one batched call (the packed linears see every stream's rows at once, so each weight
    tile is decoded once for all of them).  Streams whose caches differ in length (one
    that just started) are encoded in a group of their own until they catch up.  Each
    stream's tokens are those it would get alone (on the default int8 kernel path the
    encoder output is bit-identical; the tests check it).

    >>> batch = StreamBatch.create(load_model("model.dsp"), 4)          # doctest: +SKIP
    >>> hyps = batch.accept([piece_a, piece_b, None, piece_d])          # doctest: +SKIP
    >>> finals = batch.finish()          # {stream index: final Hypothesis}  # doctest: +SKIP

    ``batch.stats`` (:class:`BatchStats`) has the throughput; each decoder's ``stats`` its
    share of the compute and the latency it saw.
    """

    def __init__(self, decoders):
        decoders = list(decoders)
        if not decoders:
            raise ValueError("StreamBatch needs at least one StreamingDecoder")
        d0 = decoders[0]
        for d in decoders:
            if d.model is not d0.model or (d.chunk_size, d.left_context_chunks) != (
                    d0.chunk_size, d0.left_context_chunks):
                raise ValueError("the streams of a StreamBatch must share one model, chunk size "
                                 "and left context")
            if d.lm_search is not None and sum(e.lm_search is d.lm_search for e in decoders) > 1:
                raise ValueError("each stream needs its own LM search state")
        self.decoders = decoders
        self.model = d0.model
        self.stats = BatchStats()

    @classmethod
    def create(cls, model: StreamingModel, streams: int, chunk_size: int = DEFAULT_CHUNK_SIZE,
               left_context_chunks: int = DEFAULT_LEFT_CONTEXT, peak_db: float | None = None,
               lm_searches=None, endpoint: "Endpointing | None" = None) -> "StreamBatch":
        """``streams`` decoders of ``model`` (``lm_searches``: one search per stream, or None
        for greedy CTC)."""
        if int(streams) < 1:
            raise ValueError(f"streams must be >= 1, got {streams}")
        searches = list(lm_searches) if lm_searches is not None else [None] * int(streams)
        if len(searches) != int(streams):
            raise ValueError(f"{len(searches)} LM searches for {streams} streams")
        return cls([StreamingDecoder(model, chunk_size, left_context_chunks, peak_db, lm_search=s,
                                     endpoint=endpoint) for s in searches])

    def __len__(self):
        return len(self.decoders)

    def reset(self, index: int | None = None):
        """Start stream ``index`` (default: every stream) afresh."""
        for i in range(len(self)) if index is None else [index]:
            self.decoders[i].reset()

    @staticmethod
    def _key(d: StreamingDecoder, chunk: torch.Tensor):
        """Chunks batch together when their length and every cached context length agree."""
        size = lambda t: None if t is None else t.shape[-2]  # noqa: E731
        return (chunk.shape[1], tuple((size(c.mha_left_context), size(c.dcconv_left_context))
                                      for c in d.context.encoder_context.layers))

    def _encode_group(self, items):
        """Encode [(decoder, chunk)] of one key in one call; contexts split back after."""
        if len(items) == 1:
            d, chunk = items[0]
            d._encode(chunk)
            return
        m, d0 = self.model, items[0][0]
        ctx = m.Transformer.make_streaming_context(d0.config)
        attrs = ("mha_left_context", "dcconv_left_context")
        for li, layer in enumerate(ctx.encoder_context.layers):
            for a in attrs:
                parts = [getattr(d.context.encoder_context.layers[li], a) for d, _ in items]
                setattr(layer, a, None if parts[0] is None else torch.cat(parts, 0))
        logits = m.ctc_lin(m.Transformer.encode_streaming(torch.cat([c for _, c in items], 0), ctx))
        for j, (d, _) in enumerate(items):
            for li, layer in enumerate(ctx.encoder_context.layers):
                for a in attrs:
                    v = getattr(layer, a)
                    setattr(d.context.encoder_context.layers[li], a, None if v is None else v[j:j + 1])
            d._consume(logits[j:j + 1])

    def _run(self, active, final: bool) -> dict:
        """Encode every ready chunk of the ``active`` streams, batched; chunks per stream."""
        counts = {i: 0 for i in active}
        while True:
            groups = {}
            for i in active:
                d = self.decoders[i]
                chunk = d._next_chunk(final)
                if chunk is not None:
                    groups.setdefault(self._key(d, chunk), []).append((i, d, chunk))
                    counts[i] += 1
            if not groups:
                return counts
            for items in groups.values():
                self._encode_group([(d, c) for _, d, c in items])
                self.stats.encoder_calls += 1
                self.stats.chunks += len(items)

    @torch.no_grad()
    def accept(self, pieces) -> list:
        """One piece of samples per stream (None: nothing for that stream this time); returns
        per stream the hypothesis if it changed, else None."""
        pieces = list(pieces)
        if len(pieces) != len(self):
            raise ValueError(f"{len(pieces)} pieces for {len(self)} streams")
        t0 = time.perf_counter()
        active = [i for i, p in enumerate(pieces) if p is not None]
        for i in active:
            before = self.decoders[i].stats.audio_seconds
            self.decoders[i]._take(pieces[i])
            self.stats.audio_seconds += self.decoders[i].stats.audio_seconds - before
        counts = self._run(active, final=False)
        dt = time.perf_counter() - t0
        self.stats.compute_seconds += dt
        share = dt / max(len(active), 1)
        return [self.decoders[i]._accepted(share, counts[i], latency=dt) if i in counts else None
                for i in range(len(self))]

    @torch.no_grad()
    def finish(self, which=None) -> dict:
        """End the streams ``which`` (default: every one not yet finished), their last
        chunks batched; ``{stream index: final Hypothesis}``."""
        which = [i for i in range(len(self)) if not self.decoders[i].finished] if which is None \
            else list(which)
        t0 = time.perf_counter()
        for i in which:
            self.decoders[i]._take_final()
        counts = self._run(which, final=True)
        dt = time.perf_counter() - t0
        self.stats.compute_seconds += dt
        share = dt / max(len(which), 1)
        return {i: self.decoders[i]._finished(t0, counts[i], share) for i in which}


@torch.no_grad()
def frontend_full(model: StreamingModel, wav, floor: str = "causal",
                  peak_db: float | None = None) -> torch.Tensor:
    """The front-end over the whole utterance at once: ``(1, frames, features)``.

    ``floor="causal"``: the streaming dB floor (:class:`CausalFbank`), so streaming and
    this give the same frames; ``floor="utterance"``: the recipe's own Fbank (floor from
    the whole utterance's maximum), as in training and the recipe's offline test.
    """
    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(1, -1)
    if floor == "causal":
        feats = CausalFbank(model, peak_db).full(wav)
    elif floor == "utterance":
        feats = model.compute_features(wav)
    else:
        raise ValueError(f"floor must be 'causal' or 'utterance', got {floor!r}")
    out = model.CNN(model.normalize(feats, torch.ones(1)))
    return out.reshape(1, out.shape[1], -1)


@torch.no_grad()
def decode_full(model: StreamingModel, wav, chunk_size: int | None = None,
                left_context_chunks: int | None = None, floor: str = "causal",
                peak_db: float | None = None):
    """Whole-utterance greedy CTC: ``(tokens, per-frame labels, logits)``.

    ``chunk_size=None``: full context (the recipe's offline evaluation); otherwise the
    encoder runs with the DynChunkTrainConfig(chunk_size, left_context_chunks) mask, the
    offline equivalent of streaming with those settings.  ``floor``: see
    :func:`frontend_full` (``"utterance"`` + ``chunk_size=None`` is exactly the recipe's
    offline decoding).
    """
    config = None if chunk_size is None else DynChunkTrainConfig(int(chunk_size), left_context_chunks)
    src = frontend_full(model, wav, floor, peak_db)
    enc = model.Transformer.encode(src, torch.ones(1), dynchunktrain_config=config)
    logits = model.ctc_lin(enc)
    labels = logits.argmax(-1)[0].tolist()
    tokens, prev = [], model.blank_index
    for lab in labels:
        if lab != model.blank_index and lab != prev:
            tokens.append(lab)
        prev = lab
    return tokens, labels, logits
