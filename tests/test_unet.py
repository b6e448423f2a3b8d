"""The U-Net backbone: shapes through the preconditioning wrapper, its checks, and the properties
training relies on (per-sample outputs, zero start, gradients everywhere, dependence on σ).

Networks here are narrow (``channels=8``) so that the file runs in seconds.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scorelab.core.errors import ConfigError, DataError
from scorelab.models.preconditioning import Preconditioned
from scorelab.models.unet import SelfAttention, UNet, group_norm

SMALL = {"channels": 8, "res_blocks": 1}


def unet(shape=(1, 8, 8), seed: int = 0, randomise_output: bool = True, **settings) -> UNet:
    """A small seeded U-Net; with ``randomise_output`` its zero-initialised last conv is redrawn,
    so that its output depends on every layer (as it does after training)."""
    torch.manual_seed(seed)
    net = UNet(shape, **{**SMALL, **settings})
    if randomise_output:
        nn.init.normal_(net.conv_out.weight, std=0.1)
        nn.init.normal_(net.conv_out.bias, std=0.1)
    return net


@pytest.mark.parametrize("parameterisation", ["ve", "eps", "edm"])
@pytest.mark.parametrize(("shape", "levels"), [((1, 8, 8), 2), ((1, 28, 28), 3), ((3, 16, 12), 2), ((1, 8, 8), 1)])
def test_preconditioned_shapes(shape, levels, parameterisation):
    model = Preconditioned(unet(shape, levels=levels), parameterisation, sigma_data=0.5)
    x = torch.randn(3, *shape)
    sigma = torch.tensor([0.01, 1.0, 50.0])
    for view in (model, model.denoise, model.eps):
        out = view(x, sigma)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()


def test_default_settings_run_on_both_image_sizes():
    for shape in [(1, 8, 8), (1, 28, 28)]:
        torch.manual_seed(0)
        net = UNet(shape)
        assert net(torch.randn(2, *shape), torch.zeros(2)).shape == (2, *shape)
    assert isinstance(net.middle[0].attention, SelfAttention)
    assert not any(isinstance(m, SelfAttention) for m in UNet((1, 8, 8), attention=False).modules())


@pytest.mark.parametrize(("shape", "levels", "words"), [
    ((1, 28, 27), 2, ["28×27", "1 times", "divisible by 2"]),
    ((1, 28, 28), 4, ["28×28", "3 times", "divisible by 8"]),
    ((3, 9, 8), 2, ["9×8", "divisible by 2"]),
])
def test_indivisible_sizes_are_refused_in_one_line(shape, levels, words):
    with pytest.raises(ConfigError) as error:
        UNet(shape, levels=levels)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert "fewer levels" in message


@pytest.mark.parametrize("settings", [
    {"image_shape": (8, 8)}, {"image_shape": (1, 0, 8)}, {"channels": 0}, {"levels": 0}, {"res_blocks": 0},
    {"dropout": 1.0}, {"dropout": -0.1}, {"heads": 0}, {"channels": 8, "heads": 3},
])
def test_nonsensical_settings_are_refused(settings):
    with pytest.raises(ConfigError) as error:
        UNet(**{"image_shape": (1, 8, 8), **settings})
    assert "\n" not in str(error.value)


def test_wrong_input_shapes_are_refused_in_one_line():
    net = unet((1, 8, 8))
    for x in [torch.randn(2, 1, 8, 9), torch.randn(2, 3, 8, 8), torch.randn(2, 64), torch.randn(1, 8, 8)]:
        with pytest.raises(DataError) as error:
            net(x, torch.zeros(x.shape[0]))
        assert "\n" not in str(error.value)
    with pytest.raises(DataError):
        net(torch.randn(4, 1, 8, 8), torch.zeros(3))


def test_group_counts_divide_every_width():
    for width in [1, 3, 8, 12, 16, 24, 40, 96, 256]:
        groups = group_norm(width).num_groups
        assert width % groups == 0
        assert width // groups >= min(4, width)
    assert group_norm(256).num_groups == 32


def test_each_sample_depends_only_on_itself():
    # In training mode, where BatchNorm would mix the batch (in eval mode it would not).
    net = unet((1, 8, 8), levels=2).train()
    x, c_noise = torch.randn(5, 1, 8, 8), torch.randn(5)
    reference = net(x, c_noise)[0]
    changed_x, changed_c = x.clone(), c_noise.clone()
    changed_x[1:] = 10 * torch.randn(4, 1, 8, 8)
    changed_c[1:] = torch.randn(4) + 3
    torch.testing.assert_close(net(changed_x, changed_c)[0], reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net(x[:1], c_noise[:1])[0], reference, atol=1e-5, rtol=1e-5)
    # The check can fail: the other samples do change their own outputs.
    assert not torch.allclose(net(changed_x, changed_c)[1], net(x, c_noise)[1])


def test_untrained_backbone_outputs_zero():
    net = unet((3, 16, 12), randomise_output=False)
    x = torch.randn(4, 3, 16, 12)
    assert torch.equal(net(x, torch.randn(4)), torch.zeros_like(x))
    # So the untrained EDM denoiser is its skip path c_skip·x = σ_d²/(σ² + σ_d²)·x.
    model = Preconditioned(net, "edm", sigma_data=0.5)
    sigma = torch.tensor([0.1, 0.5, 1.0, 5.0])
    c_skip = (0.25 / (sigma**2 + 0.25))[:, None, None, None]
    torch.testing.assert_close(model.denoise(x, sigma), c_skip * x)


def _nonzero_gradients(net: nn.Module) -> dict[str, bool]:
    return {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in net.named_parameters()}


@pytest.mark.parametrize("heads", [1, 2])
def test_gradients_reach_every_parameter(heads):
    net = unet((1, 8, 8), levels=2, heads=heads)
    assert isinstance(net.middle[0].attention, SelfAttention)
    net(torch.randn(4, 1, 8, 8), torch.randn(4)).square().mean().backward()
    missing = [name for name, ok in _nonzero_gradients(net).items() if not ok]
    assert not missing


def test_one_training_step_opens_every_gradient_from_the_zero_start():
    net = unet((1, 8, 8), levels=2, randomise_output=False)
    model = Preconditioned(net, "edm", sigma_data=0.5)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 1, 8, 8)
    sigma = torch.exp(torch.randn(8))
    noisy = x + sigma[:, None, None, None] * torch.randn_like(x)
    gradients = []
    for _ in range(2):
        optimiser.zero_grad()
        ((model.denoise(noisy, sigma) - x) ** 2).mean().backward()
        gradients.append(_nonzero_gradients(net))
        optimiser.step()
    # At the zero start only the output conv learns; after one step every layer does.
    assert [name for name, ok in gradients[0].items() if ok] == ["conv_out.weight", "conv_out.bias"]
    assert all(gradients[1].values())


@pytest.mark.slow
def test_output_depends_on_the_noise_level():
    x = torch.randn(4, 1, 8, 8)
    net = unet((1, 8, 8))
    assert not torch.allclose(net(x, torch.full((4,), -2.0)), net(x, torch.full((4,), 2.0)), atol=1e-4)
    # From the zero start, a few steps on a loss that wants F = c_noise (so F(2) − F(−2) = 4) make σ matter.
    net = unet((1, 8, 8), randomise_output=False)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(20):
        c_noise = 3 * torch.randn(8)
        optimiser.zero_grad()
        ((net(x.repeat(2, 1, 1, 1), c_noise) - c_noise[:, None, None, None]) ** 2).mean().backward()
        optimiser.step()
    low, high = net(x, torch.full((4,), -2.0)), net(x, torch.full((4,), 2.0))
    assert (high - low).mean() > 1.0


def test_one_noise_level_broadcasts_over_the_batch():
    net = unet((1, 8, 8))
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(net(x, torch.tensor(0.7)), net(x, torch.full((3,), 0.7)))


def test_same_seed_same_weights():
    first, second, other = unet(seed=5, randomise_output=False), unet(seed=5, randomise_output=False), \
        unet(seed=6, randomise_output=False)
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(),
                               other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(first.conv_in.weight, other.conv_in.weight)


def test_dropout_is_active_only_in_training():
    net = unet((1, 8, 8), dropout=0.5)
    x, c_noise = torch.randn(2, 1, 8, 8), torch.zeros(2)
    assert not torch.allclose(net(x, c_noise), net(x, c_noise))
    net.eval()
    torch.testing.assert_close(net(x, c_noise), net(x, c_noise))


def test_a_condition_is_refused():
    net = unet()
    with pytest.raises(ConfigError, match="no condition"):
        net(torch.randn(2, 1, 8, 8), torch.zeros(2), torch.tensor([0, 1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_and_agrees_with_cpu():
    net = unet((3, 16, 12), levels=2)
    x, c_noise = torch.randn(2, 3, 16, 12), torch.randn(2)
    expected = net(x, c_noise)
    out = net.cuda()(x.cuda(), c_noise.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), expected, atol=1e-4, rtol=1e-4)
