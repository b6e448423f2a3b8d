"""A learned embedding of class labels, shared by the class-conditional backbones.

Classifier-free guidance (Ho & Salimans 2022) trains one network for both the conditional score
s(x|c) and the unconditional one s(x|∅): label dropout replaces a sample's class by the null class
∅ now and then, so the network learns both. The null class is one more learned row of the table,

    e(c) = E[c] for c ∈ {0, …, classes − 1},   e(∅) = E[classes],   E ∈ ℝ^((classes + 1) × width),

and a backbone reads e(c) as one more input, as it reads its noise level. The label that names ∅ is
:data:`~scorelab.core.guidance.NULL_LABEL`; no label at all (``cond`` None) is ∅ for every sample.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.errors import DataError, require_positive_int
from scorelab.core.guidance import NULL_LABEL


class LabelEmbedding(nn.Module):
    """e(c) of the module docstring: the rows of ``table`` [classes + 1, width], the last one the null class."""

    def __init__(self, classes: int, width: int) -> None:
        super().__init__()
        require_positive_int("classes", classes)
        require_positive_int("width", width)
        self.classes = classes
        self.table = nn.Embedding(classes + 1, width)

    def forward(self, cond: Any, batch: int, device: torch.device | str) -> Tensor:
        """e(c) per sample [batch, width], for labels ``cond`` [batch] (None: ∅ for every sample)."""
        if cond is None:
            rows = torch.full((batch,), self.classes, device=device)
        else:
            self._check(cond, batch)
            cond = cond.to(device)
            rows = torch.where(cond == NULL_LABEL, self.classes, cond)
        return self.table(rows)

    def _check(self, cond: Any, batch: int) -> None:
        """A one-line :class:`DataError` unless ``cond`` is an integer tensor of ``batch`` known labels."""
        if not isinstance(cond, Tensor):
            problem = f"a {type(cond).__name__}"
        elif cond.dtype == torch.bool or cond.is_floating_point() or cond.is_complex():
            problem = f"a tensor of {cond.dtype}"
        elif cond.shape != (batch,):
            problem = f"shape {list(cond.shape)}"
        elif not bool((((cond >= 0) & (cond < self.classes)) | (cond == NULL_LABEL)).all()):
            problem = f"labels from {int(cond.min())} to {int(cond.max())}"
        else:
            return
        raise DataError(f"class labels must be an integer tensor [{batch}] of labels in [0, {self.classes}) "
                        f"or {NULL_LABEL} for none, got {problem}")

    def extra_repr(self) -> str:
        return f"classes={self.classes}"
