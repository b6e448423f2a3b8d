"""The noise processes' settings, without torch: one dataclass per process, and the catalogue of processes by name.

The processes and their registry are :mod:`scorelab.core.processes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from scorelab.core.errors import ConfigError
from scorelab.core.registry import (
    at_least_zero,
    one_of,
    positive,
    positive_int,
    setting,
)

# The β schedules of the variance-preserving chain (scorelab.core.noise.beta_schedule).
BETA_SCHEDULES = ("linear", "quadratic", "sigmoid", "cosine", "wavegrad")


@dataclass(frozen=True)
class Continuous:
    continuous: bool = setting(False, "draw training noise levels from a continuum (VE: log-uniform σ; VP: "
                                      "WaveGrad's draw)")


@dataclass(frozen=True)
class VESettings(Continuous):
    sigma_max: float = setting(0.0, "largest noise level σ_1; 0 takes the largest pairwise distance in the data "
                                    "(NCSNv2)")
    sigma_min: float = setting(0.01, "smallest noise level σ_L", positive)
    n_levels: int = setting(20, "number of geometric noise levels L; 0 applies the NCSNv2 γ criterion "
                                "(data of 5 or more dimensions)", at_least_zero("the NCSNv2 γ criterion"))

    def check(self) -> None:
        if self.sigma_max < 0:
            raise ConfigError(f"sigma_max must be > 0, or 0 for the largest pairwise distance in the data; "
                              f"got {self.sigma_max}")
        if self.sigma_max and self.sigma_min > self.sigma_max:
            raise ConfigError(f"sigma_min ({self.sigma_min}) must not exceed sigma_max ({self.sigma_max})")


@dataclass(frozen=True)
class VPSettings(Continuous):
    schedule: str = setting("linear", "β schedule: " + " | ".join(BETA_SCHEDULES), one_of(*BETA_SCHEDULES))
    timesteps: int = setting(1000, "number of steps T of the diffusion chain", positive_int)


# Every noise process by name, in registration order (scorelab.core.processes registers these, no other).
SETTINGS: dict[str, type] = {"ve": VESettings, "vp": VPSettings}
