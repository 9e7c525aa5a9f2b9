"""Tests for rnnlab.train: learning, vmap over seeds and hparams, grids, divergence, periodic
evaluation and early stopping, clipping, optimizers (AdamW's mask) and schedules, truncated
BPTT, streams, hooks, reproducibility, config errors.

Compiled functions are shared through module-level caches: the main LSTM run (jit and
jit(vmap)) is compiled once, the small Elman run once per variant; the grid test reuses the
blow-up tests' vmapped block, and the early-stopping run is compiled once for its two tests.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import cells, diagnostics, layers, tasks
from rnnlab import train as rt

LEARN_T = 20
VMAP_SIZE = 4


def learn_config():
  """LSTM(16) on the Le/Arjovsky adding problem at T=20: 300 Adam steps."""
  c = rt.default_config()
  c.task.name = "adding"
  c.task.length = LEARN_T
  c.model.cell = "lstm"
  c.model.hidden_size = 16
  c.optimizer.learning_rate = 1e-2
  c.clip = 1.0
  c.batch_size = 32
  c.num_steps = 300
  c.eval.num_batches = 0
  return c


def small_config(k1=5, k2=10):
  """Elman(8) on adding at T=20 for 4 steps: TBPTT(5, 10), diagnostics every 2 steps."""
  c = rt.default_config()
  c.task.length = 20
  c.model.cell = "elman"
  c.model.hidden_size = 8
  c.optimizer.name = "momentum"
  c.optimizer.learning_rate = 0.05
  c.batch_size = 8
  c.num_steps = 4
  c.diagnostics_every = 2
  c.eval.batch_size = 16
  c.eval.num_batches = 1
  c.tbptt.k1 = k1
  c.tbptt.k2 = k2
  return c


def update_norm(grads, updates, loss):
  del grads, loss
  return {"update_norm": diagnostics.global_norm(updates)}


def w_hh_norm(params, batch):
  del batch
  return {"w_hh_norm": jnp.linalg.norm(params.encoder[0].w_hh)}


@functools.cache
def learn_train():
  return rt.make_train(learn_config())


@functools.cache
def learn_jit():
  return learn_train()  # train comes jitted


@functools.cache
def learn_vmap():
  return jax.jit(jax.vmap(learn_train()))


def tiny_config():
  """GRU(4) on adding at T=10 for 3 steps: cheap enough to run un-jitted."""
  c = rt.default_config()
  c.task.length = 10
  c.model.cell = "gru"
  c.model.hidden_size = 4
  c.batch_size = 4
  c.num_steps = 3
  c.eval.num_batches = 0
  return c


@functools.cache
def small_train():
  return rt.make_train(small_config(), update_norm, w_hh_norm)


SMALL_KEY = 3


@functools.cache
def small_run():
  return small_train()(jax.random.key(SMALL_KEY))  # train comes jitted


@functools.cache
def learn_hparams():
  """Four members: default, gain 0.7, clip tiny (always clips), lr huge (diverges)."""
  hp = rt.default_hparams(learn_config())
  hps = jax.tree.map(lambda v: jnp.stack([v] * VMAP_SIZE), hp)
  return hps._replace(
    gain=hps.gain.at[1].set(0.7),
    clip=hps.clip.at[2].set(1e-4),
    learning_rate=hps.learning_rate.at[3].set(1e25),
  )


@functools.cache
def vmapped_run():
  keys = jax.random.split(jax.random.key(7), VMAP_SIZE)
  return keys, learn_vmap()(keys, learn_hparams())


def member(tree, i):
  return jax.tree.map(lambda v: v[i], tree)


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


# ----------------------------------------------------------------------------- learning


def test_lstm_learns_adding_below_a_tenth_of_the_baseline():
  config = learn_config()
  task = tasks.get("adding", LEARN_T)
  params, metrics = learn_jit()(jax.random.key(0), rt.default_hparams(config))
  assert int(metrics["diverged_at"]) == -1
  held_out = task.sample(jax.random.key(12345), 1000)
  result = rt.evaluate(config, params, held_out, task=task)
  assert float(result["loss"]) < task.baseline / 10, (result, task.baseline)
  # Training started at or above the baseline, so the run did the learning.
  assert float(metrics["loss"][:5].mean()) > task.baseline / 2


def test_metrics_are_recorded_every_step_with_their_dtypes():
  config = learn_config()
  _, metrics = learn_jit()(jax.random.key(0), rt.default_hparams(config))
  for name in rt.STEP_METRICS:
    assert metrics[name].shape == (config.num_steps,), name
  assert metrics["clipped"].dtype == jnp.bool_ and metrics["nonfinite"].dtype == jnp.bool_
  assert metrics["diverged_at"].shape == () and metrics["diverged_at"].dtype == jnp.int32
  np.testing.assert_allclose(metrics["learning_rate"], config.optimizer.learning_rate)
  # The clip flag is exactly "grad_norm above the threshold".
  np.testing.assert_array_equal(metrics["clipped"], metrics["grad_norm"] > config.clip)


# ----------------------------------------------------------------------------- vmap


def test_vmapped_members_match_their_solo_runs():
  """To float rounding (see the train module docstring): XLA batches the matmuls."""
  keys, (params_v, metrics_v) = vmapped_run()
  hps = learn_hparams()
  for i in range(VMAP_SIZE):
    params, metrics = learn_jit()(keys[i], member(hps, i))
    m_v = member(metrics_v, i)
    assert int(metrics["diverged_at"]) == int(m_v["diverged_at"])
    # Chaotic training amplifies rounding, so compare the first steps (before divergence).
    steps = 20 if i != 3 else int(m_v["diverged_at"])
    for name in ("loss", "grad_norm"):
      np.testing.assert_allclose(metrics[name][:steps], m_v[name][:steps], rtol=2e-5)
    np.testing.assert_array_equal(metrics["learning_rate"], m_v["learning_rate"])
    if i != 3:
      # Both learn: rounding differences grow chaotically, so the end points differ, but
      # both runs end far below the 1/6 baseline (a member that stopped learning would not).
      assert float(metrics["loss"][-20:].mean()) < 1 / 24
      assert float(m_v["loss"][-20:].mean()) < 1 / 24


def test_divergence_freezes_one_member_and_leaves_the_others_bitwise_intact():
  keys, (params_v, metrics_v) = vmapped_run()
  diverged_at = np.asarray(metrics_v["diverged_at"])
  np.testing.assert_array_equal(diverged_at[:3], -1)
  assert diverged_at[3] >= 0
  frozen = member(params_v, 3)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(frozen))
  assert bool(metrics_v["nonfinite"][3, diverged_at[3]])
  assert not np.asarray(metrics_v["nonfinite"][:3]).any()
  # The same batch with a sane lr in member 3 and another key in member 2: members 0, 1
  # are bitwise unchanged, so nothing leaks between members.
  hps = learn_hparams()
  sane = hps._replace(learning_rate=hps.learning_rate.at[3].set(1e-2))
  other_keys = keys.at[2].set(jax.random.key(99))
  params_s, metrics_s = learn_vmap()(other_keys, sane)
  assert_trees_equal(member(metrics_s, slice(0, 2)), member(metrics_v, slice(0, 2)))
  assert_trees_equal(member(params_s, slice(0, 2)), member(params_v, slice(0, 2)))
  assert int(metrics_s["diverged_at"][3]) == -1


# A finite blow-up: Adam at learning rate 1e4 takes the adding loss to about 1e9 at once,
# never to inf or nan. Member 1 of a block of 3 blows up; its neighbours train sanely.
BLOW_UP_LR = 1e4
BLOW_UP_MEMBERS = 3


def blow_up_config(loss_factor=1e7):
  """LSTM(8) on adding at T=10, B=8, 30 Adam steps; the params recorded at every update."""
  c = rt.default_config()
  c.task.length = 10
  c.model.hidden_size = 8
  c.batch_size = 8
  c.num_steps = 30
  c.eval.num_batches = 0
  c.divergence.loss_factor = loss_factor
  return c


@functools.cache
def blow_up_train(loss_factor=1e7):
  # diagnostics_every=1 records the params at update counts 0 .. num_steps (the state a
  # step starts from), so the frozen params can be compared with those of a given step.
  config = blow_up_config(loss_factor)
  config.diagnostics_every = 1
  return jax.jit(jax.vmap(rt.make_train(config, diagnostics=lambda params, batch: params)))


def blow_up_hparams(lr):
  hp = rt.default_hparams(blow_up_config())
  hps = jax.tree.map(lambda v: jnp.stack([v] * BLOW_UP_MEMBERS), hp)
  return hps._replace(learning_rate=jnp.asarray([1e-2, lr, 3e-3], jnp.float32))


def blow_up_run(lr, loss_factor=1e7):
  keys = jax.random.split(jax.random.key(21), BLOW_UP_MEMBERS)
  return blow_up_train(loss_factor)(keys, blow_up_hparams(lr))


def test_finite_blow_up_is_divergence_frozen_at_its_step_and_leaves_the_others_intact():
  params, metrics = blow_up_run(BLOW_UP_LR)
  loss = np.asarray(metrics["loss"][1], np.float64)
  assert np.isfinite(loss).all() and not np.asarray(metrics["nonfinite"]).any()
  # The rule from the loss alone: the first step whose loss exceeds the factor times the
  # larger of the first loss and the task's baseline (1/6 for adding).
  reference = max(loss[0], tasks.get("adding", 10).baseline)
  factor = rt.default_config().divergence.loss_factor  # the default rule
  expected = int(np.flatnonzero(loss > factor * reference)[0])
  diverged_at = np.asarray(metrics["diverged_at"])
  np.testing.assert_array_equal(diverged_at, [-1, expected, -1])
  diverged = np.asarray(metrics["diverged"])
  assert diverged[1, expected] and not diverged[1, :expected].any()
  assert not diverged[[0, 2]].any()
  # Frozen: the final params are those the rejected step started from, at every later step.
  history = metrics["diagnostics"]
  assert_trees_equal(member(params, 1), member(history, (1, expected)))
  for s in range(expected, blow_up_config().num_steps + 1):
    assert_trees_equal(member(history, (1, s)), member(history, (1, expected)))
  # The neighbours are bitwise what they are in a block where member 1 is sane.
  params_s, metrics_s = blow_up_run(1e-3)
  assert int(metrics_s["diverged_at"][1]) == -1
  for i in (0, 2):
    assert_trees_equal(member(metrics_s, i), member(metrics, i))
    assert_trees_equal(member(params_s, i), member(params, i))


def test_blow_up_rule_off_leaves_the_finite_blow_up_running():
  config = blow_up_config(loss_factor=None)
  train = rt.make_train(config)
  hp = blow_up_hparams(BLOW_UP_LR)
  params, metrics = train(jax.random.split(jax.random.key(21), BLOW_UP_MEMBERS)[1], member(hp, 1))
  loss = np.asarray(metrics["loss"])
  assert int(metrics["diverged_at"]) == -1 and not np.asarray(metrics["diverged"]).any()
  assert np.isfinite(loss).all() and loss.max() > 1e7 * loss[0]  # the rule would have fired


def test_blow_up_rule_on_gradient_norm_and_loss():
  config = rt.default_config()
  config.divergence.loss_factor = 10.0
  config.divergence.max_grad_norm = 100.0
  fired = rt.blow_up_rule(config, tasks.get("adding", 10))  # baseline 1/6 floors the reference
  loss = jnp.asarray([0.5, 0.6, 2.1, 0.5, 0.5, jnp.nan])
  grad_norm = jnp.asarray([1.0, 1.0, 1.0, 101.0, jnp.inf, 1.0])
  initial = jnp.asarray([0.1, 0.05, 0.2, 0.1, 0.1, 0.1])
  # 0.5 < 10/6; 0.6 < 10/6 (the floor, not 10 * 0.05); 2.1 > 10 * 0.2; the gradient norms
  # 101 and inf exceed 100; nan is left to the non-finite rule.
  np.testing.assert_array_equal(
    fired(loss, grad_norm, initial), [False, False, True, True, True, False]
  )
  for off in (None, float("inf")):
    config.divergence.loss_factor = config.divergence.max_grad_norm = off
    assert not np.asarray(rt.blow_up_rule(config)(loss * 1e9, grad_norm, initial)).any()


def test_hparams_are_swept_per_member():
  _, (params_v, metrics_v) = vmapped_run()
  clipped = np.asarray(metrics_v["clipped"])
  assert clipped[2].all()  # threshold 1e-4 clips every step
  np.testing.assert_array_equal(clipped[0], np.asarray(metrics_v["grad_norm"][0]) > 1.0)
  # Gain 0.7 with orthogonal init: every singular value of each gate block is 0.7 at init.
  init = rt.make_model(learn_config()).init(jax.random.key(0), gain=0.7)
  singular = np.linalg.svd(np.asarray(init.encoder[0].w_hh[:, :16]), compute_uv=False)
  np.testing.assert_allclose(singular, 0.7, rtol=1e-5)


def test_same_key_is_bitwise_reproducible_jitted_or_not():
  train = small_train()  # TBPTT, step_stats, diagnostics and evaluation included
  key = jax.random.key(SMALL_KEY)
  p_plain, m_plain = small_run()
  p_jit, m_jit = jax.jit(train)(key)
  assert_trees_equal(m_plain, m_jit)
  assert_trees_equal(p_plain, p_jit)
  p_again, m_again = train(key)
  assert_trees_equal(m_plain, m_again)
  assert_trees_equal(p_plain, p_again)
  _, m_other = train(jax.random.key(4))
  assert not np.array_equal(m_plain["loss"], m_other["loss"])


# ----------------------------------------------------------------------------- grid


def test_grid_is_the_cartesian_product_with_a_label_per_member():
  config = learn_config()
  keys, hps, labels = rt.grid(
    config, seeds=(5, 7), learning_rate=(1e-3, 1e-2, 0.1), clip=(0.0, 1.0), gain=0.9
  )
  expected = [
    {"gain": 0.9, "clip": c, "learning_rate": lr, "seed": seed}
    for c in (0.0, 1.0)
    for lr in (1e-3, 1e-2, 0.1)
    for seed in (5, 7)
  ]
  assert list(labels) == expected
  assert keys.shape == (12,) and all(leaf.shape == (12,) for leaf in hps)
  assert all(leaf.dtype == jnp.float32 for leaf in hps)
  for i, label in enumerate(labels):
    np.testing.assert_array_equal(
      jax.random.key_data(keys[i]), jax.random.key_data(jax.random.key(label["seed"]))
    )
    for name in rt.HParams._fields:
      assert getattr(hps, name)[i] == np.float32(label[name]), (i, name)
  # Axes left out take the config's values; an int counts seeds from 0.
  _, hps, labels = rt.grid(config, seeds=3)
  assert [m["seed"] for m in labels] == [0, 1, 2]
  assert {(m["gain"], m["clip"], m["learning_rate"]) for m in labels} == {(1.0, 1.0, 1e-2)}
  assert_trees_equal(member(hps, 2), rt.default_hparams(config))


@pytest.mark.parametrize(
  ("kwargs", "match"),
  [
    ({"seeds": 0}, "seeds=0"),
    ({"seeds": [1.5]}, "seeds="),
    ({"learning_rate": (1e-3, 0.0)}, "learning_rate value 0.0"),
    ({"clip": -1.0}, "clip value -1.0"),
    ({"gain": ()}, "gain=()"),
    ({"gain": (1.0, float("nan"))}, "gain value nan"),
  ],
)
def test_grid_rejects_bad_values_in_one_line(kwargs, match):
  with pytest.raises(ValueError, match=match) as info:
    rt.grid(learn_config(), **kwargs)
  assert "\n" not in str(info.value)


def test_vmapped_grid_members_are_the_runs_their_labels_name():
  # The block of 3 the blow-up tests compile: each member of the grid equals, bitwise, the
  # member built by hand from its label in another block (reversed order, so another slot).
  keys, hps, labels = rt.grid(blow_up_config(), seeds=(4, 9), learning_rate=(1e-2, 3e-3))
  keys, hps, labels = keys[:3], member(hps, slice(0, 3)), labels[:3]
  train = blow_up_train(1e7)  # the cache entry blow_up_run uses
  params, metrics = train(keys, hps)
  by_hand = rt.HParams(
    *(jnp.asarray([m[name] for m in labels[::-1]], jnp.float32) for name in rt.HParams._fields)
  )
  keys_by_hand = jnp.stack([jax.random.key(m["seed"]) for m in labels[::-1]])
  params_h, metrics_h = train(keys_by_hand, by_hand)
  for i in range(3):
    assert_trees_equal(member(metrics, i), member(metrics_h, 2 - i))
    assert_trees_equal(member(params, i), member(params_h, 2 - i))
  assert not np.array_equal(metrics["loss"][0], metrics["loss"][1])  # the seeds differ


# ----------------------------------------------------------------------------- periodic eval

EVAL_EVERY = 5
SOLVED_BELOW = 0.15  # a loose criterion that the lr 3e-2 member meets within 30 steps


def stop_task():
  return tasks.get("adding", 10)._replace(solved=lambda loss, metric: loss < SOLVED_BELOW)


def stop_config():
  """The blow-up block's config with a held-out evaluation every 5 steps and early stopping."""
  c = blow_up_config()
  c.diagnostics_every = 1  # params at every update count, as in blow_up_train
  c.eval.every = EVAL_EVERY
  c.eval.batch_size = 32
  c.eval.num_batches = 1
  c.eval.stop_when_solved = True
  return c


@functools.cache
def stop_run():
  """Learning rates 1e-2, 3e-2, 3e-3: member 1 solves (at update 10), 0 and 2 never do."""
  train = rt.make_train(stop_config(), diagnostics=lambda params, batch: params, task=stop_task())
  keys = jax.random.split(jax.random.key(21), BLOW_UP_MEMBERS)
  return keys, jax.jit(jax.vmap(train))(keys, blow_up_hparams(3e-2))


def test_periodic_evaluations_equal_evaluate_on_the_params_of_their_step():
  keys, (params, metrics) = stop_run()
  evals, history = metrics["evals"], metrics["diagnostics"]
  steps = np.arange(EVAL_EVERY, blow_up_config().num_steps + 1, EVAL_EVERY)
  np.testing.assert_array_equal(evals["step"], np.broadcast_to(steps, (BLOW_UP_MEMBERS, 6)))
  config, task = stop_config(), stop_task()
  evaluate = jax.jit(lambda p, k: rt.evaluate(config, p, k, task=task))
  for i in range(BLOW_UP_MEMBERS):
    k_eval = jax.random.split(keys[i], 4)[2]  # the held-out stream (module docstring)
    for j, step in enumerate(steps):
      scores = evaluate(member(history, (i, step)), k_eval)
      for name in ("loss", "metric"):
        np.testing.assert_allclose(
          evals[name][i, j], scores[name], rtol=1e-6, err_msg=f"{i}, {step}"
        )
      assert bool(evals["solved"][i, j]) == bool(scores["loss"] < SOLVED_BELOW)
  # The last evaluation is the final one (same held-out batches, same params).
  np.testing.assert_array_equal(evals["loss"][:, -1], metrics["eval_loss"])


def test_a_solved_member_stops_and_its_neighbours_run_on_bitwise_unchanged():
  _, (params, metrics) = stop_run()
  solved = np.asarray(metrics["evals"]["solved"])
  first = [int(np.flatnonzero(row)[0]) if row.any() else -1 for row in solved]
  solved_at = [(j + 1) * EVAL_EVERY if j >= 0 else -1 for j in first]
  np.testing.assert_array_equal(metrics["solved_at"], solved_at)
  assert solved_at[0] == solved_at[2] == -1 and solved_at[1] > 0, solved_at  # the setting works
  np.testing.assert_array_equal(metrics["diverged_at"], -1)
  np.testing.assert_array_equal(metrics["solved"], [False, True, False])
  # The block without evaluations or early stopping (compiled for the blow-up tests).
  params_b, metrics_b = blow_up_run(3e-2)
  for i in (0, 2):
    assert_trees_equal(member(params, i), member(params_b, i))
    for name in (*rt.STEP_METRICS, "diagnostics"):
      assert_trees_equal(member(metrics[name], i), member(metrics_b[name], i))
  # Member 1 trains as it would have up to solved_at, then keeps those params to the end.
  s = solved_at[1]
  history, history_b = metrics["diagnostics"], metrics_b["diagnostics"]
  assert_trees_equal(member(history, (1, slice(0, s + 1))), member(history_b, (1, slice(0, s + 1))))
  for step in range(s, blow_up_config().num_steps + 1):
    assert_trees_equal(member(history, (1, step)), member(history, (1, s)))
  assert_trees_equal(member(params, 1), member(history, (1, s)))
  assert not np.array_equal(member(params_b, 1).readout.w, member(params, 1).readout.w)
  # Stopped, not diverged: its later steps record the frozen params' losses, none rejected.
  assert not np.asarray(metrics["diverged"][1]).any()


# ----------------------------------------------------------------------------- hooks


def test_step_stats_and_diagnostics_are_recorded():
  config = small_config()
  key = jax.random.key(SMALL_KEY)
  params, metrics = small_run()
  assert metrics["update_norm"].shape == (config.num_steps,)
  assert (np.asarray(metrics["update_norm"]) > 0).all()
  np.testing.assert_array_equal(metrics["diagnostics_step"], [0, 2, 4])
  norms = np.asarray(metrics["diagnostics"]["w_hh_norm"])
  assert norms.shape == (3,)
  np.testing.assert_allclose(norms[-1], np.linalg.norm(params.encoder[0].w_hh), rtol=1e-6)
  k_init = jax.random.split(key, 4)[0]
  init = rt.make_model(config).init(k_init)
  np.testing.assert_allclose(norms[0], np.linalg.norm(init.encoder[0].w_hh), rtol=1e-6)
  assert metrics["eval_loss"].shape == () and np.isfinite(metrics["eval_loss"])


# ----------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("name", rt.OPTIMIZERS)
def test_optimizers_match_plain_optax(name):
  config = rt.default_config()
  config.optimizer.name = name
  config.optimizer.learning_rate = 0.1
  config.clip = 0.5
  plain = {
    "sgd": optax.sgd(0.1),
    "momentum": optax.sgd(0.1, momentum=0.9),
    "rmsprop": optax.rmsprop(0.1, decay=0.9, eps=1e-8),
    "adam": optax.adam(0.1, b1=0.9, b2=0.999, eps=1e-8),
    # The default mask decays the matrix "b" and leaves the vector "a" (a bias) alone.
    "adamw": optax.adamw(
      0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, mask={"a": False, "b": True}
    ),
  }[name]
  reference = optax.chain(optax.clip_by_global_norm(0.5), plain)
  tx = rt.make_optimizer(config)
  params = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2))}
  state, ref_state = tx.init(params), reference.init(params)
  for scale in (1.0, 0.01):  # the first step clips, the second does not
    grads = jax.tree.map(lambda p, s=scale: s * (p + 1.0), params)
    updates, state = tx.update(grads, state, params)
    ref_updates, ref_state = reference.update(grads, ref_state, params)
    # Adam's bias correction 1 - b2**t magnifies b2's float32 rounding (the injected
    # hyper-parameters are float32 arrays) to a few 1e-6.
    jax.tree.map(lambda u, r: np.testing.assert_allclose(u, r, rtol=2e-5), updates, ref_updates)


@pytest.mark.parametrize("decay_biases", [False, True])
def test_adamw_decays_the_matrices_decoupled_from_the_gradient(decay_biases):
  """With zero gradients Adam's step is 0, so the update is the decay alone: -lr * wd * p."""
  config = rt.default_config()
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 0.1
  config.optimizer.weight_decay = 0.01
  config.optimizer.decay_biases = decay_biases
  w = jnp.arange(12.0).reshape(3, 4) / 10
  params = {"cell": cells.LSTMParams(w, -w, jnp.ones(4)), "readout": layers.DenseParams(w.T, w[0])}
  tx = rt.make_optimizer(config)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)

  def check(path, update, value):
    factor = -0.1 * 0.01 if value.ndim >= 2 or decay_biases else 0.0
    np.testing.assert_allclose(update, factor * value, rtol=1e-6, err_msg=str(path))

  jax.tree_util.tree_map_with_path(check, updates, params)
  # A plain optax chain with the same mask gives the same updates on real gradients.
  mask = jax.tree.map(lambda p: decay_biases or p.ndim >= 2, params)
  reference = optax.chain(
    optax.clip_by_global_norm(1.0), optax.adamw(0.1, weight_decay=0.01, mask=mask)
  )
  grads = jax.tree.map(lambda p: jnp.sin(p) + 0.5, params)
  ref_updates, _ = reference.update(grads, reference.init(params), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  jax.tree.map(
    lambda u, r: np.testing.assert_allclose(u, r, rtol=2e-5, atol=1e-8), updates, ref_updates
  )


@pytest.mark.parametrize(
  ("schedule", "checks"),
  [
    ("none", {0: 1.0, 50: 1.0, 100: 1.0}),
    ("cosine", {0: 1.0, 50: 0.5 * (1 + 0.1), 100: 0.1}),
    ("warmup_cosine", {0: 0.0, 10: 1.0, 100: 0.1}),
    ("exponential", {0: 1.0, 50: 0.5**0.5, 100: 0.5}),
  ],
)
def test_schedules(schedule, checks):
  config = rt.default_config()
  config.num_steps = 100
  config.optimizer.schedule = schedule
  config.optimizer.warmup_steps = 10
  config.optimizer.end_factor = 0.1
  config.optimizer.decay_rate = 0.5
  lr = rt.make_schedule(config, learning_rate=0.2)
  for step, factor in checks.items():
    np.testing.assert_allclose(lr(step), 0.2 * factor, rtol=1e-5, atol=1e-7, err_msg=str(step))


def test_clip_threshold_zero_is_off_and_positive_rescales_to_it():
  grads = {"w": jnp.array([3.0, 4.0])}
  off = rt.clip_by_global_norm(0.0)
  np.testing.assert_array_equal(off.update(grads, off.init(grads))[0]["w"], grads["w"])
  on = rt.clip_by_global_norm(1.0)
  clipped = on.update(grads, on.init(grads))[0]
  np.testing.assert_allclose(diagnostics.global_norm(clipped), 1.0, rtol=1e-6)
  loose = rt.clip_by_global_norm(10.0)
  np.testing.assert_array_equal(loose.update(grads, loose.init(grads))[0]["w"], grads["w"])


# ----------------------------------------------------------------------------- TBPTT


@functools.cache
def tbptt_setup():
  config = rt.default_config()
  config.model.cell = "lstm"
  config.model.hidden_size = 3
  task = tasks.get("sine", 8)
  model = rt.make_model(config, task)
  params = model.init(jax.random.key(0))
  batch = task.sample(jax.random.key(1), 3)
  return model, task, params, batch


def tbptt_loss(params, k1, k2, carry=None):
  model, task, _, batch = tbptt_setup()
  outputs, _ = rt.tbptt_outputs(model, params, batch.inputs, k1, k2, carry)
  return task.loss(outputs, batch)


def reference_tbptt_loss(params, k1, k2):
  """Window by window from the definition: each output from a window of k2 steps."""
  model, task, _, batch = tbptt_setup()
  T = batch.inputs.shape[1]
  pieces = []
  for j in range((T - k2) // k1 + 1):
    start = j * k1
    _, state = model.apply(params, batch.inputs[:, :start])  # exact state at `start`
    state = jax.lax.stop_gradient(state)
    out, _ = model.apply(params, batch.inputs[:, start : start + k2], state)
    pieces.append(out if j == 0 else out[:, k2 - k1 :])
  return task.loss(jnp.concatenate(pieces, axis=1), batch)


def full_loss(params):
  model, task, _, batch = tbptt_setup()
  return task.loss(model.apply(params, batch.inputs)[0], batch)


TBPTT_GRAD = jax.jit(jax.value_and_grad(tbptt_loss), static_argnums=(1, 2))
REFERENCE_GRAD = jax.jit(jax.value_and_grad(reference_tbptt_loss), static_argnums=(1, 2))
FULL_GRAD = jax.jit(jax.value_and_grad(full_loss))


@pytest.mark.parametrize(("k1", "k2"), [(4, 4), (2, 6), (3, 8)])
def test_tbptt_gradient_matches_its_definition(k1, k2):
  _, _, params, _ = tbptt_setup()
  loss, grads = TBPTT_GRAD(params, k1, k2)
  full, full_grads = FULL_GRAD(params)
  # The forward pass is untouched by truncation.
  np.testing.assert_allclose(loss, full, rtol=1e-6)
  if k2 < 8:  # k2 == T needs no reference: it is full BPTT, checked below
    ref_loss, ref_grads = REFERENCE_GRAD(params, k1, k2)
    np.testing.assert_allclose(ref_loss, full, rtol=1e-6)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, ref_grads
    )
  diff = max(
    float(jnp.max(jnp.abs(a - b)))
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(full_grads), strict=True)
  )
  if k2 == 8:  # k2 == T: exactly full BPTT
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, full_grads
    )
  else:
    assert diff > 1e-4  # truncation changed the gradient


def test_tbptt_training_runs_on_the_exact_forward_pass():
  config = small_config()
  key = jax.random.key(SMALL_KEY)
  _, metrics = small_run()
  assert int(metrics["diverged_at"]) == -1
  assert np.isfinite(metrics["loss"]).all()
  # Step 0: the init params on the first batch (keys as the train docstring says); the
  # loss is that of the full forward pass (truncation only cuts gradients).
  k_init, k_data, _, _ = jax.random.split(key, 4)
  task = tasks.get(config.task.name, config.task.length)
  model = rt.make_model(config, task)
  params = model.init(k_init)
  batch = task.sample(jax.random.fold_in(k_data, 0), config.batch_size)

  def full_loss(p):
    return task.loss(model.apply(p, batch.inputs, lengths=batch.lengths)[0], batch)

  np.testing.assert_allclose(metrics["loss"][0], full_loss(params), rtol=1e-6)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
  ("field", "value", "match"),
  [
    ("model.cell", "transformer", "model.cell"),
    ("model.hidden_size", 0, "model.hidden_size"),
    ("model.num_layers", -1, "model.num_layers"),
    ("model.nonlinearity", "gelu", "model.nonlinearity"),
    ("model.readout", "mlp", "model.readout"),
    ("optimizer.name", "lbfgs", "optimizer.name"),
    ("optimizer.learning_rate", -1.0, "optimizer.learning_rate"),
    ("optimizer.learning_rate", float("nan"), "optimizer.learning_rate"),
    ("optimizer.schedule", "linear", "optimizer.schedule"),
    ("optimizer.warmup_steps", 10**6, "optimizer.warmup_steps"),
    ("clip", -1.0, "clip"),
    ("batch_size", 0, "batch_size"),
    ("num_steps", 0, "num_steps"),
    ("diagnostics_every", 7, "diagnostics_every"),
    ("tbptt.k2", None, "tbptt"),
    ("tbptt.k1", 0, "tbptt.k1"),
    ("eval.num_batches", -1, "eval.num_batches"),
    ("eval.every", 3, "eval.every"),
    ("eval.every", -1, "eval.every"),
    ("eval.stop_when_solved", None, "eval.stop_when_solved"),
    ("optimizer.weight_decay", -0.1, "optimizer.weight_decay"),
    ("optimizer.decay_biases", None, "optimizer.decay_biases"),
    ("divergence.loss_factor", 1.0, "divergence.loss_factor"),
    ("divergence.loss_factor", float("nan"), "divergence.loss_factor"),
    ("divergence.max_grad_norm", 0.0, "divergence.max_grad_norm"),
    ("model.recurrent_init", "xavier", "recurrent_init"),
    ("model.chrono_t_max", 1.0, "model.chrono_t_max"),
    ("model.dropout.input", 1.0, "model.dropout.input"),
    ("model.dropout.recurrent", -0.1, "model.dropout.recurrent"),
    ("task.name", "sudoku", "config.task.name=.sudoku. is invalid"),
  ],
)
def test_bad_config_values_raise_one_line_errors(field, value, match):
  config = small_config()
  *parents, leaf = field.split(".")
  node = config
  for p in parents:
    node = node[p]
  with config.unlocked():
    node[leaf] = value
  with pytest.raises(ValueError, match=match) as info:
    rt.make_train(config)
  assert "\n" not in str(info.value)


def test_early_stopping_needs_periodic_evaluations():
  config = small_config()
  config.eval.stop_when_solved = True
  with pytest.raises(ValueError, match="eval.stop_when_solved=True"):
    rt.make_train(config)
  config.eval.every, config.eval.num_batches = 2, 0
  with pytest.raises(ValueError, match="eval.num_batches=0 is invalid; expected an int >= 1"):
    rt.make_train(config)


def test_bad_tbptt_windows_and_hparams_raise():
  with pytest.raises(ValueError, match="k1 <= k2"):
    rt.make_train(small_config(k1=6, k2=5))
  with pytest.raises(ValueError, match="does not tile"):
    rt.make_train(small_config(k1=3, k2=10))  # (20 - 10) % 3 != 0
  with pytest.raises(ValueError, match="does not tile"):
    rt.make_train(small_config(k1=5, k2=25))  # k2 > T
  train = small_train()
  hp = rt.default_hparams(small_config())
  with pytest.raises(ValueError, match="hparams.learning_rate has shape"):
    train(jax.random.key(0), hp._replace(learning_rate=jnp.ones(3)))


# ----------------------------------------------------------------------------- streams

STREAM_T, STREAM_B, STREAM_WINDOWS = 4, 2, 3


def toy_stream_task():
  """A 5-symbol token stream cut into 2 rows of 3 windows of 4 steps (plus one token)."""
  vocab = "abcde"
  per_row = STREAM_WINDOWS * STREAM_T + 1
  tokens = jax.random.randint(jax.random.key(5), (STREAM_B * per_row,), 0, len(vocab))
  stream = tasks.Stream(tokens, vocab)

  def loss(outputs, batch):
    nll = optax.softmax_cross_entropy_with_integer_labels(outputs, batch.targets)
    return jnp.sum(nll * batch.mask) / jnp.sum(batch.mask)

  def sample(key, batch_size):
    start = jax.random.randint(key, (), 0, STREAM_WINDOWS) * STREAM_T
    return stream.window(stream.parallel(batch_size), start, STREAM_T)

  return tasks.Task(
    "toy_stream", STREAM_T, len(vocab), len(vocab), "classification", sample, loss, loss,
    "nll", float(np.log(len(vocab))), "ln 5", lambda l, m: l < 0.1, "test", stream,
  )  # fmt: skip


def test_stream_carries_the_state_across_updates():
  task = toy_stream_task()
  config = tiny_config()
  config.task.name, config.task.length = "toy_stream", STREAM_T
  config.model.cell, config.optimizer.name = "elman", "sgd"
  config.batch_size, config.num_steps = STREAM_B, 5
  config.tbptt.k1, config.tbptt.k2 = 2, STREAM_T
  key = jax.random.key(11)
  hp = rt.default_hparams(config)._replace(learning_rate=jnp.float32(0.0))  # params fixed
  params, metrics = rt.make_train(config, task=task)(key, hp)
  model = rt.make_model(config, task)
  rows = task.stream.parallel(STREAM_B)
  # The run starts at a random window and wraps around (state reset) after the last.
  first = jax.random.randint(jax.random.split(key, 4)[1], (), 0, STREAM_WINDOWS)
  for s in range(config.num_steps):
    w = (int(first) + s) % STREAM_WINDOWS
    prefix = task.stream.window(rows, 0, w * STREAM_T) if w else None
    carry = model.apply(params, prefix.inputs)[1] if w else None
    batch = task.stream.window(rows, w * STREAM_T, STREAM_T)
    expected = task.loss(model.apply(params, batch.inputs, carry)[0], batch)
    np.testing.assert_allclose(metrics["loss"][s], expected, rtol=1e-5, err_msg=f"step {s}")
  # Without the carried state the later windows would score differently.
  zero = task.loss(model.apply(params, task.stream.window(rows, STREAM_T, STREAM_T).inputs)[0],
                   task.stream.window(rows, STREAM_T, STREAM_T))  # fmt: skip
  w1 = [s for s in range(config.num_steps) if (int(first) + s) % STREAM_WINDOWS == 1][0]
  assert abs(float(metrics["loss"][w1]) - float(zero)) > 1e-4


# ----------------------------------------------------------------------------- dropout, cells


def dropout_config():
  """Elman(4) x 2 layers, SGD, TBPTT(2, 4) on adding at T=10 for 3 steps, with every kind
  of dropout (the cheapest loop to compile that has them all)."""
  c = tiny_config()
  c.model.cell = "elman"
  c.model.num_layers = 2
  c.optimizer.name = "sgd"
  c.tbptt.k1, c.tbptt.k2 = 2, 4
  c.model.dropout.input = 0.1
  c.model.dropout.between = 0.3
  c.model.dropout.output = 0.2
  c.model.dropout.recurrent = 0.2
  c.eval.batch_size = 8
  return c


def test_dropout_masks_come_from_the_step_key_per_member_and_never_in_evaluation():
  config = dropout_config()
  train = jax.jit(jax.vmap(rt.make_train(config)))
  keys = jax.random.split(jax.random.key(5), 3)
  params, metrics = train(keys)
  other_params, other_metrics = train(keys.at[1].set(jax.random.key(99)))
  # Another key for member 1 changes member 1 only: its neighbours' masks are their own.
  first, second = jax.tree.leaves((params, metrics)), jax.tree.leaves((other_params, other_metrics))
  for member in (0, 2):
    for a, b in zip(first, second, strict=True):
      np.testing.assert_array_equal(a[member], b[member])
  assert not np.array_equal(metrics["loss"][1], other_metrics["loss"][1])
  # Step 0 by hand: the batch of fold_in(k_data, 0), the masks of fold_in(fold_in(key, 4), 0),
  # one full unroll (so the TBPTT windows shared the masks); evaluation (rt.evaluate) against
  # the config without dropout. One program, one compile.
  trainer = rt.make_trainer(config)
  model, task = trainer.model, trainer.task
  plain = dropout_config()
  for field in ("input", "between", "output", "recurrent"):
    plain.model.dropout[field] = 0.0

  @jax.jit
  def by_hand(key, member_params):
    params = trainer.init(key).params
    batch = task.sample(jax.random.fold_in(rt.split_key(key)[1], 0), config.batch_size)
    mask_key = jax.random.fold_in(jax.random.fold_in(key, rt.DROPOUT_STREAM), 0)
    outputs, _ = model.apply(params, batch.inputs, lengths=batch.lengths, key=mask_key)
    deterministic, _ = model.apply(params, batch.inputs, lengths=batch.lengths)
    evaluations = [
      rt.evaluate(c, member_params, rt.split_key(key)[2], 1, task=trainer.eval_task)["loss"]
      for c in (config, plain)
    ]
    losses = task.loss(outputs, batch), task.loss(deterministic, batch)
    return losses, evaluations

  (loss, deterministic), (evaluation, plain_evaluation) = by_hand(
    keys[0], jax.tree.map(lambda leaf: leaf[0], params)
  )
  np.testing.assert_allclose(metrics["loss"][0, 0], loss, rtol=1e-5)
  assert abs(float(deterministic) - float(loss)) > 1e-4  # the masks did something
  # Evaluation runs the deterministic model: the same score as with dropout off.
  np.testing.assert_array_equal(evaluation, plain_evaluation)


def test_layer_normalised_cells_are_selectable():
  for name, params_type in (
    ("layer_norm_lstm", cells.LayerNormLSTMParams),
    ("layer_norm_gru", cells.LayerNormGRUParams),
  ):
    config = tiny_config()
    config.model.cell = name
    config.model.chrono_t_max = 8.0
    model = rt.make_model(config)
    params = jax.eval_shape(lambda k, model=model: model.init(k), jax.random.key(0))
    assert isinstance(params.encoder[0], params_type)
    assert params.encoder[0].w_hh.shape == (4, (4 if name == "layer_norm_lstm" else 3) * 4)
    config.model.dropout.recurrent = 0.1
    with pytest.raises(ValueError, match=rf"model.dropout.recurrent=0.1 .* 0 for the {name} cell"):
      rt.make_model(config)


# ----------------------------------------------------------------------------- own cells


def own_cell_config():
  c = rt.default_config()
  c.task.length = 5
  c.model.cell = "elman"
  c.model.hidden_size = 4
  c.batch_size = 4
  c.num_steps = 3
  c.eval.batch_size = 8
  c.eval.num_batches = 1
  return c


def elman_of_my_own(hidden_size, *, recurrent_init, gain, input_init):
  """A factory of one's own: takes the options its signature names, no others."""
  return cells.elman(
    hidden_size, "tanh", recurrent_init=recurrent_init, gain=gain, input_init=input_init
  )


def test_a_cell_of_ones_own_trains_as_a_factory_or_an_import_path():
  key = jax.random.key(0)
  builtin = rt.make_train(own_cell_config())(key)
  by_factory = rt.make_train(own_cell_config(), cell=elman_of_my_own)(key)
  by_path_config = own_cell_config()
  by_path_config.model.cell = "rnnlab.cells:elman"
  by_path = rt.make_train(by_path_config)(key)
  for other in (by_factory, by_path):
    for a, b in zip(jax.tree.leaves(builtin), jax.tree.leaves(other), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_cell_of_ones_own_that_cannot_be_made_is_one_line():
  config = own_cell_config()
  for cell, message in (
    ("no_such_module:cell", r"config\.model\.cell='no_such_module:cell' is invalid.*import path"),
    ("rnnlab.cells:no_such_factory", r"AttributeError"),
    ("lstmm", r"one of \('elman'"),
  ):
    config.model.cell = cell
    with pytest.raises(ValueError, match=message):
      rt.check_config(config)
  with pytest.raises(ValueError, match=r"returned int; expected an rnnlab.Cell"):
    rt.make_model(own_cell_config(), cell=lambda hidden_size: 3)
