"""Annealed Langevin with an exact mixture score recovers the mode weights (NCSN, Fig. 3)."""

import torch

import scorelab as sl


def two_mode_mixture() -> sl.data.GaussianMixture:
    return sl.data.GaussianMixture(means=[[5.0, 5.0], [-5.0, -5.0]], stds=1.0, weights=[0.8, 0.2])


def test_recovers_mode_weights():
    mixture = two_mode_mixture()
    generator = torch.Generator().manual_seed(0)
    start = torch.rand(1280, 2, generator=generator) * 16 - 8
    sigmas = sl.noise.geometric_sigmas(20.0, 1.0, 10)
    samples = sl.sampling.annealed_langevin(mixture, start, sigmas, n_steps_each=100, step_size=0.1,
                                            generator=generator)
    major_share = (samples.sum(dim=1) > 0).float().mean().item()
    assert abs(major_share - 0.8) <= 0.03


def test_final_denoising_step_is_tweedie():
    mixture = two_mode_mixture()
    x = torch.tensor([[4.0, 6.0], [-3.0, -5.5]])
    sigmas = torch.tensor([1.0])
    seen = []
    sl.sampling.annealed_langevin(mixture, x, sigmas, n_steps_each=1, step_size=1e-12,
                                  generator=torch.Generator().manual_seed(0), callback=seen.append)
    before = seen[0].x
    assert torch.allclose(seen[-1].x, before + mixture.score(before, 1.0), atol=1e-5)


def test_does_not_mutate_input_and_follows_dtype():
    x = torch.zeros(8, 2, dtype=torch.float64)
    out = sl.sampling.annealed_langevin(two_mode_mixture(), x, torch.tensor([2.0, 1.0]), n_steps_each=3,
                                        step_size=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.zeros(8, 2, dtype=torch.float64))
    assert out.dtype == torch.float64
