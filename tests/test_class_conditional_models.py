"""Class-conditional backbones: the learned class embedding of the MLP and the U-Net, and build_model's labels.

An unconditional backbone (classes = 0) must stay what it was: no embedding, the same keys and weights.
A conditional one reads a label per sample (NULL_LABEL, or no labels at all, for the null class of
classifier-free guidance), per sample, with one-line errors for labels it cannot read.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from scorelab.core.errors import ConfigError, DataError
from scorelab.core.guidance import NULL_LABEL
from scorelab.core.processes import VE, VP
from scorelab.models.labels import LabelEmbedding
from scorelab.models.mlp import ConditionalMLP
from scorelab.models.preconditioning import Preconditioned
from scorelab.models.registry import build_model
from scorelab.models.settings import SETTINGS
from scorelab.models.unet import UNet

CLASSES = 3
BACKBONES = ["mlp_log", "mlp_sinusoidal", "unet"]
MLP_MODELS = ["noise_conditional", "ddpm", "edm", "consistency"]
UNLABELLED_MODELS = ["wavegrad", "condlinear", "mlp", "energy"]


def backbone(kind: str, classes: int = CLASSES, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """A small seeded backbone and the shape of one of its samples. The U-Net's zero-initialised last conv
    is redrawn, so that its output (and the gradient to its embedding) depends on every layer."""
    torch.manual_seed(seed)
    if kind == "unet":
        net = UNet((1, 8, 8), channels=8, res_blocks=1, classes=classes)
        nn.init.normal_(net.conv_out.weight, std=0.1)
        nn.init.normal_(net.conv_out.bias, std=0.1)
        return net, (1, 8, 8)
    noise_input = kind.removeprefix("mlp_")
    return ConditionalMLP(2, 32, 2, noise_input=noise_input, fourier_features=4, classes=classes), (2,)


def inputs(shape: tuple[int, ...], batch: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=generator), torch.randn(batch, generator=generator)


def settings(name: str) -> object:
    """The model's default settings, the U-Net's made small so that it builds and runs fast."""
    if name == "unet":
        return dataclasses.replace(SETTINGS["unet"](), channels=8, res_blocks=1)
    return SETTINGS[name]()


@pytest.mark.parametrize("name", [*MLP_MODELS, "unet"])
def test_unconditional_models_have_no_embedding_and_a_seed_fixes_their_weights(name):
    shape, process = ((1, 8, 8), VP()) if name == "unet" else ((2,), VE(10.0, 0.01))
    first, second = (build_model(name, settings(name), shape=shape, process=process, seed=5) for _ in range(2))
    state = first.state_dict()
    assert not any("labels" in key for key in state)
    assert state.keys() == second.state_dict().keys()
    assert all(torch.equal(value, second.state_dict()[key]) for key, value in state.items())


def test_the_conditional_unet_draws_the_unconditional_weights_first():
    # The embedding is drawn last, so every other layer starts where the unconditional network of the seed does.
    plain, conditional = (build_model("unet", settings("unet"), shape=(1, 8, 8), process=VP(), seed=2,
                                      classes=classes).state_dict() for classes in (0, CLASSES))
    assert set(conditional) - set(plain) == {"backbone.labels.table.weight"}
    assert all(torch.equal(value, conditional[key]) for key, value in plain.items())


@pytest.mark.parametrize("kind", BACKBONES)
def test_unconditional_backbones_refuse_labels(kind):
    net, shape = backbone(kind, classes=0)
    x, c_noise = inputs(shape)
    with pytest.raises(ConfigError, match="takes no condition"):
        net(x, c_noise, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("kind", BACKBONES)
def test_output_shape(kind):
    net, shape = backbone(kind)
    x, c_noise = inputs(shape)
    out = net(x, c_noise, torch.tensor([0, 1, 2, NULL_LABEL]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", BACKBONES)
def test_no_labels_are_the_null_class(kind):
    net, shape = backbone(kind)
    x, c_noise = inputs(shape)
    assert torch.equal(net(x, c_noise), net(x, c_noise, torch.full((4,), NULL_LABEL)))


@pytest.mark.parametrize("kind", BACKBONES)
def test_each_class_gives_its_own_output(kind):
    net, shape = backbone(kind)
    x, c_noise = inputs(shape, batch=1)
    outputs = [net(x, c_noise, torch.tensor([label])) for label in [0, 1, 2, NULL_LABEL]]
    for i, first in enumerate(outputs):
        for second in outputs[i + 1:]:
            assert (first - second).abs().max() > 1e-4


@pytest.mark.parametrize("kind", BACKBONES)
def test_gradients_reach_the_rows_of_the_labels_used(kind):
    net, shape = backbone(kind)
    x, c_noise = inputs(shape)
    net(x, c_noise, torch.tensor([0, 2, 0, NULL_LABEL])).square().sum().backward()
    row_norms = net.labels.table.weight.grad.norm(dim=1)
    assert (row_norms[[0, 2, CLASSES]] > 0).all()
    assert row_norms[1] == 0


@pytest.mark.parametrize("kind", BACKBONES)
def test_mixed_labels_in_a_batch_give_each_row_its_own_output(kind):
    net, shape = backbone(kind)
    x, c_noise = inputs(shape, batch=5)
    labels = torch.tensor([2, NULL_LABEL, 0, 1, 2])
    together = net(x, c_noise, labels)
    for i in range(5):
        alone = net(x[i:i + 1], c_noise[i:i + 1], labels[i:i + 1])
        torch.testing.assert_close(together[i:i + 1], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", BACKBONES)
@pytest.mark.parametrize(("labels", "words"), [
    (torch.tensor([0.0, 1.0, 2.0, 0.0]), "torch.float32"),
    (torch.tensor([True, False, True, False]), "torch.bool"),
    (torch.tensor([0, 1, 3, 0]), "from 0 to 3"),
    (torch.tensor([0, -2, 1, 0]), "from -2 to 1"),
    (torch.tensor([0, 1, 2]), "shape [3]"),
    (torch.zeros(4, 1, dtype=torch.long), "shape [4, 1]"),
    ([0, 1, 2, 0], "a list"),
])
def test_bad_labels_are_refused_in_one_line(kind, labels, words):
    net, shape = backbone(kind)
    x, c_noise = inputs(shape)
    with pytest.raises(DataError) as error:
        net(x, c_noise, labels)
    message = str(error.value)
    assert "\n" not in message
    assert f"[0, {CLASSES}) or {NULL_LABEL}" in message
    assert words in message


def test_the_label_embedding_reads_the_null_label_as_its_last_row():
    torch.manual_seed(0)
    embedding = LabelEmbedding(CLASSES, 5)
    rows = embedding(torch.tensor([1, NULL_LABEL, 0]), 3, "cpu")
    assert torch.equal(rows, embedding.table.weight[[1, CLASSES, 0]])
    assert torch.equal(embedding(None, 2, "cpu"), embedding.table.weight[[CLASSES, CLASSES]])


@pytest.mark.parametrize("classes", [-1, 1.5, True])
def test_a_bad_number_of_classes_is_refused(classes):
    with pytest.raises(ConfigError, match="classes must be a positive integer"):
        ConditionalMLP(classes=classes)


@pytest.mark.parametrize("kind", BACKBONES)
@pytest.mark.parametrize("parameterisation", ["ve", "eps", "edm", "consistency"])
def test_the_preconditioned_wrapper_passes_the_labels_on(kind, parameterisation):
    net, shape = backbone(kind)
    model = Preconditioned(net, parameterisation, sigma_data=0.5, sigma_min=0.002)
    x, _ = inputs(shape)
    sigma = torch.tensor([0.1, 0.5, 1.0, 5.0])
    labels = torch.tensor([0, 1, 2, 0])
    for view in (model, model.denoise, model.eps):
        labelled = view(x, sigma, cond=labels)
        assert torch.equal(view(x, sigma, cond=torch.full((4,), NULL_LABEL)), view(x, sigma))
        assert ((labelled - view(x, sigma)).flatten(1).abs().amax(dim=1) > 1e-6).all()


@pytest.mark.parametrize("name", [*MLP_MODELS, "unet"])
def test_build_model_makes_class_conditional_models(name):
    shape, process = ((1, 8, 8), VP()) if name == "unet" else ((2,), VE(10.0, 0.01))
    model = build_model(name, settings(name), shape=shape, process=process, seed=0, classes=CLASSES)
    assert model.backbone.labels.classes == CLASSES
    x, _ = inputs(shape)
    out = model(x, torch.full((4,), 0.5), torch.tensor([0, 1, 2, NULL_LABEL]))
    assert out.shape == x.shape


@pytest.mark.parametrize("name", UNLABELLED_MODELS)
def test_build_model_refuses_labels_for_models_that_cannot_read_them(name):
    with pytest.raises(ConfigError) as error:
        build_model(name, SETTINGS[name](), shape=(2,), process=VE(10.0, 0.01), classes=2)
    message = str(error.value)
    assert "\n" not in message
    assert f"model {name!r} takes no class labels" in message
