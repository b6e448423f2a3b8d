"""A U-Net backbone for images: F(x_in, c_noise, cond) on batches [B, C, H, W], to wrap in :class:`Preconditioned`.

The architecture is the DDPM U-Net (Ho et al. 2020, App. B): the U-Net of Ronneberger et al.
2015 (an encoder that halves the resolution level by level, a decoder that doubles it back, and
skip connections that hand each encoder output to the decoder), built from residual blocks with
GroupNorm, conditioned on the noise level and with self-attention at low resolution.

- ``conv_in``: 3×3 conv from C channels to ``channels``.
- Encoder: ``levels`` levels; level k runs at width ``channels·2^k`` on (H/2^k, W/2^k), with
  ``res_blocks`` residual blocks and then a stride-2 3×3 conv down (not after the last level).
- Middle: residual block, self-attention (if ``attention``), residual block, at the lowest resolution.
- Decoder: the levels in reverse, ``res_blocks + 1`` residual blocks each, every one taking the
  running features concatenated with one saved encoder output; nearest-neighbour ×2 upsampling
  followed by a 3×3 conv between levels.
- Output: GroupNorm → SiLU → 3×3 conv to C channels, initialised to zero.

Residual block: GroupNorm → SiLU → conv3×3 → GroupNorm → (1 + γ)·h + β → SiLU → dropout →
conv3×3, plus the input (through a 1×1 conv when the widths differ). (γ, β) per channel come
from the noise embedding; this scale-shift is the adaptive GroupNorm of Dhariwal & Nichol 2021
("Diffusion models beat GANs"), where DDPM adds a bias only.

Noise embedding: c_noise = ln σ → :func:`~scorelab.models.embedding.sinusoidal_embedding` →
Linear → SiLU → Linear, of width 4·``channels``, computed once and shared by every block, as DDPM
embeds its timestep. With ``attention``, the middle has self-attention over the H·W positions of
each image (GroupNorm, ``heads`` heads, residual connection), as DDPM's does; DDPM also follows
every encoder and decoder block at 16×16 with attention, which is left out here to keep the
network fast on CPUs.

Class labels: with ``classes`` > 0, ``cond`` holds a label per sample, and the learned embedding
of its class (:class:`~scorelab.models.labels.LabelEmbedding`; the null class for none) is added
to the noise embedding, so that every block sees both, as ADM (Dhariwal & Nichol 2021) and EDM
condition on a class. With ``classes`` = 0 the network takes no condition.

Every operation is per sample (GroupNorm, not BatchNorm; attention within one image), so a
sample's output never depends on the rest of its batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.errors import ConfigError, DataError, require_positive_int
from scorelab.models.embedding import sinusoidal_embedding
from scorelab.models.labels import LabelEmbedding
from scorelab.models.mlp import no_condition

# Frequencies of the sinusoidal embedding of ln σ; 16 geometric ones from 1/16 to 8 resolve
# every scale of ln σ ∈ [−5, 10] (the embedding is 32 features).
NOISE_FREQUENCIES = 16


def group_norm(width: int) -> nn.GroupNorm:
    """GroupNorm over ``width`` channels: DDPM's 32 groups for wide layers, fewer for narrow ones so
    that each group keeps at least 4 channels to take statistics over; the count divides ``width``."""
    return nn.GroupNorm(math.gcd(width, min(32, max(width // 4, 1))), width)


class SelfAttention(nn.Module):
    """Multi-head self-attention among the H·W positions of each image, added to its input."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = group_norm(width)
        self.qkv = nn.Conv2d(width, 3 * width, 1)
        self.out = nn.Conv2d(width, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # [B, 3C, H, W] → three [B, heads, H·W, C/heads]: one token per position. Contiguous, because the CPU's
        # attention kernel runs several times slower on the transposed view (BENCHMARKS.md "flops").
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).contiguous()
        attended = nn.functional.scaled_dot_product_attention(*qkv.unbind(1))
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class ResBlock(nn.Module):
    """A residual block conditioned on the noise embedding, followed by self-attention if ``heads`` > 0."""

    def __init__(self, width_in: int, width_out: int, embedding_width: int, dropout: float, heads: int = 0) -> None:
        super().__init__()
        self.norm1 = group_norm(width_in)
        self.conv1 = nn.Conv2d(width_in, width_out, 3, padding=1)
        self.scale_shift = nn.Sequential(nn.SiLU(), nn.Linear(embedding_width, 2 * width_out))
        self.norm2 = group_norm(width_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(width_out, width_out, 3, padding=1)
        self.skip = nn.Identity() if width_in == width_out else nn.Conv2d(width_in, width_out, 1)
        self.attention = SelfAttention(width_out, heads) if heads else nn.Identity()

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.scale_shift(embedding)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(nn.functional.silu(h)))
        return self.attention(self.skip(x) + h)


class Downsample(nn.Conv2d):
    """Halve the resolution with a stride-2 3×3 conv (a learnt downsampling, as DDPM's)."""

    def __init__(self, width: int) -> None:
        super().__init__(width, width, 3, stride=2, padding=1)

    def forward(self, x: Tensor, embedding: Tensor | None = None) -> Tensor:
        return super().forward(x)


class Upsample(nn.Conv2d):
    """Double the resolution: nearest neighbour, then a 3×3 conv (no checkerboard of a transposed conv)."""

    def __init__(self, width: int) -> None:
        super().__init__(width, width, 3, padding=1)

    def forward(self, x: Tensor, embedding: Tensor | None = None) -> Tensor:
        return super().forward(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """The DDPM U-Net as a backbone F(x_in, c_noise, cond) for images of ``image_shape`` = (C, H, W).

    ``channels``: width of the first level; level k has ``channels·2^k``. ``levels``: number of
    resolutions; H and W must be divisible by 2^(levels − 1). ``res_blocks``: residual blocks per
    encoder level (the decoder has one more, for the extra skip). ``attention``: self-attention at
    the lowest resolution, with ``heads`` heads (which must divide its width). ``dropout``: in
    every residual block, before its second conv. ``classes``: the number of class labels that
    ``cond`` may hold (0: none). The module docstring describes the layers.

    The defaults make a small network that trains in reasonable time on a few CPU cores, for
    8×8 to 28×28 images; DDPM's CIFAR-10 model is the same design at 128 channels and 4 levels.
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: int = 16, levels: int = 2,
                 res_blocks: int = 2, attention: bool = True, dropout: float = 0.0, *, heads: int = 1,
                 classes: int = 0) -> None:
        super().__init__()
        if not (isinstance(image_shape, tuple | list) and len(image_shape) == 3
                and all(isinstance(n, int) and n >= 1 for n in image_shape)):
            raise ConfigError(f"image_shape must be (C, H, W) of positive integers, got {image_shape!r}")
        for name, value in (("channels", channels), ("levels", levels), ("res_blocks", res_blocks),
                            ("heads", heads)):
            require_positive_int(name, value)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        n_channels, height, width = image_shape
        factor = 2 ** (levels - 1)
        if height % factor or width % factor:
            raise ConfigError(f"images of {height}×{width} cannot be halved {levels - 1} times; "
                              f"use sizes divisible by {factor} or fewer levels")
        widths = [channels * 2**k for k in range(levels)]
        if attention and widths[-1] % heads:
            raise ConfigError(f"{heads} attention heads do not divide the lowest level's width {widths[-1]}; "
                              f"use a divisor of it")
        self.image_shape = tuple(image_shape)
        embedding_width = 4 * channels
        self.embedding = nn.Sequential(nn.Linear(2 * NOISE_FREQUENCIES, embedding_width), nn.SiLU(),
                                       nn.Linear(embedding_width, embedding_width))

        def block(width_in: int, width_out: int, attend: bool = False) -> ResBlock:
            return ResBlock(width_in, width_out, embedding_width, dropout, heads if attend else 0)

        # Every stage takes (features, embedding), so each half of the network is one loop.
        self.conv_in = nn.Conv2d(n_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_widths, width = [channels], channels
        for k, level_width in enumerate(widths):
            for _ in range(res_blocks):
                self.down.append(block(width, level_width))
                width = level_width
                skip_widths.append(width)
            if k < levels - 1:
                self.down.append(Downsample(width))
                skip_widths.append(width)
        self.middle = nn.ModuleList([block(width, width, attend=attention), block(width, width)])
        self.up = nn.ModuleList()
        for k in reversed(range(levels)):
            for _ in range(res_blocks + 1):
                self.up.append(block(width + skip_widths.pop(), widths[k]))
                width = widths[k]
            if k > 0:
                self.up.append(Upsample(width))
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, n_channels, 3, padding=1)
        # Zero, as DDPM and EDM initialise their last layer: F starts at exactly 0, so the untrained
        # wrapper is its skip path (D = c_skip·x; s = 0 under "ve", "eps" and "score") rather than a
        # large random function of x, and training starts from a sensible denoiser. Gradients still
        # reach every layer: this conv's own gradient is nonzero, and after one step it passes them on.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        # Drawn last and only with labels, so that an unconditional network keeps its keys (old checkpoints load)
        # and its initial weights, and a conditional one the same weights but for the embedding.
        self.labels = LabelEmbedding(classes, embedding_width) if classes else None

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        if tuple(x_in.shape[1:]) != self.image_shape:
            raise DataError(f"this UNet takes images of shape [B, {', '.join(map(str, self.image_shape))}], "
                            f"got {tuple(x_in.shape)}")
        c_noise = torch.as_tensor(c_noise, dtype=x_in.dtype, device=x_in.device).reshape(-1)
        if c_noise.numel() not in (1, x_in.shape[0]):
            raise DataError(f"c_noise must hold 1 or {x_in.shape[0]} values (one per sample), got {c_noise.numel()}")
        embedding = self.embedding(sinusoidal_embedding(c_noise.expand(x_in.shape[0]), NOISE_FREQUENCIES))
        if self.labels is None:
            no_condition(cond, self)
        else:
            embedding = embedding + self.labels(cond, x_in.shape[0], x_in.device)
        h = self.conv_in(x_in)
        skips = [h]
        for stage in self.down:
            h = stage(h, embedding)
            skips.append(h)
        for stage in self.middle:
            h = stage(h, embedding)
        for stage in self.up:
            if not isinstance(stage, Upsample):
                h = torch.cat([h, skips.pop()], dim=1)
            h = stage(h, embedding)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}"
