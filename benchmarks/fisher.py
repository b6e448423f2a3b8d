"""Fisher divergence of the default model on `gmm`, at each training noise level.

The `gmm` data set is an exact GaussianMixture, so its perturbed score ∇ log p_σ is
known in closed form at every σ. For each level σ_i we draw fresh points from p_σi
and report ½ E‖s_θ(x, σ_i) − ∇ log p_σi(x)‖², beside the same quantity for the
zero score (½ E‖∇ log p_σi‖², the Fisher information's half) as a scale.

    python benchmarks/fisher.py
"""

from __future__ import annotations

import tempfile

import torch
from report import markdown_table, write_section

import scorelab as sl


def main() -> None:
    mixture = sl.data.EXACT_DENSITIES["gmm"]
    with tempfile.TemporaryDirectory() as tmp:
        config = sl.Config(dataset="gmm", device="cpu")
        sl.train(config, tmp, progress=False)
        run = sl.load_run(tmp, device="cpu")
        generator = torch.Generator().manual_seed(0)
        rows = []
        for sigma in run.sigmas.tolist():
            x = mixture.sample(20_000, generator) + sigma * torch.randn(20_000, mixture.dim, generator=generator)
            levels = torch.full((len(x),), sigma)
            exact = lambda points: mixture.score(points, sigma)  # noqa: E731
            model = sl.metrics.fisher_divergence(lambda points: run.score(points, levels), exact, x)
            zero = sl.metrics.fisher_divergence(lambda points: torch.zeros_like(points), exact, x)
            rows.append([f"{sigma:.4g}", f"{model:.4g}", f"{zero:.4g}", f"{model / zero:.3f}"])
    body = (
        "Default config on `gmm` (3000 steps), EMA weights; 20 000 fresh points from p_σ per level. "
        "Relative = model / zero-score value (0 is perfect, 1 is no better than predicting 0).\n\n"
        + markdown_table(["σ", "½E‖s_θ − ∇log p_σ‖²", "same for s = 0", "relative"], rows)
    )
    write_section("fisher_gmm", "Fisher divergence of the default model on `gmm`, per noise level", body)


if __name__ == "__main__":
    main()
