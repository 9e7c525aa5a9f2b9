r"""Benchmark: rnnlab's unroll against flax.linen.RNN and PyTorch, forward and forward+backward.

Suites (``--suites``, comma-separated):

* ``speed``: for each cell and each (B, T, I, H) of the grid, the median time of
  the forward pass and of forward+backward (``loss = mean(h**2)``) for rnnlab's
  three paths (``scan``, ``fused``, ``recompute``), ``flax.linen.RNN`` with the matching cell
  (``SimpleCell`` / ``OptimizedLSTMCell`` / ``GRUCell``) and, when torch is
  installed, ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` on the CPU. All contenders of
  one shape run interleaved (A B C, C A B, ...: each round in a fresh seeded
  order) in this process, for at least ``--min_seconds`` each, so their ratios
  share the machine's state. Also: sequences/s, achieved GFLOP/s, the share of
  the roofline (one large matmul of the same FLOPs timed in the same run),
  compile time and XLA's peak memory estimate (``compiled.memory_analysis()``).
* ``vmap``: the runner's workload, ``M`` members' forward+backward vmapped in one
  program (``members_per_block``), per-member batch ``B``: rnnlab's two paths
  (``*``: what ``impl="auto"`` takes inside ``rnnlab.scan.vmapped(M)``) against ``flax.linen.RNN``
  vmapped the same way and one PyTorch module on the ``M * B`` batch (the same
  FLOPs, one weight set).
* ``remat``: an LSTM trained on long sequences with and without gradient
  checkpointing (``unroll(remat_chunk=~sqrt(T))``): memory and time against T.
* ``compile``: compile time of forward+backward against T (one ``lax.scan``: flat).
* ``diagnostics``: the cost of :func:`rnnlab.diagnostics.value_and_state_grads`
  (``||dL/dh_t||`` for every t from one backward pass) against
  ``jax.value_and_grad`` of the same loss, per cell and shape, interleaved; and
  the time of the other diagnostics on one sequence (Jacobian norms exact and
  by power iteration, Lyapunov spectrum, gate statistics).
* ``onednn``: why PyTorch's CPU LSTM leads: forward and backward apart, rnnlab's
  three paths against ``torch.nn.LSTM`` with its oneDNN kernel
  (``aten::mkldnn_rnn_layer``) and without it (``torch.backends.mkldnn`` off:
  ATen's per-step matmuls), and the bare recurrent matmul chain (T steps of
  ``h @ W_hh`` and a tanh, the floor of any scan) in jax and in torch.
* ``sweep``: N seeds of a small model's gradient step as N sequential calls, as
  one vmapped call, and as one vmapped call sharded over CPU devices
  (``--xla_force_host_platform_device_count``; each device count runs in a
  subprocess, since XLA fixes it at start-up).

Results go to ``--out`` as JSON and as a markdown table (stdout and ``--markdown``).

    python -m experiments.benchmark                     # the full grid (minutes)
    python -m experiments.benchmark --quick             # a smoke run (seconds)
    python -m experiments.benchmark --suites=speed --cells=lstm --reps=9
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import rnnlab
from rnnlab import diagnostics
from rnnlab import scan as scan_lib

SUITES = ("speed", "vmap", "remat", "compile", "diagnostics", "sweep", "onednn", "runner")
# "onednn" needs torch, "runner" launches the experiment runner: ask for them by name.
DEFAULT_SUITES = SUITES[:-2]
CELLS = {"elman": rnnlab.elman, "lstm": rnnlab.lstm, "gru": rnnlab.gru}
GATES = {"elman": 1, "lstm": 4, "gru": 3}
# (B, T, I, H): the research space the auto rule is fitted to (rnnlab.scan.FUSED_RULES):
# B x H densely at T=100, I=8; then T up to 1000, I from 1 to 64, and shapes between.
GRID = (
  *((B, 100, 8, H) for H in (16, 32, 64, 128, 256, 512) for B in (16, 64, 128)),
  *((32, T, 4, H) for H in (32, 128) for T in (300, 1000)),
  (32, 200, 1, 64),
  (32, 200, 64, 64),
  (64, 500, 2, 96),
  (24, 400, 16, 192),
)
# The runner's workload: members x (B, T, I, H), one vmapped program (members_per_block).
VMAP_GRID = tuple((M, (32, T, 2, H)) for M in (2, 8) for T in (40, 100) for H in (32, 64))
QUICK_GRID = ((4, 20, 3, 8),)
# The diagnostics suite: the two target shapes and one where `auto` takes the fused path.
DIAGNOSTICS_GRID = ((32, 1000, 2, 64), (64, 500, 8, 128), (32, 200, 16, 256))

_SUITES = flags.DEFINE_list(
  "suites", list(DEFAULT_SUITES), f"Which suites to run, from {SUITES} (default: all but runner)."
)
_ROUNDS = flags.DEFINE_integer(
  "runner_rounds", 3, "runner suite: alternating rounds per device count.", lower_bound=1
)
_CELLS = flags.DEFINE_list("cells", list(CELLS), f"Cells to time, from {tuple(CELLS)}.")
_SHAPES = flags.DEFINE_list(
  "shapes", [], "Override the grid: shapes as B:T:I:H, e.g. --shapes=32:1000:2:64,64:500:8:128."
)
_REPS = flags.DEFINE_integer("reps", 7, "Timed repetitions per contender (median).", lower_bound=1)
_MIN_SECONDS = flags.DEFINE_float(
  "min_seconds",
  0.5,
  "speed, vmap and onednn suites: time each contender for at least this long (more rounds than "
  "--reps at small shapes, up to 500).",
  lower_bound=0.0,
)
_QUICK = flags.DEFINE_bool("quick", False, "Tiny shapes and 2 reps: a smoke run for CI.")
_TORCH = flags.DEFINE_bool("torch", True, "Time PyTorch too when it is installed.")
_OUT = flags.DEFINE_string("out", "benchmark.json", "Where to write the JSON results.")
_MARKDOWN = flags.DEFINE_string("markdown", None, "Also write the markdown tables here.")
_SEEDS = flags.DEFINE_integer("sweep_seeds", 8, "Seeds N in the sweep suite.", lower_bound=1)
_DEVICES = flags.DEFINE_list(
  "sweep_devices", ["1", "2"], "CPU device counts for the sweep suite (one subprocess each)."
)
_SWEEP_WORKER = flags.DEFINE_integer("sweep_worker", 0, "Internal: run one sweep measurement.")


def timed_rounds(
  fns: dict[str, Callable[[], Any]], reps: int, min_seconds: float = 0.0, max_rounds: int = 500
) -> dict[str, list[float]]:
  """Seconds of each thunk per round, the thunks run interleaved (A B C, C A B, ...).

  One warm-up call each, then ``max(reps, min_seconds / t)`` rounds (at most
  ``max_rounds``), ``t`` the median thunk's warm-up time: a sub-millisecond
  shape gets hundreds of rounds, where a few would be noise. Each round runs the
  thunks in a fresh order (seeded): PyTorch's OpenMP threads keep spinning after
  a call, and in a fixed order the contender after torch paid for it (7-12 % at a
  vmapped Elman and LSTM block of 2 x (32, 40, 2, 32), 300 rounds).
  """
  warm = []
  for fn in fns.values():
    jax.block_until_ready(fn())
    start = time.perf_counter()
    jax.block_until_ready(fn())
    warm.append(time.perf_counter() - start)
  rounds = max(reps, min(max_rounds, math.ceil(min_seconds / max(float(np.median(warm)), 1e-6))))
  samples = {name: [] for name in fns}
  names, order = list(fns), np.random.default_rng(0)
  for _ in range(rounds):
    for i in order.permutation(len(names)):
      name, fn = names[i], fns[names[i]]
      start = time.perf_counter()
      jax.block_until_ready(fn())
      samples[name].append(time.perf_counter() - start)
  return samples


def timed(
  fns: dict[str, Callable[[], Any]], reps: int, min_seconds: float = 0.0
) -> dict[str, float]:
  """Median seconds of each thunk, run interleaved after one warm-up call each."""
  samples = timed_rounds(fns, reps, min_seconds)
  return {name: float(np.median(s)) for name, s in samples.items()}


def ratio_spread(peer: list[float], own: list[float]) -> tuple[float, float]:
  """Quartiles of the per-round ratio ``peer / own`` (interleaved rounds share the machine)."""
  ratios = np.asarray(peer) / np.asarray(own)
  return float(np.quantile(ratios, 0.25)), float(np.quantile(ratios, 0.75))


def compiled(fn, *args) -> tuple[Any, float, int]:
  """``(compiled fn, compile seconds, peak bytes)`` of ``jax.jit(fn)`` on ``args``."""
  start = time.perf_counter()
  lowered = jax.jit(fn).lower(*args)
  executable = lowered.compile()
  seconds = time.perf_counter() - start
  memory = executable.memory_analysis()
  peak = 0
  if memory is not None:
    peak = memory.temp_size_in_bytes + memory.output_size_in_bytes
  return executable, seconds, int(peak)


def flops(cell: str, B: int, T: int, I: int, H: int) -> float:
  """Matmul FLOPs of one forward pass: ``2 B T (I + H) G H``, G gates."""
  return 2.0 * B * T * (I + H) * GATES[cell] * H


def loss_of(outputs: jax.Array) -> jax.Array:
  return jnp.mean(outputs**2)


def rnnlab_fns(cell_name, impl, xs, key, hidden):
  cell = CELLS[cell_name](hidden)
  params = cell.init(key, xs.shape[-1])

  def forward(params, xs):
    return rnnlab.unroll(cell, params, xs, impl=impl)[0]

  return params, forward


def flax_fns(cell_name, xs, key, hidden):
  import flax.linen as nn

  flax_cell = {"elman": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[cell_name]
  module = nn.RNN(flax_cell(hidden))
  params = module.init(key, xs)
  return params, module.apply


def torch_step(cell_name, xs, hidden):
  """Forward and forward+backward thunks for the matching torch module, or None."""
  try:
    import torch
  except ImportError:
    return None
  torch.set_num_threads(os.cpu_count() or 1)
  module = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell_name](
    xs.shape[-1], hidden, batch_first=True
  )
  inputs = torch.tensor(np.asarray(xs))

  def forward():
    with torch.no_grad():
      return module(inputs)[0]

  def forward_backward():
    module.zero_grad()
    outputs, _ = module(inputs)
    (outputs**2).mean().backward()

  return forward, forward_backward


def speed_suite(shapes, cells, reps, use_torch, min_seconds=0.0) -> list[dict]:
  return [
    row
    for shape in shapes
    for cell in cells
    for row in time_shape(cell, shape, reps, use_torch, min_seconds)
  ]


def rnnlab_contenders(cell_name, xs, key, hidden) -> dict[str, tuple[Callable, Any]]:
  """``{"rnnlab-<impl>": (forward, params)}`` for the three unroll paths."""
  contenders = {}
  for impl in ("scan", "fused", "recompute"):
    params, forward = rnnlab_fns(cell_name, impl, xs, key, hidden)
    contenders[f"rnnlab-{impl}"] = (forward, params)
  return contenders


def compiled_passes(contenders, xs) -> tuple[dict, dict]:
  """Each contender's forward and forward+backward compiled: ``(thunks, (compile s, peak))``."""
  fns, info = {}, {}
  for name, (forward, params) in contenders.items():
    grad = jax.grad(lambda p, x, f=forward: loss_of(f(p, x)))
    for pass_name, fn in (("fwd", forward), ("fwd+bwd", grad)):
      executable, compile_s, peak = compiled(fn, params, xs)
      fns[(name, pass_name)] = partial(executable, params, xs)
      info[(name, pass_name)] = (compile_s, peak)
  return fns, info


def time_shape(cell_name, shape, reps, use_torch, min_seconds=0.0) -> list[dict]:
  """All contenders on one cell and shape, interleaved; one row per contender and pass."""
  B, T, I, H = shape
  key = jax.random.key(0)
  xs = jax.random.normal(key, (B, T, I), jnp.float32)
  contenders = rnnlab_contenders(cell_name, xs, key, H)
  params = contenders["rnnlab-scan"][1]
  auto = "rnnlab-" + scan_lib.auto_impl(CELLS[cell_name](H), params, B, T)
  flax_params, flax_apply = flax_fns(cell_name, xs, key, H)
  contenders["flax"] = (flax_apply, flax_params)
  fns, info = compiled_passes(contenders, xs)
  torch_fns = torch_step(cell_name, xs, H) if use_torch else None
  if torch_fns is not None:
    fns[("torch", "fwd")], fns[("torch", "fwd+bwd")] = torch_fns
  # The roofline: one matmul with the same FLOPs, (k B T, I + H) @ (I + H, G H).
  matmul = jax.jit(jnp.matmul)
  a = jax.random.normal(key, (3 * B * T, I + H), jnp.float32)
  w = jax.random.normal(key, (I + H, GATES[cell_name] * H), jnp.float32)
  fns[("roofline", "fwd+bwd")] = partial(matmul, a, w)
  fns[("roofline", "fwd")] = partial(matmul, a[: B * T], w)
  samples = timed_rounds(fns, reps, min_seconds)
  times = {k: float(np.median(s)) for k, s in samples.items()}
  rows = []
  for (name, pass_name), seconds in times.items():
    if name == "roofline":
      continue
    pass_flops = flops(cell_name, B, T, I, H) * (3 if pass_name == "fwd+bwd" else 1)
    torch_time = times.get(("torch", pass_name))
    own = samples[(name, pass_name)]
    torch_samples = samples.get(("torch", pass_name))
    compile_s, peak = info.get((name, pass_name), (None, None))
    rows.append(
      dict(
        cell=cell_name,
        B=B,
        T=T,
        I=I,
        H=H,
        impl=name,
        auto=name == auto,
        pass_=pass_name,
        ms=seconds * 1e3,
        seq_per_s=B / seconds,
        gflops=pass_flops / seconds / 1e9,
        roofline_share=times[("roofline", pass_name)] / seconds,
        vs_flax=times[("flax", pass_name)] / seconds,
        vs_torch=None if torch_time is None else torch_time / seconds,
        vs_flax_q=ratio_spread(samples[("flax", pass_name)], own),
        vs_torch_q=None if torch_samples is None else ratio_spread(torch_samples, own),
        rounds=len(own),
        compile_s=compile_s,
        peak_mib=None if peak is None else peak / 2**20,
      )
    )
  return rows


def _init(cell, key, input_size):
  return cell.init(key, input_size)


def _member_loss(cell, impl, params, xs):
  return loss_of(rnnlab.unroll(cell, params, xs, impl=impl)[0])


def _apply_loss(apply, params, xs):
  return loss_of(apply(params, xs))


def _stack(copies, leaf):
  return jnp.stack([leaf] * copies)


def vmap_suite(blocks, cells, reps, use_torch, min_seconds=0.0) -> list[dict]:
  """``M`` members vmapped, one contender per path, interleaved; one row per contender."""
  rows = []
  for M, (B, T, I, H) in blocks:
    for cell_name in cells:
      key = jax.random.key(0)
      keys = jax.random.split(key, M)
      xs = jax.random.normal(key, (M, B, T, I), jnp.float32)
      cell = CELLS[cell_name](H)
      params = jax.vmap(partial(_init, cell, input_size=I))(keys)
      fns = {}
      for impl in ("scan", "fused"):
        grad = jax.jit(jax.vmap(jax.grad(partial(_member_loss, cell, impl))))
        fns[f"rnnlab-{impl}"] = partial(grad, params, xs)
      one = jax.eval_shape(partial(_init, cell, key, input_size=I))
      with scan_lib.vmapped(M):
        auto = "rnnlab-" + scan_lib.auto_impl(cell, one, B, T)
      flax_params, flax_apply = flax_fns(cell_name, xs[0], key, H)
      flax_params = jax.tree.map(partial(_stack, M), flax_params)
      flax_grad = jax.jit(jax.vmap(jax.grad(partial(_apply_loss, flax_apply))))
      fns["flax"] = partial(flax_grad, flax_params, xs)
      torch_fns = torch_step(cell_name, xs.reshape(M * B, T, I), H) if use_torch else None
      if torch_fns is not None:
        fns["torch"] = torch_fns[1]
      samples = timed_rounds(fns, reps, min_seconds)
      times = {k: float(np.median(s)) for k, s in samples.items()}
      for name, seconds in times.items():
        torch_time = times.get("torch")
        rows.append(
          dict(
            cell=cell_name,
            M=M,
            B=B,
            T=T,
            I=I,
            H=H,
            impl=name,
            auto=name == auto,
            ms=seconds * 1e3,
            vs_flax=times["flax"] / seconds,
            vs_torch=None if torch_time is None else torch_time / seconds,
            vs_flax_q=ratio_spread(samples["flax"], samples[name]),
            rounds=len(samples[name]),
          )
        )
  return rows


PATHS = ("fused", "recompute", "scan")
FUSED_B_OPTIONS = (0, 16, 24, 32, 48, 64, 128, 10**9)
FUSED_H_OPTIONS = (16, 32, 64, 96, 128, 192, 256, 384, 512, None)
# Recompute thresholds in T * B * H (the size of one residual stack the scan would store).
RECOMPUTE_UNIT_OPTIONS = tuple(
  100 * u for u in (512, 1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 32768)
)
RECOMPUTE_H_OPTIONS = (64, 128, 256, 512, None)


def _fused_rules(additive: bool) -> list:
  if not additive:
    return [None]
  rules = [(b, None) for b in FUSED_B_OPTIONS]
  rules += [
    (b, (lo, hi))
    for b in FUSED_B_OPTIONS
    for lo in FUSED_H_OPTIONS[:-1]
    for hi in FUSED_H_OPTIONS
    if hi is None or hi >= lo
  ]
  return rules


def _recompute_rules() -> list:
  return [None] + [(u, h) for u in RECOMPUTE_UNIT_OPTIONS for h in RECOMPUTE_H_OPTIONS]


def _regret(points, logs, fused_rule, recompute_rule) -> float:
  """Summed ``log(t_chosen / t_fastest)`` of the rules' choices over ``points``."""
  picked = [
    PATHS.index(scan_lib.rule_choice(fused_rule, recompute_rule, b, h, t)) for b, h, t, _ in points
  ]
  return float(logs[np.arange(len(points)), picked].sum())


def _complexity(rule) -> int:
  """How many bounds a fused ``(b_max, (h_lo, h_hi))`` or recompute ``(min_units, h_max)`` rule sets."""
  if rule is None:
    return 0
  first, second = rule
  if isinstance(second, tuple):  # fused, with an H range
    return int(first > 0) + 1 + int(second[1] is not None)
  return int(first > 0) + int(second is not None)


def fit_auto_rule(
  rows: list[dict], tolerance: float = 0.0025, backend: str = "cpu"
) -> dict[str, dict]:
  """The rules of :data:`rnnlab.scan.FUSED_RULES` and ``RECOMPUTE_RULES`` that fit ``rows`` best.

  Per cell, jointly over the three paths: the fused rule (fused when ``B <= b_max``
  at any H or ``h_lo <= H <= h_hi`` at any B) and, where it does not apply, the
  recompute rule (``T * B * H >= min_units`` and ``H <= h_max``; else the scan), as
  :func:`rnnlab.scan.rule_choice` applies them. Chosen by the least summed
  ``log(t_chosen / t_fastest)`` over the speed suite's forward+backward rows that
  have all three paths, or rather the simplest pair of rules (fewest bounds) within
  ``tolerance`` of that least sum per shape (0.0025: a quarter of a per cent); ``regret`` is that
  sum's geometric mean as a share (0.02: 2 % slower than always taking the
  fastest path), next to that of ``backend``'s rules in force (none: the scan).
  """
  times: dict[tuple, dict[str, float]] = {}
  for r in rows:
    if r["pass_"] == "fwd+bwd" and r["impl"] in tuple(f"rnnlab-{p}" for p in PATHS):
      key = (r["cell"], r["B"], r["T"], r["I"], r["H"])
      times.setdefault(key, {})[r["impl"].removeprefix("rnnlab-")] = r["ms"]
  fits = {}
  for cell in sorted({k[0] for k in times}):
    points = [
      (k[1], k[4], k[2], v) for k, v in times.items() if k[0] == cell and len(v) == len(PATHS)
    ]
    if not points:
      continue
    additive = CELLS[cell](8).parts.additive
    # log(t_path / t_fastest) per point and path; a rule picks one path per point.
    logs = np.array([[math.log(v[p] / min(v.values())) for p in PATHS] for *_, v in points])

    fused_options, recompute_options = _fused_rules(additive), _recompute_rules()
    # Each rule reduces to a mask over the points: search the distinct masks, each
    # with its simplest rule.
    fused_masks: dict[tuple, Any] = {}
    for rule in sorted(fused_options, key=_complexity):
      mask = tuple(scan_lib.rule_choice(rule, None, b, h, t) == "fused" for b, h, t, _ in points)
      fused_masks.setdefault(mask, rule)
    recompute_masks: dict[tuple, Any] = {}
    for rule in sorted(recompute_options, key=_complexity):
      mask = tuple(
        scan_lib.rule_choice(None, rule, b, h, t) == "recompute" for b, h, t, _ in points
      )
      recompute_masks.setdefault(mask, rule)
    f = np.array(list(fused_masks), bool)[:, None, :]
    r = np.array(list(recompute_masks), bool)[None, :, :]
    cost = np.where(f, logs[:, 0], np.where(r, logs[:, 1], logs[:, 2])).sum(-1)
    fused_rules, recompute_rules = list(fused_masks.values()), list(recompute_masks.values())
    # The simplest pair within `tolerance` (mean log-ratio) of the least regret: a
    # rule that bends around one noisy shape is not a finding.
    near = np.argwhere(cost <= cost.min() + tolerance * len(points))
    i, j = min(
      near,
      key=lambda ij: (
        _complexity(fused_rules[ij[0]]) + _complexity(recompute_rules[ij[1]]),
        cost[tuple(ij)],
      ),
    )
    best = (fused_rules[i], recompute_rules[j])
    n = len(points)
    in_force = scan_lib.FUSED_RULES.get(backend)  # None: this backend scans until measured
    current = (
      in_force.get(cell, in_force["elman"]) if additive and in_force else None,
      scan_lib.RECOMPUTE_RULES.get(backend, {}).get(cell),
    )
    fits[cell] = dict(
      fused=best[0],
      recompute=best[1],
      regret=math.expm1(float(cost[i, j]) / n),
      current_fused=current[0],
      current_recompute=current[1],
      current_regret=math.expm1(_regret(points, logs, *current) / n),
      points=n,
    )
  return fits


def remat_suite(lengths, hidden, batch, reps) -> list[dict]:
  """LSTM forward+backward (loss on the final state) with and without checkpointing."""
  rows = []
  key = jax.random.key(1)
  cell = rnnlab.lstm(hidden)
  params = cell.init(key, 8)
  for T in lengths:
    xs = jax.random.normal(key, (batch, T, 8), jnp.float32)
    fns, info = {}, {}
    for chunk in (None, max(1, round(math.sqrt(T)))):

      def loss(p, x, chunk=chunk):
        # Many-to-one (a loss on the final state), so no O(T) output is kept: what
        # remains is the scan's residuals, O(T) plain and O(T/chunk + chunk) checkpointed.
        return loss_of(rnnlab.unroll(cell, p, x, remat_chunk=chunk)[1].h)

      executable, compile_s, peak = compiled(jax.grad(loss), params, xs)
      fns[chunk] = partial(executable, params, xs)
      info[chunk] = (compile_s, peak)
    times = timed(fns, reps)
    for chunk, seconds in times.items():
      rows.append(
        dict(
          B=batch,
          T=T,
          H=hidden,
          remat_chunk=chunk,
          ms=seconds * 1e3,
          peak_mib=info[chunk][1] / 2**20,
          compile_s=info[chunk][0],
        )
      )
  return rows


def compile_suite(lengths, hidden) -> list[dict]:
  """Compile seconds of an LSTM's forward+backward against T."""
  rows = []
  key = jax.random.key(2)
  cell = rnnlab.lstm(hidden)
  params = cell.init(key, 4)
  for T in lengths:
    xs = jnp.zeros((8, T, 4), jnp.float32)
    grad = jax.grad(lambda p, x: loss_of(rnnlab.unroll(cell, p, x)[0]))
    _, seconds, _ = compiled(grad, params, xs)
    rows.append(dict(T=T, H=hidden, compile_s=seconds))
  return rows


def diagnostics_suite(shapes, cells, reps) -> list[dict]:
  """``value_and_state_grads`` against ``value_and_grad`` (same loss), interleaved."""
  rows = []
  key = jax.random.key(4)
  for B, T, I, H in shapes:
    xs = jax.random.normal(key, (B, T, I), jnp.float32)
    for cell_name in cells:
      cell = CELLS[cell_name](H)
      params = cell.init(key, I)

      def loss(p, x, cell=cell):
        return loss_of(rnnlab.unroll(cell, p, x)[0])

      fns = {
        "grad": partial(jax.jit(jax.value_and_grad(loss)), params, xs),
        "state_grads": partial(jax.jit(diagnostics.value_and_state_grads(loss)), params, xs),
      }
      times = timed(fns, reps)
      rows.append(
        dict(
          kind="state_grads",
          cell=cell_name,
          B=B,
          T=T,
          I=I,
          H=H,
          impl=scan_lib.auto_impl(cell, params, B, T),
          grad_ms=times["grad"] * 1e3,
          state_grads_ms=times["state_grads"] * 1e3,
          ratio=times["state_grads"] / times["grad"],
        )
      )
  return rows


def diagnostics_cost_suite(T, H, cells, reps) -> list[dict]:
  """Seconds of each per-sequence diagnostic on one sequence of T steps, H units."""
  rows = []
  key = jax.random.key(5)
  xs = jax.random.normal(key, (T, 4), jnp.float32)
  lags = tuple(sorted({0, 1, T // 8, T // 4, T // 2, T}))
  for cell_name in cells:
    cell = CELLS[cell_name](H)
    params = cell.init(key, 4)
    fns = {
      "jacobian_norms exact (all lags, full spectrum)": lambda p, x, c=cell: (
        diagnostics.jacobian_norms(c, p, x)
      ),
      f"jacobian_norms power ({len(lags)} lags, 30 iterations)": lambda p, x, c=cell: (
        diagnostics.jacobian_norms(c, p, x, method="power", lags=lags)
      ),
      "lyapunov_spectrum (8 exponents)": lambda p, x, c=cell: diagnostics.lyapunov_spectrum(
        c, p, x, num_exponents=8
      ),
      "gate_statistics": lambda p, x, c=cell: diagnostics.gate_statistics(c, p, x),
    }
    times = timed({k: partial(jax.jit(f), params, xs) for k, f in fns.items()}, reps)
    rows += [
      dict(kind="cost", cell=cell_name, T=T, H=H, diagnostic=k, ms=v * 1e3)
      for k, v in times.items()
    ]
  return rows


ONEDNN_GRID = ((64, 100, 8, 128), (16, 100, 8, 128), (128, 100, 8, 64), (32, 1000, 4, 32))


def _matmul_chains(B, T, H):
  """The floor of a scan's forward, in jax and in torch: T steps of ``tanh((h @ W)[:, :H])``, W (H, 4H)."""
  import torch

  key = jax.random.key(0)
  w = jax.random.normal(key, (H, 4 * H), jnp.float32) / math.sqrt(H)
  h0 = jax.random.normal(key, (B, H), jnp.float32)

  @jax.jit
  def chain(w, h):
    step = lambda h, _: (jnp.tanh((h @ w)[:, :H]), None)  # noqa: E731
    return jax.lax.scan(step, h, None, length=T)[0]

  w_t, h_t = torch.tensor(np.asarray(w)), torch.tensor(np.asarray(h0))

  def torch_chain():
    h = h_t
    with torch.no_grad():
      for _ in range(T):
        h = torch.tanh((h @ w_t)[:, :H])
    return h

  return partial(chain, w, h0), torch_chain


def _without_onednn(fn):
  """``fn`` run with PyTorch's oneDNN kernels off (ATen's own LSTM)."""
  import torch

  def run():
    with torch.backends.mkldnn.flags(enabled=False):
      return fn()

  return run


def onednn_suite(shapes, reps, min_seconds=0.0) -> list[dict]:
  """LSTM forward and forward+backward: rnnlab's paths, torch with and without oneDNN, the matmul chain."""
  import torch

  torch.set_num_threads(os.cpu_count() or 1)
  rows = []
  for B, T, I, H in shapes:
    key = jax.random.key(0)
    xs = jax.random.normal(key, (B, T, I), jnp.float32)
    contenders = rnnlab_contenders("lstm", xs, key, H)
    params = contenders["rnnlab-scan"][1]
    fns, _ = compiled_passes(contenders, xs)
    forward, forward_backward = torch_step("lstm", xs, H)
    fns[("torch", "fwd")], fns[("torch", "fwd+bwd")] = forward, forward_backward
    fns[("torch-no-onednn", "fwd")] = _without_onednn(forward)
    fns[("torch-no-onednn", "fwd+bwd")] = _without_onednn(forward_backward)
    fns[("matmul-chain-jax", "fwd")], fns[("matmul-chain-torch", "fwd")] = _matmul_chains(B, T, H)
    times = timed(fns, reps, min_seconds)
    auto = "rnnlab-" + scan_lib.auto_impl(CELLS["lstm"](H), params, B, T)
    for (name, pass_name), seconds in times.items():
      whole = times.get((name, "fwd+bwd"))
      rows.append(
        dict(
          B=B,
          T=T,
          I=I,
          H=H,
          impl=name,
          auto=name == auto,
          pass_=pass_name,
          ms=seconds * 1e3,
          bwd_ms=None if pass_name != "fwd" or whole is None else (whole - seconds) * 1e3,
          gflops_recurrent=2.0 * B * T * H * 4 * H / seconds / 1e9,
        )
      )
  return rows


def sweep_measure(num_seeds: int, reps: int, shape: tuple[int, int, int, int]) -> dict:
  """One process's sweep timing: loop vs vmap vs vmap sharded over all its devices."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  B, T, I, H = shape
  cell = rnnlab.lstm(H)
  keys = jax.random.split(jax.random.key(3), num_seeds)
  xs = jax.random.normal(keys[0], (B, T, I), jnp.float32)
  params = jax.vmap(lambda k: cell.init(k, I))(keys)
  grad = jax.jit(jax.grad(lambda p, x: loss_of(rnnlab.unroll(cell, p, x)[0])))
  one = [jax.tree.map(lambda a, i=i: a[i], params) for i in range(num_seeds)]
  batched = jax.jit(jax.vmap(grad, in_axes=(0, None)))
  fns = {
    "loop": lambda: [grad(p, xs) for p in one],
    "vmap": lambda: batched(params, xs),
  }
  devices = jax.devices()
  if len(devices) > 1 and num_seeds % len(devices) == 0:
    mesh = Mesh(np.array(devices), ("seeds",))
    sharded = jax.device_put(params, NamedSharding(mesh, PartitionSpec("seeds")))
    fns["vmap-sharded"] = lambda: batched(sharded, xs)
  times = timed(fns, reps)
  return dict(devices=len(devices), seeds=num_seeds, **{k: v * 1e3 for k, v in times.items()})


def sweep_suite(num_seeds, reps, device_counts, shape) -> list[dict]:
  rows = []
  for count in device_counts:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
    ).strip()
    command = [
      sys.executable,
      "-m",
      "experiments.benchmark",
      f"--sweep_worker={count}",
      f"--sweep_seeds={num_seeds}",
      f"--reps={reps}",
      "--shapes=" + ":".join(map(str, shape)),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
      raise RuntimeError(f"sweep worker with {count} devices failed:\n{done.stderr[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row.update(B=shape[0], T=shape[1], I=shape[2], H=shape[3])
    rows.append(row)
  return rows


RUNNER_CHUNK = re.compile(r"\] (\S+): step (\d+)/\d+ \(([\d.]+)s\)")


def runner_suite(device_counts: list[int], rounds: int, quick: bool) -> list[dict]:
  """The experiment runner on 1, 2, ... XLA devices: one group (LSTM, T=40, 10 members).

  Each launch is a fresh process (the device count is fixed when JAX starts),
  alternating device counts round by round. ``chunk_s``: median seconds per chunk
  of 100 updates, leaving out each group's first chunk; ``total_s``: the whole
  launch, compilation included (median over rounds).
  """
  steps, chunk = (40, 10) if quick else (600, 100)
  args = [
    "--config=experiments/configs/vanishing.py:cell=lstm,T=40",
    f"--config.num_steps={steps}",
    f"--config.run.chunk_steps={chunk}",
    "--config.diagnostics.gain_scan=()",
    "--config.run.plots=False",
    "--config.run.checkpoint_seconds=1e9",
  ]
  times: dict[int, dict[str, list[float]]] = {d: {"chunk": [], "total": []} for d in device_counts}
  for _ in range(rounds):
    for count in device_counts:
      with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, "-m", "experiments.run", *args, f"--workdir={workdir}"]
        command.append(f"--config.run.devices={count}")
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        total = time.perf_counter() - start
      if done.returncode != 0:
        raise RuntimeError(f"runner with {count} devices failed:\n{done.stderr[-2000:]}")
      chunks = RUNNER_CHUNK.findall(done.stderr)
      times[count]["chunk"] += [float(s) for _, step, s in chunks if int(step) > chunk]
      times[count]["total"].append(total)
  base = float(np.median(times[device_counts[0]]["chunk"]))
  return [
    dict(
      devices=count,
      members=10,
      chunk_s=float(np.median(t["chunk"])),
      total_s=float(np.median(t["total"])),
      speedup=base / float(np.median(t["chunk"])),
    )
    for count, t in times.items()
  ]


def environment() -> dict:
  info = dict(
    date=time.strftime("%Y-%m-%d"),
    machine=f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}",
    backend=jax.default_backend(),
    devices=[str(d) for d in jax.devices()],
    python=platform.python_version(),
    jax=jax.__version__,
  )
  import flax

  info["flax"] = flax.__version__
  try:
    import torch

    info["torch"] = torch.__version__
  except ImportError:
    info["torch"] = None
  return info


def _fmt(value, spec=".2f") -> str:
  return "-" if value is None else format(value, spec)


def auto_summary(rows: list[dict]) -> list[str]:
  """Per cell, ``impl="auto"``'s forward+backward against each peer over the shapes of ``rows``.

  Worst and geometric-mean ratio (peer time / auto time), the shapes at or above
  1.0, and the shapes where the upper quartile of the per-round ratios reaches
  1.0 (behind by less than the run's own spread).
  """
  lines = [
    "`impl='auto'` (the `*` rows), forward+backward, peer time / auto time:",
    "",
    "| cell | peer | shapes | worst | geometric mean | >= 1.0 | within the rounds' spread of 1.0 |",
    "|---|---|---|---|---|---|---|",
  ]
  for cell in dict.fromkeys(r["cell"] for r in rows):
    auto = [r for r in rows if r["cell"] == cell and r["auto"] and r["pass_"] == "fwd+bwd"]
    for peer in ("flax", "torch"):
      pairs = [(r[f"vs_{peer}"], r.get(f"vs_{peer}_q")) for r in auto if r[f"vs_{peer}"]]
      if not pairs:
        continue
      ratios = np.array([p[0] for p in pairs])
      within = sum(1 for ratio, q in pairs if ratio >= 1 or (q is not None and q[1] >= 1))
      lines.append(
        f"| {cell} | {peer} | {len(ratios)} | {ratios.min():.2f} "
        f"| {math.exp(np.log(ratios).mean()):.2f} | {int((ratios >= 1).sum())} | {within} |"
      )
  return lines


def markdown(results: dict) -> str:
  env = results["environment"]
  lines = [
    f"Measured {env['date']} on {env['machine']} ({env['backend']}); jax {env['jax']}, "
    f"flax {env['flax']}, torch {env['torch']}. Medians of interleaved runs; ratios > 1 mean "
    "the row is faster than the peer; * marks the path `impl='auto'` takes.",
    "",
  ]
  if results.get("speed"):
    lines += [
      "| cell | B, T, I, H | pass | contender | ms | seq/s | GFLOP/s | roofline | vs flax | vs torch | compile s | peak MiB |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["speed"]:
      lines.append(
        f"| {r['cell']} | {r['B']}, {r['T']}, {r['I']}, {r['H']} | {r['pass_']} "
        f"| {r['impl']}{' *' if r['auto'] else ''} "
        f"| {r['ms']:.1f} | {r['seq_per_s']:.0f} | {r['gflops']:.1f} "
        f"| {r['roofline_share']:.0%} | {_fmt(r['vs_flax'])} | {_fmt(r['vs_torch'])} "
        f"| {_fmt(r['compile_s'])} | {_fmt(r['peak_mib'], '.1f')} |"
      )
    lines.append("")
  if results.get("speed"):
    fits = fit_auto_rule(results["speed"], backend=env["backend"])
    lines += [
      "The rules fitted to these rows (`fit_auto_rule`, the three paths jointly; fused when "
      "B <= b_max or h_lo <= H <= h_hi, else recompute when T * B * H >= min_units and H <= h_max, "
      "else the scan) against `rnnlab.scan`'s rules in force on this backend; regret: the geometric-mean "
      "excess over always taking the fastest path:",
      "",
      "| cell | shapes | fitted fused / recompute rule | its regret | rules in force | their regret |",
      "|---|---|---|---|---|---|",
    ]
    for cell, fit in fits.items():
      lines.append(
        f"| {cell} | {fit['points']} | {fit['fused']} / {fit['recompute']} | {fit['regret']:.1%} "
        f"| {fit['current_fused']} / {fit['current_recompute']} "
        f"| {fit['current_regret']:.1%} |"
      )
    lines += ["", *auto_summary(results["speed"]), ""]
  if results.get("vmap"):
    lines += [
      "| vmapped block: cell | members M x (B, T, I, H) | contender | ms | vs flax | vs torch (M*B batch) |",
      "|---|---|---|---|---|---|",
    ]
    for r in results["vmap"]:
      lines.append(
        f"| {r['cell']} | {r['M']} x ({r['B']}, {r['T']}, {r['I']}, {r['H']}) "
        f"| {r['impl']}{' *' if r['auto'] else ''} | {r['ms']:.2f} | {_fmt(r['vs_flax'])} "
        f"| {_fmt(r['vs_torch'])} |"
      )
    lines.append("")
  if results.get("remat"):
    lines += [
      "| LSTM B, H | T | remat_chunk | fwd+bwd ms | peak MiB | compile s |",
      "|---|---|---|---|---|---|",
    ]
    for r in results["remat"]:
      lines.append(
        f"| {r['B']}, {r['H']} | {r['T']} | {r['remat_chunk'] or 'none'} | {r['ms']:.0f} "
        f"| {r['peak_mib']:.1f} | {r['compile_s']:.2f} |"
      )
    lines.append("")
  if results.get("compile"):
    lines += ["| LSTM H | T | compile s (fwd+bwd) |", "|---|---|---|"]
    lines += [f"| {r['H']} | {r['T']} | {r['compile_s']:.2f} |" for r in results["compile"]]
    lines.append("")
  if results.get("diagnostics"):
    lines += [
      "| cell | B, T, I, H | unroll path | value_and_grad ms | value_and_state_grads ms | ratio |",
      "|---|---|---|---|---|---|",
    ]
    for r in results["diagnostics"]:
      if r["kind"] == "state_grads":
        lines.append(
          f"| {r['cell']} | {r['B']}, {r['T']}, {r['I']}, {r['H']} | {r['impl']} "
          f"| {r['grad_ms']:.1f} | {r['state_grads_ms']:.1f} | {r['ratio']:.2f} |"
        )
    lines += ["", "| cell | T, H | diagnostic (one sequence) | ms |", "|---|---|---|---|"]
    for r in results["diagnostics"]:
      if r["kind"] == "cost":
        lines.append(f"| {r['cell']} | {r['T']}, {r['H']} | {r['diagnostic']} | {r['ms']:.1f} |")
    lines.append("")
  if results.get("sweep"):
    lines += [
      "| sweep (LSTM B, T, I, H) | seeds | CPU devices | loop ms | vmap ms | vmap sharded ms | loop / best |",
      "|---|---|---|---|---|---|---|",
    ]
    for r in results["sweep"]:
      best = min(r["vmap"], r.get("vmap-sharded", math.inf))
      lines.append(
        f"| {r['B']}, {r['T']}, {r['I']}, {r['H']} | {r['seeds']} | {r['devices']} "
        f"| {r['loop']:.1f} | {r['vmap']:.1f} | {_fmt(r.get('vmap-sharded'), '.1f')} "
        f"| {r['loop'] / best:.2f} |"
      )
    lines.append("")
  if results.get("onednn"):
    lines += [
      "| LSTM B, T, I, H | contender | fwd ms | fwd+bwd ms | bwd ms (difference) | recurrent matmul GFLOP/s in fwd |",
      "|---|---|---|---|---|---|",
    ]
    for r in results["onednn"]:
      if r["pass_"] != "fwd":
        continue
      whole = None if r["bwd_ms"] is None else r["ms"] + r["bwd_ms"]
      lines.append(
        f"| {r['B']}, {r['T']}, {r['I']}, {r['H']} | {r['impl']}{' *' if r['auto'] else ''} "
        f"| {r['ms']:.2f} | {_fmt(whole)} | {_fmt(r['bwd_ms'])} | {r['gflops_recurrent']:.0f} |"
      )
    lines.append("")
  if results.get("runner"):
    lines += [
      "| experiment runner (LSTM H=32, T=40, 10 members) | CPU devices | s per 100 updates | launch s | speed-up |",
      "|---|---|---|---|---|",
    ]
    for r in results["runner"]:
      lines.append(
        f"| lstm_T40 | {r['devices']} | {r['chunk_s']:.2f} | {r['total_s']:.1f} "
        f"| {r['speedup']:.2f} |"
      )
    lines.append("")
  return "\n".join(lines)


def parse_shapes(texts: list[str]) -> tuple[tuple[int, int, int, int], ...]:
  shapes = []
  for text in texts:
    parts = text.split(":")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
      raise app.UsageError(f"--shapes: {text!r} is not B:T:I:H with four positive integers")
    shapes.append(tuple(int(p) for p in parts))
  return tuple(shapes)


def main(argv):
  del argv
  explicit_shapes = parse_shapes(_SHAPES.value)
  if _SWEEP_WORKER.value:
    shape = explicit_shapes[0] if explicit_shapes else (16, 100, 4, 32)
    print(json.dumps(sweep_measure(_SEEDS.value, _REPS.value, shape)))
    return
  unknown = sorted(set(_SUITES.value) - set(SUITES))
  if unknown:
    raise app.UsageError(f"--suites: unknown {unknown}; expected a subset of {SUITES}")
  if "onednn" in _SUITES.value and importlib.util.find_spec("torch") is None:
    raise app.UsageError("--suites=onednn needs torch: pip install torch==2.13.0")
  bad_cells = sorted(set(_CELLS.value) - set(CELLS))
  if bad_cells:
    raise app.UsageError(f"--cells: unknown {bad_cells}; expected a subset of {tuple(CELLS)}")
  quick = _QUICK.value
  reps = 2 if quick else _REPS.value
  min_seconds = 0.0 if quick else _MIN_SECONDS.value
  shapes = explicit_shapes or (QUICK_GRID if quick else GRID)
  results: dict[str, Any] = {"environment": environment()}
  suites = _SUITES.value
  if "speed" in suites:
    results["speed"] = speed_suite(shapes, _CELLS.value, reps, _TORCH.value, min_seconds)
  if "vmap" in suites:
    blocks = ((2, (4, 20, 3, 8)),) if quick else VMAP_GRID
    results["vmap"] = vmap_suite(blocks, _CELLS.value, reps, _TORCH.value, min_seconds)
  if "remat" in suites:
    lengths = (64,) if quick else (1000, 3000, 10000)
    results["remat"] = remat_suite(lengths, 8 if quick else 128, 4 if quick else 32, reps)
  if "compile" in suites:
    results["compile"] = compile_suite(
      (10, 100) if quick else (100, 1000, 10000), 8 if quick else 64
    )
  if "diagnostics" in suites:
    diag_shapes = explicit_shapes or (QUICK_GRID if quick else DIAGNOSTICS_GRID)
    results["diagnostics"] = diagnostics_suite(diag_shapes, _CELLS.value, reps)
    results["diagnostics"] += diagnostics_cost_suite(
      16 if quick else 200, 8 if quick else 64, _CELLS.value, reps
    )
  if "sweep" in suites:
    shape = (4, 10, 2, 8) if quick else (16, 100, 4, 32)
    devices = _DEVICES.value
    results["sweep"] = sweep_suite(
      4 if quick else _SEEDS.value, reps, [int(d) for d in devices], shape
    )
  if "onednn" in suites:
    results["onednn"] = onednn_suite(
      QUICK_GRID if quick else explicit_shapes or ONEDNN_GRID, reps, min_seconds
    )
  if "runner" in suites:
    counts = sorted({1, *(int(d) for d in _DEVICES.value)})
    results["runner"] = runner_suite(counts, 1 if quick else _ROUNDS.value, quick)
  table = markdown(results)
  print(table)
  try:
    with open(_OUT.value, "w") as f:
      json.dump(results, f, indent=1)
    if _MARKDOWN.value:
      with open(_MARKDOWN.value, "w") as f:
        f.write(table + "\n")
  except OSError as e:
    raise app.UsageError(f"cannot write results: {e}") from e


if __name__ == "__main__":
  app.run(main)
