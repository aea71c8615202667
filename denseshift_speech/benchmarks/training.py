"""Training-step benchmark: fp32 against DenseShift, and the fused parametrization against
the reference one (``denseshift-speech bench --training``).

One *training step* is what the conformer recipe does per batch, without data loading and
feature extraction: ``zero_grad``, the forward of the recipe's modules (SpeechBrain
``ConvolutionFrontEnd`` -> ``CTCTransformerASR.encode`` -> ``ctc_lin`` -> log-softmax, as
in hparams/conformer_fp.yaml, with its real-data dropout 0.1, full context), SpeechBrain's
CTC loss, backward and the optimizer step, on a batch of ``batch`` utterances of
``seconds`` of random features (10 ms frames) with random targets of 40 tokens per 3 s
(vocabulary 32).  Not included: SpeechBrain's gradient clipping, dynamic chunk training
and the learning-rate schedule.

Configurations, each in its own Python process (``python -m
denseshift_speech.benchmarks.training serve JSON``) so that its peak memory is its own; the
three processes of one geometry and optimizer step in turn, one step each per round
(:func:`bench`):

``fp32``          the float model; ``torch.optim.AdamW(lr 0.003, betas (0.9, 0.98), wd 0)``
``ds<b>-fused``   the same model quantized as hparams/conformer_ds.yaml does it
                  (``DenseShiftConfig(bits, scale channel, init low_variance, exclude
                  ["ctc_lin*", "*seq_lin*"], keep_first, not keep_last)`` on the modules
                  CNN / Transformer / ctc_lin) and ``core.optim.grouped(AdamW, latent_lr_scale
                  0.005)`` (the recipe's scale differs; a step's cost does not depend on
                  it); the weights through ``quant.fused_weight`` (the default)
``ds<b>-reference`` the same, through ``quant.reference_weight`` (the op-by-op math the
                  fused node replaced), to show the speed-up

each with the optimizer as torch builds it by default (``plain``: the per-tensor loop on
CPU) and/or with ``fused=True`` (one fused AdamW kernel per parameter group).

Step times are the median of ``steps`` steps after ``warmup`` steps (wall clock,
``time.perf_counter``), with the median of each phase (forward + loss, backward, optimizer).
Peak memory is the process's ``ru_maxrss`` (peak resident set, everything the process ever
held: the interpreter, torch, the model, the activations, gradients and optimizer state);
``rss_before_mib`` is the resident set just before the first step, so the difference is
what training adds.  The DenseShift and fp32 processes share the seed, so the two DenseShift
rows see the same latents, dropout masks and batch: their losses must agree (the fused
parametrization gives the reference's values and gradients).

Bytes per quantized weight are counted from the tensors themselves (``bytes_per_weight``):
latents (sign, thermometer levels, log2 alpha), their gradients, and the AdamW state kept
for them (``exp_avg``, ``exp_avg_sq``), over the number of quantized weights; for fp32 the
same quantities for those weights' float tensors.

Measured results: docs/results/2026-12-02-training-step.md.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from ..errors import UserError
from .harness import command_line, machine_info, parse_threads, write_json

#: Geometries (SpeechBrain conformer + the recipes' CNN front end; vocabulary 32 as the
#: recipes' default). "tiny" is for tests.
GEOMETRIES = {
    "demo": dict(n_mels=40, d_model=96, nhead=4, num_encoder_layers=4, d_ffn=384, kernel_size=15),
    "conformer-small": dict(n_mels=80, d_model=144, nhead=4, num_encoder_layers=12, d_ffn=1024,
                            kernel_size=31),
    "tiny": dict(n_mels=16, d_model=16, nhead=2, num_encoder_layers=1, d_ffn=32, kernel_size=3),
}
DEFAULT_GEOMETRIES = ("demo", "conformer-small")
CNN_CHANNELS = (64, 32)
VOCAB = 32
TOKENS_PER_S = 40 / 3  # target tokens per second (40 in 3 s: about one per character)
FRAME_S = 0.01         # feature hop (Fbank, hop 160 at 16 kHz)
LR, BETAS, WEIGHT_DECAY, LATENT_LR_SCALE = 0.003, (0.9, 0.98), 0.0, 0.005
ADAMW = ("plain", "fused")
DEFAULT_JSON = "results/bench_training.json"
FP32 = "fp32"


def config_name(bits: int | None, impl: str | None = None) -> str:
    return FP32 if bits is None else f"ds{bits}-{impl}"


# ------------------------------------------------------------------ the model ----------------

def build_model(geometry: str, seed: int = 0):
    """(``nn.ModuleDict`` of CNN, Transformer, ctc_lin as the recipe names them, n_mels)."""
    import torch
    from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
    from speechbrain.nnet.linear import Linear

    from ..integrations.speechbrain.models import CTCTransformerASR

    g = dict(GEOMETRIES[geometry])
    n_mels = g.pop("n_mels")
    torch.manual_seed(seed)
    cnn = ConvolutionFrontEnd(input_shape=[8, 10, n_mels], num_blocks=2, num_layers_per_block=1,
                              out_channels=list(CNN_CHANNELS), kernel_sizes=[3, 3],
                              strides=[2, 2], residuals=[False, False])
    transformer = CTCTransformerASR(
        input_size=n_mels // 4 * CNN_CHANNELS[-1], tgt_vocab=VOCAB, num_decoder_layers=0,
        dropout=0.1, activation=torch.nn.GELU, encoder_module="conformer",
        attention_type="RelPosMHAXL", normalize_before=True, causal=False, **g)
    ctc_lin = Linear(input_size=g["d_model"], n_neurons=VOCAB)
    return torch.nn.ModuleDict({"CNN": cnn, "Transformer": transformer, "ctc_lin": ctc_lin}), n_mels


def denseshift_config(bits: int):
    """What hparams/conformer_ds.yaml builds (its defaults, ``ds_bits`` = ``bits``)."""
    from ..core.convert import DenseShiftConfig

    return DenseShiftConfig(bits=bits, scale="channel", pow2_scale=False, init="low_variance",
                            exclude=["ctc_lin*", "*seq_lin*"], keep_first=True, keep_last=False)


def make_batch(n_mels: int, batch: int, seconds: float, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    frames = int(round(seconds / FRAME_S)) + 1
    feats = torch.randn(batch, frames, n_mels, generator=gen)
    tokens = torch.randint(1, VOCAB, (batch, max(1, round(seconds * TOKENS_PER_S))), generator=gen)
    return feats, torch.ones(batch), tokens, torch.ones(batch)


def forward_loss(model, feats, wav_lens, tokens, token_lens):
    import torch
    from speechbrain.nnet.losses import ctc_loss

    encoded = model["Transformer"](model["CNN"](feats), wav_len=wav_lens)
    log_probs = torch.log_softmax(model["ctc_lin"](encoded), dim=-1)
    return ctc_loss(log_probs, tokens, wav_lens, token_lens, blank_index=0, reduction="mean")


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError):
        return float("nan")


def _peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024 if sys.platform != "darwin" else kib / 2 ** 20


def bytes_per_weight(model, optimizer) -> dict:
    """Bytes per quantized weight of its latents, their gradients and their AdamW state;
    for a float model, the same for the float weights that :func:`denseshift_config` would
    quantize (``latents`` is then the weight itself)."""
    from ..core.nn import iter_denseshift, latents

    def nbytes(t):
        return 0 if t is None else t.numel() * t.element_size()

    def state_bytes(p):
        st = optimizer.state.get(p, {})
        return sum(nbytes(st[k]) for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if k in st)

    n = lat = grad = state = 0
    for _, module, pname in iter_denseshift(model):
        n += latents(module, pname)[0].numel()   # the sign latent: one per weight
        for p in latents(module, pname):
            lat += nbytes(p)
            grad += nbytes(p.grad)
            state += state_bytes(p)
    if n == 0:  # fp32: the weights DenseShift quantizes are every >= 2-d weight but ctc_lin
        # and the first conv; counted the same way for the comparison
        ds = denseshift_config(3)
        from ..core.convert import plan
        chosen, _ = plan(model, ds)
        for _, module, pname in chosen:
            p = getattr(module, pname)
            n += p.numel()
            lat += nbytes(p)
            grad += nbytes(p.grad)
            state += state_bytes(p)
    n = max(n, 1)
    return {"weights": n, "latents": lat / n, "grads": grad / n, "adamw_state": state / n,
            "latents_plus_adamw": (lat + state) / n}


class Trainer:
    """One configuration (see the module docstring), built in this process: ``step()`` runs
    and times one training step, ``row()`` reports them."""

    def __init__(self, spec: dict):
        import torch

        from ..core.convert import quantize_
        from ..core.nn import set_impl_
        from ..core.optim import grouped

        self.spec = spec
        torch.set_num_threads(spec["threads"])
        self.model, n_mels = build_model(spec["geometry"], seed=spec["seed"])
        self.model.train()
        kwargs = dict(lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
        if spec["adamw"] == "fused":
            kwargs["fused"] = True
        self.quantized = 0
        if spec["bits"] is None:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), **kwargs)
        else:
            summary = quantize_(self.model, denseshift_config(spec["bits"]))
            self.quantized = summary.quantized_weights
            set_impl_(self.model, spec["impl"])
            self.optimizer = grouped(self.model.parameters(), torch.optim.AdamW,
                                     latent_lr_scale=LATENT_LR_SCALE, **kwargs)
        self.batch = make_batch(n_mels, spec["batch"], spec["seconds"], seed=spec["seed"])
        torch.manual_seed(spec["seed"] + 1)  # dropout masks: the same in every configuration
        self.rss_before = _rss_mib()
        self.losses, self.phases = [], []

    def step(self) -> dict:
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = forward_loss(self.model, *self.batch)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.optimizer.step()
        t3 = time.perf_counter()
        self.losses.append(float(loss.detach()))
        self.phases.append((t1 - t0, t2 - t1, t3 - t2, t3 - t0))
        return {"loss": self.losses[-1], "step_ms": (t3 - t0) * 1e3}

    def row(self) -> dict:
        spec = self.spec
        timed = self.phases[spec["warmup"]:]
        med = [statistics.median(p[i] for p in timed) * 1e3 for i in range(4)]
        return {"geometry": spec["geometry"], "config": config_name(spec["bits"], spec.get("impl")),
                "adamw": spec["adamw"], "bits": spec["bits"], "impl": spec.get("impl"),
                "threads": spec["threads"], "batch": spec["batch"], "seconds": spec["seconds"],
                "frames": int(self.batch[0].shape[1]), "steps": spec["steps"],
                "warmup": spec["warmup"], "step_ms": med[3],
                "step_ms_all": [p[3] * 1e3 for p in timed],
                "phases_ms": {"forward": med[0], "backward": med[1], "optimizer": med[2]},
                "losses": self.losses, "params": sum(p.numel() for p in self.model.parameters()),
                "quantized_weights": self.quantized, "rss_before_mib": self.rss_before,
                "peak_rss_mib": _peak_rss_mib(),
                "bytes_per_weight": bytes_per_weight(self.model, self.optimizer)}


def worker(spec: dict) -> dict:
    """Build and run one configuration in this process; returns its row."""
    trainer = Trainer(spec)
    for _ in range(spec["warmup"] + spec["steps"]):
        trainer.step()
    return trainer.row()


def serve(spec: dict, inp=None, out=None):
    """The worker process: build, print ``{"ready": ...}``, then one JSON line per command
    read from ``inp``: ``step`` (one timed step) or ``row`` (the row; then exit)."""
    inp, out = inp or sys.stdin, out or sys.stdout
    trainer = Trainer(spec)
    print(json.dumps({"ready": True, "rss_before_mib": trainer.rss_before}), file=out, flush=True)
    for line in inp:
        command = line.strip()
        if command == "step":
            print(json.dumps(trainer.step()), file=out, flush=True)
        elif command == "row":
            print(json.dumps(trainer.row()), file=out, flush=True)
            return
        else:
            raise ValueError(f"unknown command {command!r}")


class _Process:
    """A ``serve`` worker in its own Python process (its peak memory is its own)."""

    def __init__(self, spec: dict):
        import tempfile

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.spec = spec
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "denseshift_speech.benchmarks.training", "serve",
             json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, env=env)
        self.read()  # {"ready": ...}

    def read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self.stderr.seek(0)
                raise RuntimeError(f"training benchmark worker {self.spec} failed (exit "
                                   f"{self.proc.returncode}):\n{self.stderr.read()[-3000:]}")
            if line.startswith("{"):  # (anything else a library printed is skipped)
                return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()


def bench(geometries=DEFAULT_GEOMETRIES, adamw=ADAMW, bits: int = 3, threads: int = 2,
          steps: int = 5, warmup: int = 2, batch: int = 8, seconds: float = 3.0, seed: int = 0,
          log=print) -> list:
    """Every configuration for every geometry and AdamW variant; one row each.

    The three configurations (fp32, fused, reference) of one geometry and AdamW variant
    live in their own processes at the same time and step in turn (one step each, round
    after round), so that a change of load on a shared machine falls on all of them alike;
    only one of them runs at a time.
    """
    rows = []
    for geometry, opt in [(g, o) for g in geometries for o in adamw]:
        t0 = time.perf_counter()
        specs = [dict(geometry=geometry, adamw=opt, bits=b, impl=impl, threads=threads,
                      steps=steps, warmup=warmup, batch=batch, seconds=seconds, seed=seed)
                 for b, impl in ((None, None), (bits, "fused"), (bits, "reference"))]
        procs = []
        try:
            for spec in specs:
                procs.append(_Process(spec))
            for _ in range(warmup + steps):
                for proc in procs:
                    proc.ask("step")
            for proc in procs:
                row = proc.ask("row")
                rows.append(row)
                log(f"# {geometry:<16} adamw {row['adamw']:<6} {row['config']:<14} step "
                    f"{row['step_ms']:8.1f} ms  peak RSS {row['peak_rss_mib']:7.0f} MiB")
        finally:
            for proc in procs:
                proc.close()
        log(f"# {geometry}, adamw {opt}: {len(specs)} configurations, {warmup} + {steps} "
            f"steps each, {time.perf_counter() - t0:.0f} s")
    return rows


def summarize(rows: list) -> list:
    """One record per (geometry, AdamW variant): the three configurations side by side."""
    out = []
    keys = []
    for r in rows:
        if (r["geometry"], r["adamw"]) not in keys:
            keys.append((r["geometry"], r["adamw"]))
    for geometry, opt in keys:
        by = {r["config"]: r for r in rows if r["geometry"] == geometry and r["adamw"] == opt}
        fp = by.get(FP32)
        fused = next((r for c, r in by.items() if c.endswith("-fused")), None)
        ref = next((r for c, r in by.items() if c.endswith("-reference")), None)
        rec = {"geometry": geometry, "adamw": opt,
               "step_ms": {c: r["step_ms"] for c, r in by.items()},
               "peak_rss_mib": {c: r["peak_rss_mib"] for c, r in by.items()},
               "train_rss_mib": {c: r["peak_rss_mib"] - r["rss_before_mib"] for c, r in by.items()},
               "phases_ms": {c: r["phases_ms"] for c, r in by.items()}}
        if fp and fused:
            rec["fused_over_fp32"] = fused["step_ms"] / fp["step_ms"]
        if fp and ref:
            rec["reference_over_fp32"] = ref["step_ms"] / fp["step_ms"]
        if fused and ref:
            rec["reference_over_fused"] = ref["step_ms"] / fused["step_ms"]
            rec["same_losses"] = _same_losses(fused["losses"], ref["losses"])
        if fused:
            rec["bytes_per_weight"] = {"denseshift": fused["bytes_per_weight"]}
            if fp:
                rec["bytes_per_weight"]["fp32"] = fp["bytes_per_weight"]
        out.append(rec)
    return out


def _same_losses(a, b, rtol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rtol * max(abs(x), abs(y), 1e-30)
                                    for x, y in zip(a, b))


def tables(rows: list, summary: list) -> list:
    if not rows:
        return []
    r0 = rows[0]
    bits = next((r["bits"] for r in rows if r["bits"]), None)
    fused, ref = config_name(bits, "fused"), config_name(bits, "reference")
    lines = [f"## training step: batch {r0['batch']} x {r0['seconds']:g} s ({r0['frames']} "
             f"frames), {r0['threads']} thread(s), median of {r0['steps']} steps after "
             f"{r0['warmup']} warm-up; ms per step",
             f"{'geometry':<16}  {'adamw':<6}{FP32:>9}{fused:>14}{ref:>18}"
             f"{'fused/fp32':>12}{'ref/fp32':>10}{'ref/fused':>11}  same losses"]
    for s in summary:
        st = s["step_ms"]
        lines.append(f"{s['geometry']:<16}  {s['adamw']:<6}{_f(st.get(FP32), '9.1f')}"
                     f"{_f(st.get(fused), '14.1f')}{_f(st.get(ref), '18.1f')}"
                     f"{_f(s.get('fused_over_fp32'), '12.2f')}"
                     f"{_f(s.get('reference_over_fp32'), '10.2f')}"
                     f"{_f(s.get('reference_over_fused'), '11.2f')}  "
                     f"{ {True: 'yes', False: 'NO', None: '-'}[s.get('same_losses')] }")
    lines += ["", "## phases, ms (forward + CTC loss / backward / optimizer step)",
              f"{'geometry':<16}  {'adamw':<6}{FP32:>20}{fused:>22}{ref:>22}"]
    for s in summary:
        ph = s["phases_ms"]
        cells = "".join(f"{_phases(ph.get(c)):>{w}}"
                        for c, w in ((FP32, 20), (fused, 22), (ref, 22)))
        lines.append(f"{s['geometry']:<16}  {s['adamw']:<6}{cells}")
    lines += ["", "## peak memory, MiB: ru_maxrss of the configuration's own process (in "
              "parentheses: peak minus the resident set before the first step)",
              f"{'geometry':<16}  {'adamw':<6}{FP32:>16}{fused:>18}{ref:>18}"]
    for s in summary:
        cells = "".join(
            f"{_mem(s['peak_rss_mib'].get(c), s['train_rss_mib'].get(c)):>{w}}"
            for c, w in ((FP32, 16), (fused, 18), (ref, 18)))
        lines.append(f"{s['geometry']:<16}  {s['adamw']:<6}{cells}")
    lines += ["", "## bytes per quantized weight (counted from the tensors after the steps)"]
    seen = set()
    for s in summary:
        bpw = s.get("bytes_per_weight")
        if not bpw or s["geometry"] in seen:
            continue
        seen.add(s["geometry"])
        d = bpw["denseshift"]
        line = (f"{s['geometry']:<16}  {fused}: latents {d['latents']:.1f} + AdamW state "
                f"{d['adamw_state']:.1f} = {d['latents_plus_adamw']:.1f} B (+ grads "
                f"{d['grads']:.1f})")
        if "fp32" in bpw:
            f = bpw["fp32"]
            line += (f";  fp32: weight {f['latents']:.1f} + AdamW state {f['adamw_state']:.1f} "
                     f"= {f['latents_plus_adamw']:.1f} B (+ grad {f['grads']:.1f})")
        lines.append(line + f";  {d['weights']:,} weights")
    return lines


def _f(v, fmt):
    width = int(fmt.split(".")[0])
    return f"{'-':>{width}}" if v is None else format(v, fmt)


def _phases(p):
    return "-" if p is None else f"{p['forward']:.0f}/{p['backward']:.0f}/{p['optimizer']:.0f}"


def _mem(peak, train):
    return "-" if peak is None else f"{peak:.0f} ({train:+.0f})"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("worker", "serve"):
        print("usage: python -m denseshift_speech.benchmarks.training {worker,serve} JSON",
              file=sys.stderr)
        return 2
    spec = json.loads(argv[1])
    if argv[0] == "serve":
        serve(spec)
    else:
        print(json.dumps(worker(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run(args) -> int:
    """``bench --training``: the module docstring's step times, tables and JSON."""
    t_start = time.perf_counter()
    counts = parse_threads(args.threads, default=(2,))
    if len(counts) != 1:
        raise UserError(f"--training times one thread count at a time, got --threads "
                        f"{args.threads}")
    threads = counts[0]
    if args.quick:
        geometries, adamw, batch, seconds, steps, warmup = ["tiny"], ["plain"], 2, 1.0, 2, 1
    else:
        geometries = args.geometry or list(DEFAULT_GEOMETRIES)
        adamw = list(ADAMW) if args.adamw == "both" else [args.adamw]
        batch, seconds, steps, warmup = args.batch, args.seconds, args.steps, args.warmup
    if steps < 1 or warmup < 0 or batch < 1 or not seconds > 0:
        raise UserError("--steps and --batch must be >= 1, --warmup >= 0, --seconds > 0")
    info = machine_info()
    print(f"# {info['cpu']} ({info['cores']} cores, load average {info['loadavg']}), "
          f"torch {info['torch']}, {threads} thread(s); training step of fp32 and "
          f"{args.bits}-bit DenseShift, one process per configuration")
    rows = bench(geometries, adamw, bits=args.bits, threads=threads, steps=steps,
                    warmup=warmup, batch=batch, seconds=seconds)
    summary = summarize(rows)
    print()
    print("\n".join(tables(rows, summary)))
    elapsed = time.perf_counter() - t_start
    info["loadavg_end"] = machine_info()["loadavg"]
    out = {"command": command_line(), "mode": "training",
           "options": {k: v for k, v in vars(args).items() if k != "func"},
           "machine": info, "quick": args.quick, "bits": args.bits, "threads": threads,
           "steps": steps, "warmup": warmup, "batch": batch, "seconds": seconds,
           "geometries": geometries, "adamw": adamw, "summary": summary, "rows": rows,
           "elapsed_s": elapsed}
    write_json(DEFAULT_JSON if args.json is None else args.json, out, elapsed)
    return 0
