"""The fused path and gradient checkpointing compute exactly what the plain scan computes.

``unroll(impl="fused")`` (rnnlab/fused.py, a custom VJP) and ``remat_chunk`` are
schedules: outputs, final carries and gradients with respect to params, inputs,
initial carry and probes must equal the plain ``lax.scan`` path, for every cell
with ``CellParts``, with lengths, reverse, probes, stacked and bidirectional layers.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab

I, H, B, T = 3, 5, 3, 7
CELLS = {
  "elman_tanh": rnnlab.elman(H, "tanh"),
  "lstm": rnnlab.lstm(H),
  "gru": rnnlab.gru(H),
}
# (lengths, reverse, probes, remat_chunk): each field exercised with and without the others.
OPTIONS = {
  "plain": (False, False, False, None),
  "lengths_reverse": (True, True, False, None),
  "probes_lengths": (True, False, True, None),
  "remat_reverse_probes": (True, True, True, 3),
}
LENGTHS = np.array([7, 4, 0], np.int32)


def randomize(tree, seed, scale=0.6):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype), tree)


def setup(name, dtype=jnp.float32, seed=0):
  cell = CELLS[name]
  params = randomize(cell.init(jax.random.key(seed), I, dtype), seed + 1)
  xs = randomize(jnp.zeros((B, T, I), dtype), seed + 2, scale=1.0)
  carry = randomize(cell.initial_carry(params, (B,)), seed + 3)
  probes = jax.tree.map(lambda c: jnp.zeros((B, T, *c.shape[1:]), c.dtype), carry)
  return cell, params, xs, carry, probes


def outputs_and_grads(cell, impl, options):
  """One jitted function: outputs, final carry and all four gradients of a weighted loss."""
  use_lengths, reverse, use_probes, remat_chunk = options

  def run(params, xs, carry, probes):
    return rnnlab.unroll(
      cell,
      params,
      xs,
      carry,
      lengths=jnp.asarray(LENGTHS) if use_lengths else None,
      reverse=reverse,
      probes=probes if use_probes else None,
      impl=impl,
      remat_chunk=remat_chunk,
    )

  def loss(params, xs, carry, probes):
    ys, final = run(params, xs, carry, probes)
    # Distinct weights per element, so every output and carry leaf carries gradient.
    weights = jnp.cos(jnp.arange(ys.size, dtype=jnp.float32).reshape(ys.shape))
    carry_term = sum(jnp.sum(jnp.sin(leaf.astype(jnp.float32))) for leaf in jax.tree.leaves(final))
    return jnp.sum(ys.astype(jnp.float32) * weights) + carry_term

  @jax.jit
  def both(params, xs, carry, probes):
    return run(params, xs, carry, probes), jax.grad(loss, argnums=(0, 1, 2, 3))(
      params, xs, carry, probes
    )

  return both


def assert_trees_close(a, b, tol):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(
      np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=tol, atol=tol
    )


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name", list(CELLS))
def test_fused_and_remat_equal_plain_scan(name, option):
  cell, params, xs, carry, probes = setup(name)
  options = OPTIONS[option]
  plain = outputs_and_grads(cell, "scan", options[:3] + (None,))(params, xs, carry, probes)
  fast = outputs_and_grads(cell, "fused", options)(params, xs, carry, probes)
  assert_trees_close(fast, plain, tol=2e-5)
  if options[2]:  # the probes' gradient is dL/dc_t: a real signal, not zeros
    d_probes = plain[1][3]
    assert max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(d_probes)) > 1e-2


@pytest.mark.parametrize("option", ["probes_lengths", "remat_reverse_probes"])
@pytest.mark.parametrize("name", list(CELLS))
def test_recompute_equals_plain_scan(name, option):
  # The scan with each step under jax.checkpoint: the same function, gradients included.
  cell, params, xs, carry, probes = setup(name)
  options = OPTIONS[option]
  plain = outputs_and_grads(cell, "scan", options[:3] + (None,))(params, xs, carry, probes)
  again = outputs_and_grads(cell, "recompute", options)(params, xs, carry, probes)
  assert_trees_close(again, plain, tol=2e-5)


@pytest.mark.parametrize("option", ["plain", "lengths_reverse", "remat_reverse_probes"])
@pytest.mark.parametrize("name", list(CELLS))
def test_one_input_feature_scans_with_its_inputs_loaded_ahead(name, option):
  # At I = 1 the scan loads each step's input one step ahead (rnnlab.scan._prefetches): the
  # same function, checked against the fused path's custom VJP, gradients included.
  cell = CELLS[name]
  params = randomize(cell.init(jax.random.key(0), 1), 1)
  xs = randomize(jnp.zeros((B, T, 1)), 2, scale=1.0)
  carry = randomize(cell.initial_carry(params, (B,)), 3)
  probes = jax.tree.map(lambda c: jnp.zeros((B, T, *c.shape[1:]), c.dtype), carry)
  options = OPTIONS[option]
  plain = outputs_and_grads(cell, "scan", options)(params, xs, carry, probes)
  fast = outputs_and_grads(cell, "fused", options)(params, xs, carry, probes)
  assert_trees_close(plain, fast, tol=2e-5)

  def step_inputs(xs):  # what the scan iterates over: the inputs, or the step indices
    params = cell.init(jax.random.key(0), xs.shape[-1])
    jaxpr = jax.make_jaxpr(lambda xs: rnnlab.unroll(cell, params, xs, impl="scan")[0])(xs)
    scan = next(e for e in jaxpr.eqns if e.primitive.name == "scan")
    return [
      v.aval.dtype for v in scan.invars[scan.params["num_consts"] + scan.params["num_carry"] :]
    ]

  if jax.default_backend() == "cpu":
    assert step_inputs(xs) == [jnp.int32]
  assert step_inputs(jnp.zeros((B, T, 2))) == [jnp.float32]


def peak_bytes(cell, xs, **unroll_options) -> int:
  """XLA's temporary memory for the gradient of ``mean(ys**2)`` through ``unroll``."""
  params = cell.init(jax.random.key(0), xs.shape[-1])

  def loss(p):
    return jnp.mean(rnnlab.unroll(cell, p, xs, **unroll_options)[0] ** 2)

  return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes


def test_recompute_stores_less_than_the_scan():
  # What it is for: the reverse pass keeps the carries, not each step's gates.
  cell, xs = rnnlab.lstm(32), jnp.zeros((8, 200, 4))
  assert peak_bytes(cell, xs, impl="recompute") < 0.5 * peak_bytes(cell, xs, impl="scan")


@pytest.mark.parametrize("remat_chunk", [1, 3, 7, 100])
def test_remat_chunk_on_plain_scan_equals_no_remat(remat_chunk):
  # remat_chunk that divides T, does not (padding), equals T, exceeds T.
  cell, params, xs, carry, probes = setup("lstm")
  options = (True, True, True, None)
  plain = outputs_and_grads(cell, "scan", options)(params, xs, carry, probes)
  chunked = outputs_and_grads(cell, "scan", options[:3] + (remat_chunk,))(params, xs, carry, probes)
  assert_trees_close(chunked, plain, tol=2e-5)


def test_bfloat16_fused_matches_scan_and_keeps_dtype():
  cell, params, xs, carry, probes = setup("lstm", jnp.bfloat16)
  options = OPTIONS["lengths_reverse"]
  plain = outputs_and_grads(cell, "scan", options)(params, xs, carry, probes)
  fast = outputs_and_grads(cell, "fused", options)(params, xs, carry, probes)
  (ys, final), grads = fast
  assert ys.dtype == jnp.bfloat16
  assert all(l.dtype == jnp.bfloat16 for l in jax.tree.leaves((final, grads[0])))
  # bfloat16 keeps 8 bits of mantissa: the two paths round differently.
  assert_trees_close(fast, plain, tol=6e-2)


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_stacked_bidirectional_layers_fused_equal_scan(cell_name):
  cell = CELLS[cell_name]

  def model(impl):
    return rnnlab.stacked(
      [
        rnnlab.bidirectional(cell, impl=impl),
        rnnlab.rnn(cell, impl=impl, remat_chunk=3 if impl == "fused" else None),
      ]
    )

  plain, fast = model("scan"), model("fused")
  params = randomize(plain.init(jax.random.key(4), I), 5)
  xs = randomize(jnp.zeros((B, T, I)), 6, scale=1.0)
  lengths = jnp.asarray(LENGTHS)

  def value_and_grads(layer):
    def loss(params, xs):
      ys, _ = layer.apply(params, xs, lengths=lengths)
      return jnp.sum(jnp.tanh(ys) * jnp.cos(jnp.arange(ys.size).reshape(ys.shape)))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, xs)

  assert_trees_close(value_and_grads(fast), value_and_grads(plain), tol=2e-5)


def test_fused_needs_cell_parts():
  cell = rnnlab.gru(H, reset_after=False)  # no CellParts: the plain path only
  params = cell.init(jax.random.key(0), I)
  with pytest.raises(ValueError, match="impl='fused' needs a cell with CellParts"):
    rnnlab.unroll(cell, params, jnp.zeros((B, T, I)), impl="fused")
  ys, _ = rnnlab.unroll(cell, params, jnp.zeros((B, T, I)))  # auto: fine
  assert ys.shape == (B, T, H)


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(impl="cuda"), "impl='cuda'; expected one of"),
    (dict(remat_chunk=0), "remat_chunk must be a positive int or None; got 0"),
    (dict(remat_chunk=2.5), "remat_chunk must be a positive int or None; got 2.5"),
    (dict(probes=jnp.zeros((B, T + 1, H))), r"a probe has shape \(3, 8, 5\); expected \(3, 7, 5\)"),
  ],
)
def test_errors_name_the_bad_value(kwargs, message):
  cell = CELLS["elman_tanh"]
  params = cell.init(jax.random.key(0), I)
  with pytest.raises(ValueError, match=message):
    rnnlab.unroll(cell, params, jnp.zeros((B, T, I)), **kwargs)


@pytest.mark.parametrize(
  "make, hidden, batch, cpu_choice",
  [
    (rnnlab.lstm, 64, 16, "fused"),  # small batch: the fused reverse loop wins
    (rnnlab.lstm, 64, 32, "scan"),  # T * B * H = 204800 at T=100: under 614400
    (rnnlab.lstm, 16, 64, "scan"),
    (rnnlab.lstm, 64, 128, "recompute"),  # large B x H: recomputing the gates beats storing
    (rnnlab.lstm, 256, 128, "recompute"),
    (rnnlab.lstm, 512, 128, "fused"),  # wide: the post-loop weight gradient wins
    (rnnlab.elman, 64, 16, "fused"),
    (rnnlab.elman, 64, 32, "fused"),
    (rnnlab.elman, 128, 64, "scan"),
    (rnnlab.elman, 512, 128, "scan"),
    (rnnlab.elman, 64, 256, "recompute"),  # T * B * H = 1638400 at T=100, H <= 128
    (rnnlab.gru, 16, 16, "scan"),
    (rnnlab.gru, 64, 64, "scan"),  # 409600: below the recompute threshold
    (rnnlab.gru, 64, 128, "recompute"),
    (rnnlab.gru, 256, 32, "recompute"),
    (rnnlab.gru, 512, 128, "scan"),  # H > 256
    (rnnlab.layer_norm_lstm, 64, 16, "scan"),  # no CellParts: always the scan
  ],
)
def test_auto_follows_the_fitted_rule(make, hidden, batch, cpu_choice):
  cell = make(hidden)
  params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 4))
  expected = cpu_choice if jax.default_backend() == "cpu" else "scan"
  assert rnnlab.scan.auto_impl(cell, params, batch) == expected


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU rule")
def test_vmapped_blocks_take_the_scan_and_the_hint_ends_with_its_scope():
  cell = rnnlab.lstm(64)
  params = cell.init(jax.random.key(0), 2)
  xs = jnp.zeros((3, 16, 4, 2))

  def jaxpr(members):
    def loss(xs):
      with rnnlab.scan.vmapped(members):
        return jnp.sum(rnnlab.unroll(cell, params, xs)[0])

    return str(jax.make_jaxpr(jax.vmap(loss))(xs))

  assert "custom_vjp_call" not in jaxpr(3)
  with rnnlab.scan.vmapped(3):  # large blocks keep the scan too (no recompute rule measured)
    assert rnnlab.scan.auto_impl(cell, params, 128) == "scan"
  assert "custom_vjp_call" in jaxpr(1)  # one member: the plain rule (fused at B=16)
  assert rnnlab.scan.auto_impl(cell, params, 16) == "fused"  # the hint is gone


def test_auto_without_a_batch_assumes_the_typical_one():
  cell = rnnlab.lstm(64)
  params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 4))
  typical = rnnlab.scan.TYPICAL_BATCH, rnnlab.scan.TYPICAL_STEPS
  assert rnnlab.scan.auto_impl(cell, params) == rnnlab.scan.auto_impl(cell, params, *typical)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU rule")
def test_unroll_auto_weighs_the_steps_one_segment_stores():
  # The recompute threshold is in T * B * H: B=32, H=32 recomputes at T=1000, not at T=100,
  # nor at T=1000 in remat chunks of 100 steps. Recompute puts a checkpoint inside the scan.
  cell = rnnlab.lstm(32)
  params = cell.init(jax.random.key(0), 2)
  remat = ("checkpoint", "remat2")  # jax.checkpoint's primitive, by jax version

  def recomputes(steps, **kwargs):
    xs = jnp.zeros((32, steps, 2))
    jaxpr = jax.make_jaxpr(lambda xs: rnnlab.unroll(cell, params, xs, **kwargs)[0])(xs)
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    inner = scans[0].params["jaxpr"]
    if kwargs:  # remat chunks: a scan of chunks, each a checkpointed scan of steps
      inner = next(e for e in inner.eqns if e.primitive.name in remat).params["jaxpr"]
      inner = next(e for e in inner.eqns if e.primitive.name == "scan").params["jaxpr"]
    return any(e.primitive.name in remat for e in inner.eqns)

  assert recomputes(1000)
  assert not recomputes(100)
  assert not recomputes(1000, remat_chunk=100)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU rule")
@pytest.mark.parametrize("batch, fused", [(16, True), (128, False)])
def test_unroll_auto_reads_the_batch_of_one_member_under_vmap(batch, fused):
  # The fused path is a custom_vjp; the plain scan is not: the jaxpr says which ran.
  cell = rnnlab.lstm(64)
  params = cell.init(jax.random.key(0), 2)
  xs = jnp.zeros((3, batch, 4, 2))  # 3 members vmapped, `batch` sequences each

  def loss(xs):
    return jnp.sum(rnnlab.unroll(cell, params, xs)[0])

  jaxpr = str(jax.make_jaxpr(jax.vmap(loss))(xs))
  assert ("custom_vjp_call" in jaxpr) is fused


def test_remat_lowers_peak_memory():
  # The claim behind remat_chunk: the backward pass keeps T/chunk carries plus one chunk.
  cell, xs = rnnlab.lstm(16), jnp.zeros((4, 400, 4))
  assert peak_bytes(cell, xs, remat_chunk=20) < 0.5 * peak_bytes(cell, xs, remat_chunk=None)


def test_benchmark_quick_mode_writes_its_tables(tmp_path):
  out, table = tmp_path / "bench.json", tmp_path / "bench.md"
  command = [
    sys.executable,
    "-m",
    "experiments.benchmark",
    "--quick",
    "--cells=elman",
    "--sweep_devices=2",
    f"--out={out}",
    f"--markdown={table}",
  ]
  root = Path(__file__).resolve().parents[1]
  done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads(out.read_text())
  contenders = {(r["impl"], r["pass_"]) for r in results["speed"]}
  for impl in ("rnnlab-scan", "rnnlab-fused", "flax"):
    assert {(impl, "fwd"), (impl, "fwd+bwd")} <= contenders
  for row in results["speed"]:
    assert row["ms"] > 0 and row["gflops"] > 0 and row["rounds"] >= 2
    low, high = row["vs_flax_q"]  # quartiles of the per-round ratios to flax
    assert 0 < low <= high
    assert row["compile_s"] is None if row["impl"] == "torch" else row["compile_s"] > 0
  assert {r["remat_chunk"] for r in results["remat"]} >= {None}
  state_rows = [r for r in results["diagnostics"] if r["kind"] == "state_grads"]
  assert [r["cell"] for r in state_rows] == ["elman"]
  assert state_rows[0]["ratio"] > 0 and state_rows[0]["grad_ms"] > 0
  assert len([r for r in results["diagnostics"] if r["kind"] == "cost"]) == 4
  assert [r["devices"] for r in results["sweep"]] == [2]
  assert "vmap-sharded" in results["sweep"][0]
  vmap_rows = results["vmap"]
  assert {r["impl"] for r in vmap_rows} >= {"rnnlab-scan", "rnnlab-fused", "flax"}
  assert [r["impl"] for r in vmap_rows if r["auto"]] == ["rnnlab-scan"]  # vmapped blocks: scan
  text = table.read_text()
  # B=4: the Elman rule takes the fused path, marked *; the fit's table follows the speed rows.
  assert "| elman | 4, 20, 3, 8 | fwd+bwd | rnnlab-fused * |" in text
  assert "| elman | 4, 20, 3, 8 | fwd+bwd | rnnlab-scan |" in text
  in_force = rnnlab.scan.FUSED_RULES["cpu"]["elman"], rnnlab.scan.RECOMPUTE_RULES["cpu"]["elman"]
  assert "| elman | 1 | " in text and "| {} / {} |".format(*in_force) in text  # fit, rules in force
  assert "peer time / auto time" in text and "| elman | flax | 1 |" in text
  assert "remat_chunk" in text and "compile s" in text
  assert "value_and_state_grads ms" in text and "lyapunov_spectrum" in text


@pytest.mark.slow
def test_benchmark_onednn_suite_takes_the_lstm_apart(tmp_path):
  pytest.importorskip("torch")
  out = tmp_path / "onednn.json"
  command = [sys.executable, "-m", "experiments.benchmark", "--quick", "--suites=onednn"]
  root = Path(__file__).resolve().parents[1]
  done = subprocess.run(
    [*command, f"--out={out}"], cwd=root, capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-3000:]
  rows = {(r["impl"], r["pass_"]): r for r in json.loads(out.read_text())["onednn"]}
  for impl in ("rnnlab-scan", "rnnlab-fused", "rnnlab-recompute", "torch", "torch-no-onednn"):
    forward, whole = rows[(impl, "fwd")], rows[(impl, "fwd+bwd")]
    assert forward["bwd_ms"] == pytest.approx(whole["ms"] - forward["ms"])
  assert {("matmul-chain-jax", "fwd"), ("matmul-chain-torch", "fwd")} <= set(rows)
  assert sum(r["auto"] for r in rows.values()) == 2  # one rnnlab path, both passes
  assert "| 4, 20, 3, 8 | torch-no-onednn |" in done.stdout


def test_benchmark_rejects_bad_flags():
  root = Path(__file__).resolve().parents[1]
  for flag, message in [
    ("--suites=speed,warp", "unknown ['warp']"),
    ("--shapes=32:1000:2", "is not B:T:I:H"),
    ("--cells=transformer", "unknown ['transformer']"),
  ]:
    done = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", flag, "--out=/dev/null"],
      cwd=root,
      capture_output=True,
      text=True,
      timeout=120,
    )
    assert done.returncode != 0
    assert message in done.stderr


def test_the_scan_takes_gate_fused_weights_as_gate_blocks_on_the_cpu():
  # XLA:CPU accumulates a wide weight gradient with a split add per step; per gate block it
  # does not (rnnlab.scan._gate_blocks). The blocks join back into the same matrices.
  cell = rnnlab.lstm(6)
  params = cell.init(jax.random.key(0), 4)
  blocks, join = rnnlab.scan._gate_blocks(cell, params)
  if jax.default_backend() == "cpu":
    assert [w.shape for w in blocks["w_hh"]] == [(6, 6)] * 4
    assert [w.shape for w in blocks["w_ih"]] == [(4, 6)] * 4 and len(blocks["b"]) == 1
  for got, want in zip(join(blocks), params, strict=True):
    np.testing.assert_array_equal(got, want)
  with rnnlab.scan.vmapped(4):  # the runner's blocks: measured apart, left as they are
    assert rnnlab.scan._gate_blocks(cell, params)[0] is params
  elman = rnnlab.elman(6)  # (I, H) and (H, H): nothing to split
  p = elman.init(jax.random.key(0), 4)
  if jax.default_backend() == "cpu":
    assert [len(b) for b in rnnlab.scan._gate_blocks(elman, p)[0].values()] == [1, 1, 1]


def _synthetic_rows(cell, fastest):
  """Speed-suite rows for ``cell`` over a B x H grid where ``fastest(B, H)`` is 1 ms, the rest 2 ms."""
  rows = []
  for batch in (16, 32, 64, 128):
    for hidden in (16, 64, 128, 256, 512):
      for path in ("fused", "recompute", "scan"):
        ms = 1.0 if fastest(batch, hidden) == path else 2.0
        rows.append(
          dict(
            cell=cell, B=batch, T=100, I=8, H=hidden, impl=f"rnnlab-{path}", pass_="fwd+bwd", ms=ms
          )
        )
      rows.append(
        dict(cell=cell, B=batch, T=100, I=8, H=hidden, impl="flax", pass_="fwd+bwd", ms=1)
      )
  return rows


def test_the_rule_fitter_recovers_the_rules_the_timings_follow():
  from experiments import benchmark

  def lstm_truth(batch, hidden):
    return (
      "fused" if batch <= 16 or hidden >= 512 else "recompute" if batch * hidden >= 4096 else "scan"
    )

  def gru_truth(batch, hidden):  # never fused: the GRU's parts are not additive
    return "recompute" if batch * hidden >= 8192 and hidden <= 256 else "scan"

  rows = _synthetic_rows("lstm", lstm_truth) + _synthetic_rows("gru", gru_truth)
  fits = benchmark.fit_auto_rule(rows)
  assert set(fits) == {"lstm", "gru"}
  for cell, truth in (("lstm", lstm_truth), ("gru", gru_truth)):
    fit = fits[cell]
    assert fit["points"] == 20 and fit["regret"] == 0.0
    for batch in (16, 32, 64, 128):
      for hidden in (16, 64, 128, 256, 512):
        chosen = rnnlab.scan.rule_choice(fit["fused"], fit["recompute"], batch, hidden)
        assert chosen == truth(batch, hidden), (cell, batch, hidden)
  assert fits["gru"]["fused"] is None
  # A rule that picks the 2 ms path at some shapes shows as regret: the rules in force
  # were fitted to other timings.
  assert fits["lstm"]["current_regret"] > 0.0
