"""The objectives' settings, without torch: one dataclass per objective, and the catalogue of objectives by name.

The losses and their registry are :mod:`scorelab.objectives.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass

from scorelab.core.errors import ConfigError
from scorelab.core.registry import at_least_zero, one_of, positive_int, setting

# The norm of ε − ε̂ in the ε-loss: DDPM's squared L2, or WaveGrad's L1.
EPS_NORMS = ("l2", "l1")
# The distributions of the random projections v of sliced score matching.
PROJECTIONS = ("rademacher", "gaussian", "sphere")
# How a consistency loss compares f at two levels: iCT's pseudo-Huber distance, or the CM paper's squared L2.
DISTANCES = ("pseudo_huber", "l2")
# How a distillation's teacher steps its probability-flow ODE between two levels.
TEACHER_SOLVERS = ("heun", "euler")
# How flow matching pairs data with noise: independently (conditional flow matching), or by each minibatch block's
# optimal transport (Tong et al. 2023).
COUPLINGS = ("independent", "ot")


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
class FlowMatchingSettings:
    coupling: str = setting("independent", "how flow matching pairs data with noise: independent | ot (the optimal "
                            "transport of each block of the batch, Tong et al. 2023: straighter paths)",
                            one_of(*COUPLINGS))
    coupling_block: int = setting(64, "rows of the batch per optimal-transport block (exact assignment, whose cost "
                                       "grows as the block's cube)", positive_int)


@dataclass(frozen=True)
class EDMLossSettings:
    sigma_data: float = setting(0.0, "σ_d of the loss weight λ(σ) = (σ² + σ_d²)/(σ·σ_d)²; 0: the training data's "
                                     "standard deviation, the σ_d of the preconditioning", at_least_zero("the data's"))


@dataclass(frozen=True)
class ConsistencyDistance:
    distance: str = setting("pseudo_huber", "consistency models: how f at two adjacent levels is compared: "
                            + " | ".join(DISTANCES) + " (iCT | the CM paper)", one_of(*DISTANCES))
    huber_c: float = setting(0.0, "c of the pseudo-Huber distance √(‖r‖² + c²) − c (0: iCT's 0.00054·√d, d the "
                                  "entries of one sample)", at_least_zero("iCT's 0.00054·√d"))


@dataclass(frozen=True)
class ConsistencyTrainingSettings(ConsistencyDistance):
    # Song & Dhariwal 2023 (iCT) double the grid from s0 = 10 to s1 = 1280 steps over the run. Kept at 3000 steps on
    # the 2-D suite: s1 = 160 came out within the runs' spread on moons.
    curriculum_start: int = setting(10, "s0, the steps of the consistency grid at the start of iCT's curriculum "
                                        "N(k) = min(s0·2^⌊k/K'⌋, s1) + 1 levels", positive_int)
    curriculum_end: int = setting(1280, "s1, the most steps of the consistency grid, reached in the curriculum's "
                                        "last stage", positive_int)

    def check(self) -> None:
        if self.curriculum_end < self.curriculum_start:
            raise ConfigError(f"curriculum_end ({self.curriculum_end}) must be at least curriculum_start "
                              f"({self.curriculum_start})")


def _at_least_two(name: str, value: int) -> None:
    if value < 2:
        raise ConfigError(f"{name} must be at least 2 (the two ends of the grid), got {value}")


@dataclass(frozen=True)
class ConsistencyDistillationSettings(ConsistencyDistance):
    teacher: str = setting("", "the run directory of the trained score model that consistency distillation distils "
                               "(`scorelab distill RUN` sets it)")
    teacher_solver: str = setting("heun", "the teacher's probability-flow ODE step between adjacent levels: "
                                  + " | ".join(TEACHER_SOLVERS), one_of(*TEACHER_SOLVERS))
    # The CM paper's N = 18 and its start from the teacher's weights; on moons N = 40 did as well, and the start from
    # the teacher gained much early in a run and little by its end (docs/cli.md, "Consistency models").
    distill_levels: int = setting(18, "N, the levels of the distillation's Karras grid from the process's σ_min to "
                                      "σ_max", _at_least_two)
    teacher_init: bool = setting(True, "start the student's network from the teacher's EMA weights where the "
                                       "two networks have the same shapes")


# Every objective by name, in registration order (scorelab.objectives.registry registers these, no other).
SETTINGS: dict[str, type] = {
    "annealed_dsm": AnnealedDSMSettings,
    "eps": EpsSettings,
    "exact": NoSettings,
    "sliced": SlicedSettings,
    "sliced_vr": SlicedSettings,
    "dsm": NoSettings,
    "flow_matching": FlowMatchingSettings,
    "edm": EDMLossSettings,
    "consistency_training": ConsistencyTrainingSettings,
    "consistency_distillation": ConsistencyDistillationSettings,
}
