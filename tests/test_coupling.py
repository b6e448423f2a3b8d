"""Minibatch optimal-transport coupling for flow matching (issue 33 item 2), against closed forms.

The pairing must be the optimal permutation (checked by brute force and, in one dimension, against the
monotone rearrangement, the optimal coupling of any convex cost), keep both marginals and the classes,
and the loss must be flow matching's on the paired draws. Trained on Gaussian data, the straighter flow
it learns takes the prior to the data in one Euler step, where independent pairs collapse to the mean.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli, tiny_config

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.core.processes import Flow
from scorelab.core.registry import make_settings
from scorelab.core.rng import randn_like
from scorelab.objectives.coupling import optimal_pairing
from scorelab.objectives.registry import OBJECTIVES, flow_matching_loss_at
from scorelab.runs.trained import load_run


def _cost(x, noise, pairing):
    return float((x[pairing] - noise).square().sum())


def test_the_pairing_is_the_cheapest_permutation():
    generator = torch.Generator().manual_seed(0)
    x, noise = torch.randn(7, 2, generator=generator), torch.randn(7, 2, generator=generator)
    pairing = optimal_pairing(x, noise, block=7)
    assert sorted(pairing.tolist()) == list(range(7))
    cheapest = min(_cost(x, noise, torch.tensor(order)) for order in itertools.permutations(range(7)))
    assert _cost(x, noise, pairing) == pytest.approx(cheapest, rel=1e-12)
    assert _cost(x, noise, pairing) < _cost(x, noise, torch.arange(7))


def test_in_one_dimension_it_pairs_the_kth_smallest_with_the_kth_smallest():
    generator = torch.Generator().manual_seed(1)
    x, noise = 3 + 0.5 * torch.randn(300, 1, generator=generator), torch.randn(300, 1, generator=generator)
    paired = x[optimal_pairing(x, noise, block=300)]
    order = noise[:, 0].argsort()
    assert torch.equal(paired[order, 0], x[:, 0].sort().values)


def test_blocks_and_classes_pair_only_among_themselves_and_keep_both_marginals():
    generator = torch.Generator().manual_seed(2)
    x, noise = torch.randn(100, 3, generator=generator), torch.randn(100, 3, generator=generator)
    labels = torch.randint(0, 3, (100,), generator=generator)
    pairing = optimal_pairing(x, noise, block=16, labels=labels)
    assert sorted(pairing.tolist()) == list(range(100))  # the data are only reordered
    assert torch.equal(labels[pairing], labels)
    for label in range(3):
        rows = (labels == label).nonzero()[:, 0]
        for block in rows.split(16):
            assert set(pairing[block].tolist()) == set(block.tolist())
    # Within blocks the cost falls, and a larger block pairs better still.
    independent = _cost(x, noise, torch.arange(100))
    assert _cost(x, noise, optimal_pairing(x, noise, block=100)) <= _cost(x, noise, optimal_pairing(x, noise, block=16))
    assert _cost(x, noise, pairing) < independent


def test_a_condition_that_is_not_a_label_per_example_is_refused():
    x = torch.zeros(4, 2)
    with pytest.raises(ConfigError, match="one integer label per example") as error:
        optimal_pairing(x, torch.ones(4, 2), block=4, labels=torch.zeros(4, 80, 3))
    assert "\n" not in str(error.value)


def test_the_ot_loss_is_flow_matching_on_the_paired_draws():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(64, 2, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 2, (64,), generator=generator)
    settings = make_settings(OBJECTIVES["flow_matching"].settings, {"coupling": "ot", "coupling_block": 32},
                             "objective 'flow_matching'")

    def score(y, sigma, cond=None):  # depends on the label, so a pairing that lost it would show
        return -y / (1 + sigma[:, None] ** 2) + 0.1 * cond[:, None]

    loss = OBJECTIVES["flow_matching"].loss(score, x, labels, Flow(), settings, torch.Generator().manual_seed(4))
    replay = torch.Generator().manual_seed(4)
    sigma = Flow().training_sigma(64, x, replay)
    noise = randn_like(x, replay)
    pairing = optimal_pairing(x, noise, block=32, labels=labels)
    expected = flow_matching_loss_at(score, x[pairing], sigma, cond=labels[pairing], noise=noise)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)


@pytest.mark.slow
def test_on_gaussian_data_ot_pairs_make_one_euler_step_a_sample(tmp_path):
    """For x ~ N(m, s²I) the optimal coupling is z ↦ m + s·z, a straight flow: one Euler step from t = 1 lands
    on the data. Independent pairs give the flow whose first step from t = 1 goes to E[x] = m."""
    points = np.array([2.0, -1.0]) + 0.5 * np.random.default_rng(5).standard_normal((4000, 2))
    np.save(tmp_path / "gaussian.npy", points.astype(np.float32))
    spread = {}
    for coupling in ("independent", "ot"):
        config = tiny_config(dataset=str(tmp_path / "gaussian.npy"), process="flow", objective="flow_matching",
                             steps=800, batch_size=256, hidden=64, depth=2, lr=3e-3, coupling=coupling,
                             coupling_block=256)
        sl.train(config, tmp_path / coupling, progress=False)
        samples = load_run(tmp_path / coupling, "cpu").sample(2000, sampler="euler", sample_steps=1,
                                                              generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(samples.mean(0), torch.tensor([2.0, -1.0]), rtol=0, atol=0.15)
        spread[coupling] = samples.std(0)
    # The data's own spread is 0.5 in each coordinate. One step's map is the denoiser at σ_max, which 800 steps
    # learn roughly (the level is drawn rarely): the coupled run keeps most of the spread, the independent one
    # little of it.
    assert torch.all((0.35 < spread["ot"]) & (spread["ot"] < 0.65)), spread
    assert torch.all(spread["independent"] < 0.2), spread


def test_waveforms_conditioned_on_their_mel_refuse_the_coupling_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--coupling ot pairs data with noise within classes"):
        sl.Config(dataset="tones", process="flow", objective="flow_matching", coupling="ot")
    code, out, err = run_cli(capsys, "train", "--dataset", "tones", "--process", "flow", "--objective",
                             "flow_matching", "--coupling", "ot", "--out", tmp_path / "run", "--steps", 2)
    assert_clean_error(code, err, "leave it out")
    assert not (tmp_path / "run").exists()


def test_an_unknown_coupling_is_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--dataset", "moons", "--out", tmp_path / "run", "--coupling",
                             "sinkhorn")
    assert_clean_error(code, err, "sinkhorn")
