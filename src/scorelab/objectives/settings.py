"""The objectives' settings, without torch: one dataclass per objective, and the catalogue of objectives by name.

The losses and their registry are :mod:`scorelab.objectives.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass

from scorelab.core.registry import at_least_zero, one_of, positive_int, setting

# The norm of ε − ε̂ in the ε-loss: DDPM's squared L2, or WaveGrad's L1.
EPS_NORMS = ("l2", "l1")
# The distributions of the random projections v of sliced score matching.
PROJECTIONS = ("rademacher", "gaussian", "sphere")


@dataclass(frozen=True)
class AnnealedDSMSettings:
    weight_power: float = setting(2.0, "λ(σ) = σ^p weighting of the annealed DSM loss")
    reference_size: int = setting(128, "reference points per step for the stable target field (0: off)",
                                  at_least_zero("off"))


@dataclass(frozen=True)
class NoSettings:
    pass


@dataclass(frozen=True)
class EpsSettings:
    eps_norm: str = setting("l2", "the norm of ε − ε̂: l2 (DDPM) | l1 (WaveGrad)", one_of(*EPS_NORMS))


@dataclass(frozen=True)
class SlicedSettings:
    n_projections: int = setting(1, "projections per sample", positive_int)
    projection: str = setting("rademacher", " | ".join(PROJECTIONS), one_of(*PROJECTIONS))


@dataclass(frozen=True)
class EDMLossSettings:
    sigma_data: float = setting(0.0, "σ_d of the loss weight λ(σ) = (σ² + σ_d²)/(σ·σ_d)²; 0: the training data's "
                                     "standard deviation, the σ_d of the preconditioning", at_least_zero("the data's"))


# Every objective by name, in registration order (scorelab.objectives.registry registers these, no other).
SETTINGS: dict[str, type] = {
    "annealed_dsm": AnnealedDSMSettings,
    "eps": EpsSettings,
    "exact": NoSettings,
    "sliced": SlicedSettings,
    "sliced_vr": SlicedSettings,
    "dsm": NoSettings,
    "flow_matching": NoSettings,
    "edm": EDMLossSettings,
}
