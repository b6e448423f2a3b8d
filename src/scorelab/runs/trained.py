"""A trained run directory as an object: its config, its EMA model, its noise process and its samplers.

    run = sl.load_run("runs/swiss")
    samples = run.sample(5000, generator=torch.Generator().manual_seed(0))
    for batch in run.sample_batches(10**6, seed=0, batch_size=10_000):  # sample i depends on (0, i) alone
        ...
    threes = run.sample(100, cond=3, guidance=2.0)  # a class-conditional run, guided (scorelab.core.guidance)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    require_positive_int,
)
from scorelab.core.guidance import NULL_LABEL, guided
from scorelab.core.processes import NoiseProcess
from scorelab.core.registry import shared_settings
from scorelab.core.rng import AnyGenerator, PerSampleGenerator
from scorelab.core.score import Score, batch_invariant, call_score
from scorelab.core.threads import governed, step_work
from scorelab.data.modality import Modality
from scorelab.data.noise_prior import NoisePrior
from scorelab.data.normalisation import Normalisation
from scorelab.data.sources import data_part
from scorelab.models import MODELS, build_model
from scorelab.pretrained import resolve
from scorelab.runs.checkpoint import load_checkpoint
from scorelab.runs.config import Config, build_process, label_classes
from scorelab.runs.distributed import resolve_device
from scorelab.runs.legacy import with_schedules_saved_beside
from scorelab.sampling import SAMPLERS, Callback
from scorelab.sampling.likelihood import log_prob
from scorelab.sampling.settings import parse_interval


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass
class TrainedRun:
    """A trained model with everything needed to sample from it."""

    run_dir: Path
    config: Config
    step: int
    model: nn.Module
    normalisation: Normalisation
    process: NoiseProcess
    _guides: dict[str, TrainedRun] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", *, compile: bool = False) -> TrainedRun:
        """Load the EMA weights of ``RUN_DIR/model.safetensors`` (or of a checkpoint file, such as the
        ``guide.safetensors`` that ``--keep-guide-at`` keeps, or of a run that ships, ``"pretrained:NAME"``:
        :mod:`scorelab.pretrained`) onto ``device``.

        On the CPU, convolution weights are kept channels-last (NHWC), which oneDNN's convolutions run
        faster than NCHW at the U-Net's sizes (BENCHMARKS.md "flops"); other weights are unaffected.
        ``compile``: compile the network with ``torch.compile`` (inductor) in place; its first calls
        pay a one-time cost (BENCHMARKS.md "flops", "compile s") for faster ones after."""
        run_dir = resolve(run_dir)
        checkpoint = load_checkpoint(run_dir)
        run_dir = Path(run_dir).parent if Path(run_dir).is_file() else Path(run_dir)
        config = with_schedules_saved_beside(checkpoint.config, run_dir)
        try:
            normalisation = Normalisation(checkpoint.tensors["data.shift"], checkpoint.tensors["data.scale"])
            process = build_process(config)
            model = build_model(config.model.name, config.model.settings, shape=normalisation.shape,
                                process=process, seed=config.seed, classes=label_classes(config))
            model.load_state_dict(checkpoint.group("ema"))
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{run_dir}: weights do not match the saved config ({exc})") from None
        model = model.to(resolve_device(device)).eval().requires_grad_(False)
        if model_device(model).type == "cpu":
            model = model.to(memory_format=torch.channels_last)  # converts 4-D (conv) weights only
        if compile:
            model.compile()
        return cls(Path(run_dir), config, checkpoint.step, model, normalisation, process)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return self.normalisation.shape

    @property
    def modality(self) -> Modality:
        """The record of what depends on the kind of data the run learned (:mod:`scorelab.data.modality`)."""
        return data_part(self.config.data.name).modality

    @property
    def noise_prior(self) -> NoisePrior | None:
        """The shape of the noise given a condition, for a run trained with a noise prior (PriorGrad's or SpecGrad's,
        :mod:`scorelab.data.noise_prior`); None for white noise."""
        return data_part(self.config.data.name).noise_prior(self.config.data.settings, self.normalisation)

    @property
    def value_range(self) -> tuple[float, float] | None:
        """The units [low, high] of an image run's data (what [-1, 1] maps to); None for other data."""
        return self.modality.value_range(self.normalisation)

    @property
    def sample_batch_size(self) -> int:
        """The default number of samples drawn at once (the modality's)."""
        return self.modality.sample_batch_size

    @property
    def noise_conditional(self) -> bool:
        """Whether the model is a score s(x, σ) rather than an unconditional s(x)."""
        return MODELS[self.config.model.name].noise_conditional

    @property
    def classes(self) -> int:
        """The classes of a class-conditional run (0: unconditional); its condition is a label in [0, classes)."""
        return label_classes(self.config)

    @property
    def sigmas(self) -> Tensor:
        """The noise levels of the run's process, largest first (in model units)."""
        return self.process.grid()

    def score(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        """The learned score in data coordinates: ∇ₓ log p = ∇_u log p_u / scale, u = (x − shift)/scale."""
        self._require_white_noise("its score in data coordinates")
        return call_score(self.model, self.normalisation.to_model(x), sigma.to(x), cond) / self.normalisation.scale.to(x)

    def sampler_settings(self, name: str | None = None, **options: Any) -> tuple[str, Any]:
        """The sampler ``name`` (default: the run's) and its settings: its defaults, then the run's
        sampler settings it shares through a common settings dataclass (ald and plain Langevin keep the
        run's ``n_steps_each``), then ``options`` (those not None)."""
        name = name or self.config.sampler.name
        part = SAMPLERS[name]
        own = asdict(self.config.sampler.settings)
        shared = {key: own[key] for key in shared_settings(type(self.config.sampler.settings), part.settings)}
        settings = part.make(shared | {key: value for key, value in options.items() if value is not None})
        return name, settings

    def sample(
        self,
        n: int,
        *,
        sampler: str | None = None,
        generator: AnyGenerator | None = None,
        callback: Callback | None = None,
        cond: Any = None,
        shape: tuple[int, ...] | None = None,
        guess: Tensor | None = None,
        **options: Any,
    ) -> Tensor:
        """Draw ``n`` samples (data coordinates, on CPU; images clipped to their data's range).

        Args:
            n: number of samples.
            sampler: a name in :data:`scorelab.sampling.SAMPLERS`; defaults to the run's.
            generator: the source of randomness; the same seed gives the same samples. A
                :class:`~scorelab.core.rng.PerSampleGenerator` makes each sample depend on its own seed alone.
            callback: receives a :class:`~scorelab.sampling.StepInfo` per step (model coordinates).
            cond: a condition per sample, passed to the model: for a class-conditional run, a class label
                (one for all) or one per sample, or ``NULL_LABEL`` for none (the unconditional model); None draws
                the classes in turn, sample i of class i mod ``classes`` (:meth:`classes_in_turn`).
            shape: the shape of one sample, for a model that is not tied to its training shape (a waveform as
                long as its mel spectrogram); default: the training data's.
            guess: a first estimate of the samples [n, *shape] in data units, for a sampler that starts from one
                (``SamplerPart.starts_from_guess``: WaveGrad's with ``start = "griffin_lim"``).
            options: the sampler's settings, e.g. ``n_steps_each=100``, and guidance's (``guidance``,
                ``guidance_interval``, ``guide``: :class:`~scorelab.sampling.settings.Guided`); None keeps the run's.
        """
        require_positive_int("n", n)
        name, settings = self.sampler_settings(sampler, **options)
        cond = self.labels(cond, n)
        start = self.process.prior((n, *(shape or self.shape)), generator=generator, device=self.device)
        # inference_mode rather than no_grad: less bookkeeping per operation (BENCHMARKS.md "sampler_loop"),
        # except for a model whose score is itself a gradient (the energy model).
        needs_autograd = getattr(self.model, "differentiates_to_score", False)
        score = self.guided_model(settings, explicit=options.get("guidance") is not None)
        # Per-sample seeds promise a sample that does not depend on its batch: make the model keep it too.
        score = batch_invariant(score) if isinstance(generator, PerSampleGenerator) else score
        # Under a noise prior the sampler draws u = L_c⁻¹x (scorelab.data.noise_prior), which is coloured back.
        prior = self.noise_prior
        score = self.modality.keep_in_range(score, self.normalisation, prior)
        # Re-chooses the CPU threads as the sampler runs (scorelab.core.threads), once a second at most.
        score = governed(score, step_work(self.model, n, start.shape[1:]))
        from_guess = {}
        if guess is not None:
            if not SAMPLERS[name].starts_from_guess:
                raise ConfigError(f"sampler {name!r} starts from the prior; it takes no first estimate (guess)")
            in_model = self.normalisation.to_model(guess, any_shape=shape is not None).to(start)
            from_guess["guess"] = in_model if prior is None else prior.whiten(in_model, cond)
        with torch.no_grad() if needs_autograd else torch.inference_mode():
            samples = SAMPLERS[name].sample(score, self.process, settings, start, generator, callback, cond,
                                            **from_guess)
        samples = samples if prior is None else prior.colour(samples, cond)
        return self.modality.finish(samples.cpu(), self.normalisation, shape is not None)

    def _require_white_noise(self, what: str) -> None:
        if self.noise_prior is not None:
            raise ConfigError(f"{self.run_dir} diffused its data with a noise prior (u = L_c⁻¹x); "
                              f"{what} is not its model's")

    def classes_in_turn(self, first: int, count: int) -> Tensor:
        """The labels of samples ``first`` … ``first + count − 1`` of a class-conditional run when none is asked
        for: sample i of class i mod ``classes``. Why not the null class: a run sees its null class in only a
        tenth of its training batches (``label_dropout``), and its unconditional samples are far worse than its
        conditional ones."""
        return torch.arange(first, first + count, device=self.device) % self.classes

    def labels(self, cond: Any, n: int, first: int = 0) -> Any:
        """``cond`` for ``n`` samples (numbered from ``first``): a class-conditional run's labels as a tensor [n]
        on the model's device (one label stands for all; None: :meth:`classes_in_turn`), checked to lie in
        [0, classes) or be ``NULL_LABEL``; other conditions unchanged."""
        if self.classes and cond is None:
            return self.classes_in_turn(first, n)
        if not self.classes:
            if cond is not None and isinstance(cond, int | Tensor) and getattr(cond, "ndim", 0) <= 1:
                raise ConfigError(f"{self.run_dir} was trained without class labels: sample it without a class "
                                  "(train a class-conditional run with --conditional)")
            return cond
        labels = torch.as_tensor(cond, device=self.device)
        labels = labels.expand(n).clone() if labels.ndim == 0 else labels
        if labels.dtype.is_floating_point or labels.shape != (n,) or not (
                ((labels >= 0) & (labels < self.classes)) | (labels == NULL_LABEL)).all():
            raise DataError(f"class labels must be {n} integers in [0, {self.classes}) (or {NULL_LABEL}: none)")
        return labels.long()

    def guided_model(self, settings: Any, *, explicit: bool = False) -> Score:
        """The run's model guided as the sampler ``settings`` say (:mod:`scorelab.core.guidance`): classifier-free
        guidance for a class-conditional run, autoguidance with a ``guide``; the model itself otherwise.
        ``explicit``: the weight was asked for, so a run with nothing to guide against is an error, not a no-op."""
        guide = self.guide(settings.guide) if settings.guide else None
        if explicit and settings.guidance != 1 and guide is None and not self.classes:
            raise ConfigError(f"guidance needs a class-conditional run (trained with --conditional) or a --guide; "
                              f"{self.run_dir} has neither")
        interval = parse_interval(settings.guidance_interval) if settings.guidance_interval else None
        if guide is None and not self.classes:
            return self.model
        return guided(self.model, settings.guidance, guide=None if guide is None else guide.model, interval=interval)

    def guide(self, path: str) -> TrainedRun:
        """The run (or checkpoint file) at ``path`` loaded as autoguidance's weaker model, on this run's device,
        after checking that it learned the same data in the same units and noise process."""
        if path in self._guides:
            return self._guides[path]
        guide = TrainedRun.load(path, str(self.device))
        if not guide.normalisation.matches(self.normalisation) or (guide.config.process, guide.classes) != (
                self.config.process, self.classes):
            raise ConfigError(f"the guide {path} learned other data, units, noise process or classes than "
                              f"{self.run_dir}; autoguidance needs a weaker model of the same data (e.g. the "
                              "run's own guide.safetensors, kept by --keep-guide-at)")
        if not guide.noise_conditional:
            raise ConfigError(f"the guide {path} is an unconditional score s(x); it needs a noise level to guide")
        self._guides[path] = guide
        return guide

    def sample_batches(self, n: int, *, seed: int, batch_size: int | None = None, first: int = 0,
                       sampler: str | None = None, cond: Any = None, **options: Any) -> Iterator[Tensor]:
        """Samples ``first`` … ``first + n − 1`` of the set seeded by ``seed``, in batches of at most
        ``batch_size`` (default: :attr:`sample_batch_size`).

        Sample i depends on (seed, i) alone (:class:`~scorelab.core.rng.PerSampleGenerator`), and on its own
        condition where it has one, so the first 1000 of ``n = 5000`` are the samples of ``n = 1000``, for any
        batch size, and a shard ``first, n`` drawn by one process is that part of the whole set. ``cond``: one
        class label for all, or one per sample [n] (sample i gets ``cond[i]``). ``sampler`` and ``options``
        are as for :meth:`sample`.
        """
        require_positive_int("n", n)
        batch_size = batch_size or self.sample_batch_size
        require_positive_int("batch_size", batch_size)
        cond = self.labels(cond, n, first)
        for start in range(first, first + n, batch_size):
            count = min(batch_size, first + n - start)
            rows = cond[start - first:start - first + count] if isinstance(cond, Tensor) else cond
            yield self.sample_rows(start, count, seed=seed, sampler=sampler, cond=rows, **options)

    def sample_rows(self, first: int, count: int, *, seed: int, sampler: str | None = None,
                    **options: Any) -> Tensor:
        """Samples ``first`` … ``first + count − 1`` of the set seeded by ``seed``, in one batch (see
        :meth:`sample_batches`); ``cond`` among the ``options`` is theirs alone."""
        options["cond"] = self.labels(options.get("cond"), count, first)  # None: the classes in turn, from ``first``
        return self.sample(count, sampler=sampler, generator=PerSampleGenerator(seed, range(first, first + count)),
                           **options)

    def class_grid_rows(self, first: int, count: int, *, seed: int, per_class: int, sampler: str | None = None,
                        **options: Any) -> Tensor:
        """Rows ``first`` … ``first + count − 1`` of a grid of ``per_class`` samples of each class in turn: row i
        is sample i mod ``per_class`` of class i // ``per_class``, the same sample that drawing that class alone
        gives (:meth:`sample_batches` with ``cond`` the class)."""
        rows = range(first, first + count)
        labels = torch.tensor([row // per_class for row in rows])
        return self.sample(count, sampler=sampler, generator=PerSampleGenerator(seed, [row % per_class for row in rows]),
                           cond=labels, **options)

    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None, cond: Any = None) -> Tensor:
        """Exact log-density in nats (data coordinates) of the run's probability-flow ODE model.

        The ODE runs over the process's noise range, from its prior (in model units; use
        ``standardize`` for data far from unit scale). The change of coordinates adds
        −Σ log scale. See :func:`scorelab.sampling.likelihood.log_prob`.
        """
        self._require_white_noise("its log-density")
        model_x = self.normalisation.to_model(x).to(self.device)
        log_p = log_prob(self.model, model_x, self.process, generator=generator, cond=cond)
        return log_p.cpu() - self.normalisation.log_det()


def load_run(run_dir: str | Path, device: str = "auto", *, compile: bool = False) -> TrainedRun:
    """Shorthand for :meth:`TrainedRun.load`."""
    return TrainedRun.load(run_dir, device, compile=compile)
