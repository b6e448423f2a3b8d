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

# The training densities of the flow process's t (Esser et al. 2024, Sec. 3.1).
T_DENSITIES = ("uniform", "logit_normal")

# The training densities of the VE process's continuous σ: the VE SDE's log-uniform σ (Song et al. 2021), or
# EDM's log-normal one (Karras et al. 2022, Sec. 5).
SIGMA_DENSITIES = ("log_uniform", "lognormal")

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
    sigma_density: str = setting("log_uniform", "continuous training σ: " + " | ".join(SIGMA_DENSITIES)
                                 + " (ln σ ~ N(p_mean, p_std²), EDM)", one_of(*SIGMA_DENSITIES))
    p_mean: float = setting(-1.2, "P_mean, the mean of ln σ under the lognormal density (EDM: −1.2)")
    p_std: float = setting(1.2, "P_std, the standard deviation of ln σ under the lognormal density (EDM: 1.2)",
                           positive)

    def check(self) -> None:
        if self.sigma_density != "log_uniform" and not self.continuous:
            raise ConfigError(f"sigma_density {self.sigma_density!r} draws σ from a continuum; add --continuous "
                              "(the discrete NCSN draws one of its n_levels levels)")
        if self.sigma_max < 0:
            raise ConfigError(f"sigma_max must be > 0, or 0 for the largest pairwise distance in the data; "
                              f"got {self.sigma_max}")
        if self.sigma_max and self.sigma_min > self.sigma_max:
            raise ConfigError(f"sigma_min ({self.sigma_min}) must not exceed sigma_max ({self.sigma_max})")


@dataclass(frozen=True)
class VPSettings(Continuous):
    schedule: str = setting("linear", "β schedule: " + " | ".join(BETA_SCHEDULES), one_of(*BETA_SCHEDULES))
    timesteps: int = setting(1000, "number of steps T of the diffusion chain", positive_int)


def _open_unit(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ConfigError(f"{name} must be in (0, 1), got {value}")


@dataclass(frozen=True)
class FlowSettings:
    t_min: float = setting(0.002, "smallest t of the interpolant (1 − t)x + tz; σ_min = t_min/(1 − t_min)",
                           _open_unit)
    # 0.98 puts σ_max at 49, near EDM's 80 for data of unit scale: a larger t_max spends a few-step Karras grid's
    # first steps at noise levels the data never needs (Heun and DPM-Solver++ on the exact mixture score lose
    # accuracy at t_max = 0.995; see the issue 33 notes).
    t_max: float = setting(0.98, "largest t, below 1 so that σ_max = t_max/(1 − t_max) stays finite",
                           _open_unit)
    t_density: str = setting("uniform", "training t: " + " | ".join(T_DENSITIES) + " (Esser et al. 2024)",
                             one_of(*T_DENSITIES))
    logit_mean: float = setting(0.0, "location m of the logit-normal t: logit t = log σ ~ N(m, s²)")
    logit_std: float = setting(1.0, "scale s of the logit-normal t", positive)
    n_levels: int = setting(32, "levels of the sampler grid, uniform in t from t_max to t_min", positive_int)

    def check(self) -> None:
        if self.t_min >= self.t_max:
            raise ConfigError(f"t_min ({self.t_min}) must be below t_max ({self.t_max})")


# Every noise process by name, in registration order (scorelab.core.processes registers these, no other).
SETTINGS: dict[str, type] = {"ve": VESettings, "vp": VPSettings, "flow": FlowSettings}
