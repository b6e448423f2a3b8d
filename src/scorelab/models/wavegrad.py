"""The WaveGrad backbone: F(x_in, c_noise, cond = log-mel) on waveforms [B, 1, L], to wrap in :class:`Preconditioned`.

WaveGrad (Chen et al. 2020, "WaveGrad: Estimating Gradients for Waveform Generation", Sec. 3
and Fig. 3–5) predicts the noise ε of a waveform y_n = √ᾱ y_0 + √(1 − ᾱ) ε from y_n, its mel
spectrogram and the continuous noise level √ᾱ. Two paths meet in it:

- **Upsampling (UBlocks)** from the mel frames to the waveform's rate: a 3-wide conv from
  ``n_mels`` to the first width, then one UBlock per factor of ``factors`` (their product is the
  hop between mel frames). A UBlock upsamples by repetition and runs four dilated 3-wide convs
  in two residual halves; every conv after the first is preceded by a FiLM of the matching
  resolution, h ← γ ⊙ h + β, and LeakyReLU(0.2). ``repeats`` − 1 more UBlocks at factor 1 follow
  each one (the paper's larger model stacks more UBlocks in the same way).
- **Downsampling (DBlocks)** from y_n to each UBlock's resolution: a 5-wide conv, then DBlocks
  that downsample by the UBlocks' factors in reverse (the first excepted) with three dilated
  convs and a residual 1×1 conv. At each resolution a FiLM module reads these features plus a
  sinusoidal embedding of the noise level and returns (γ, β).

The noise level enters as the paper's: √ᾱ, scaled by 5000 before the sinusoidal embedding, so
that the levels near 1, where ᾱ moves little, are still resolved. The wrapper hands this network
c_noise = ln σ of the VE coordinates (:mod:`scorelab.models.preconditioning`), and √ᾱ = 1/√(1 + σ²).
Under the ``eps`` parameterisation its input c_in·y is y_n itself and its output is ε̂.

Widths are the paper's base model (input conv 768, UBlocks 512, 512, 256, 128, 128; first conv 32,
DBlocks 128, 128, 256, 512; about 15 M weights) times ``width``, so ``width = 1`` is the paper's
network; every operation is per sample and along time, so any length that is a multiple of the hop
works, and a sample's output never depends on the rest of its batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scorelab.core.errors import ConfigError, DataError

# The paper's base widths; the last mel-side width is the one the output conv reads.
INPUT_WIDTH, UBLOCK_WIDTHS = 768, (512, 512, 256, 128, 128)
WAVE_WIDTH, DBLOCK_WIDTHS = 32, (128, 128, 256, 512)
# Dilations of a UBlock's four convs: the paper's, small for the two coarse blocks where a few frames span a phoneme.
COARSE_DILATIONS, FINE_DILATIONS = (1, 2, 1, 2), (1, 2, 4, 8)
NOISE_SCALE = 5000.0  # √ᾱ → 5000·√ᾱ before the sinusoidal embedding (Chen et al. 2020, Sec. 3.2)
SLOPE = 0.2


def _conv(in_width: int, out_width: int, kernel: int = 3, dilation: int = 1, stride: int = 1) -> nn.Conv1d:
    """A 1-D conv with "same" padding for odd kernels, orthogonally initialised (as WaveGrad's implementations)."""
    conv = nn.Conv1d(in_width, out_width, kernel, stride=stride, dilation=dilation,
                     padding=dilation * (kernel - 1) // 2 if stride == 1 else 0)
    nn.init.orthogonal_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def noise_embedding(c_noise: Tensor, width: int) -> Tensor:
    """The sinusoidal embedding of 5000·√ᾱ, √ᾱ = 1/√(1 + σ²) from c_noise = ln σ: [B] → [B, width, 1].

    The transformer's position encoding (Vaswani et al. 2017) with frequencies 10000^(−k/half),
    evaluated at the noise level rather than at a step index, as WaveGrad does.
    """
    root_alpha_bar = torch.exp(-0.5 * F.softplus(2 * c_noise))  # (1 + e^{2 ln σ})^(−1/2), finite for every σ
    half = width // 2
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, device=c_noise.device, dtype=c_noise.dtype)
                            / half)
    angles = NOISE_SCALE * root_alpha_bar[:, None] * frequencies[None]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=1)
    if width % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding[:, :, None]


class FiLM(nn.Module):
    """(γ, β) = heads(LReLU(conv(h) + embedding(noise level))): feature-wise linear modulation (Perez et al. 2018)."""

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__()
        self.input = _conv(in_width, in_width)
        self.scale = _conv(in_width, out_width)
        self.shift = _conv(in_width, out_width)

    def forward(self, features: Tensor, c_noise: Tensor) -> tuple[Tensor, Tensor]:
        h = F.leaky_relu(self.input(features) + noise_embedding(c_noise, features.shape[1]), SLOPE)
        return self.scale(h), self.shift(h)


class UBlock(nn.Module):
    """Upsample by ``factor`` and refine under FiLM: two residual halves of two dilated convs each."""

    def __init__(self, in_width: int, out_width: int, factor: int, dilations: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.factor = factor
        self.shortcut = _conv(in_width, out_width, kernel=1)
        self.first = nn.ModuleList([_conv(in_width, out_width, dilation=dilations[0]),
                                    _conv(out_width, out_width, dilation=dilations[1])])
        self.second = nn.ModuleList([_conv(out_width, out_width, dilation=d) for d in dilations[2:]])

    def _upsample(self, h: Tensor) -> Tensor:
        return h if self.factor == 1 else h.repeat_interleave(self.factor, dim=2)

    def forward(self, h: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        inner = self.first[0](self._upsample(F.leaky_relu(h, SLOPE)))
        inner = self.first[1](F.leaky_relu(scale * inner + shift, SLOPE))
        h = self.shortcut(self._upsample(h)) + inner
        inner = h
        for conv in self.second:
            inner = conv(F.leaky_relu(scale * inner + shift, SLOPE))
        return h + inner


class DBlock(nn.Module):
    """Downsample by ``factor`` (a strided conv) and apply three dilated convs, plus a residual 1×1 conv."""

    def __init__(self, in_width: int, out_width: int, factor: int) -> None:
        super().__init__()
        self.down = _conv(in_width, in_width, kernel=factor, stride=factor)
        self.shortcut = _conv(in_width, out_width, kernel=1)
        self.convs = nn.ModuleList([_conv(in_width if d == 1 else out_width, out_width, dilation=d) for d in (1, 2, 4)])

    def forward(self, h: Tensor) -> Tensor:
        h = self.down(h)
        inner = h
        for conv in self.convs:
            inner = conv(F.leaky_relu(inner, SLOPE))
        return self.shortcut(h) + inner


def _widths(base: tuple[int, ...], width: float) -> list[int]:
    return [max(2, round(channels * width)) for channels in base]


class WaveGrad(nn.Module):
    """ε̂ = F(y_n, ln σ, mel): WaveGrad's network (see the module docstring) for waveforms [B, 1, L].

    Args:
        n_mels: mel bands of the condition [B, n_mels, L // hop].
        factors: the UBlocks' upsampling factors, coarse first; their product is the hop.
        width: every width relative to the paper's base model.
        repeats: UBlocks per resolution (the first upsamples, the others keep the rate).
    """

    def __init__(self, n_mels: int = 80, factors: tuple[int, ...] = (4, 4, 4, 2, 2), width: float = 1.0,
                 repeats: int = 1) -> None:
        super().__init__()
        if len(factors) != len(UBLOCK_WIDTHS):
            raise ConfigError(f"WaveGrad has {len(UBLOCK_WIDTHS)} UBlocks, so it takes {len(UBLOCK_WIDTHS)} "
                              f"upsampling factors; got {list(factors)}")
        self.factors, self.hop = tuple(factors), math.prod(factors)
        up_widths = _widths(UBLOCK_WIDTHS, width)
        down_widths = [_widths((WAVE_WIDTH,), width)[0], *_widths(DBLOCK_WIDTHS, width)]
        self.mel_input = _conv(n_mels, _widths((INPUT_WIDTH,), width)[0])
        self.wave_input = _conv(1, down_widths[0], kernel=5)
        # DBlocks from the waveform's rate down to the first UBlock's output rate.
        self.downs = nn.ModuleList([DBlock(down_widths[k], down_widths[k + 1], factor)
                                    for k, factor in enumerate(reversed(self.factors[1:]))])
        # FiLM k modulates UBlock k, whose output rate is that of down_widths read from the coarse end.
        self.films = nn.ModuleList([FiLM(down, up) for down, up in zip(reversed(down_widths), up_widths)])
        ups: list[nn.Module] = []
        in_width = self.mel_input.out_channels
        for k, (factor, out_width) in enumerate(zip(self.factors, up_widths)):
            dilations = COARSE_DILATIONS if k < 2 else FINE_DILATIONS
            ups.append(nn.ModuleList([UBlock(in_width if r == 0 else out_width, out_width, factor if r == 0 else 1,
                                             dilations) for r in range(repeats)]))
            in_width = out_width
        self.ups = nn.ModuleList(ups)
        self.output = _conv(in_width, 1)
        nn.init.zeros_(self.output.weight)  # ε̂ = 0 at the start: the loss begins at E|ε|, not at a random network's

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        if cond is None:
            raise DataError("WaveGrad is conditioned on a log-mel spectrogram; give cond = [B, n_mels, frames]")
        if x_in.ndim != 3 or x_in.shape[1] != 1 or x_in.shape[2] != cond.shape[-1] * self.hop:
            raise DataError(f"WaveGrad needs waveforms [B, 1, frames·{self.hop}] for a mel of {cond.shape[-1]} frames; "
                            f"got {list(x_in.shape)}")
        features = [self.wave_input(x_in)]
        for down in self.downs:
            features.append(down(features[-1]))
        h = self.mel_input(cond.to(x_in.dtype))
        for blocks, film, level in zip(self.ups, self.films, reversed(features)):
            scale, shift = film(level, c_noise)
            for block in blocks:
                h = block(h, scale, shift)
        return self.output(F.leaky_relu(h, SLOPE))
