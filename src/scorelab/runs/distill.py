"""Consistency distillation of a trained run (Song et al. 2023): ``scorelab distill RUN --out RUN2``.

The student is an ordinary run, trained by :func:`scorelab.runs.training.train` with the objective
``consistency_distillation``, whose ``teacher`` setting names RUN; this module only builds its config
from the teacher's:

- the same data (and seed, so the same draw of it and the same normalisation);
- the consistency family: ``--model consistency`` (the log-noise MLP on points, the U-Net on images)
  with the teacher's network settings where the student's model has them, so that the training loop can
  start the student from the teacher's EMA weights (``teacher_init``), as Song et al. 2023 do;
- the family's VE process, σ from 0.002 to 20 (as a consistency-trained run's), where the teacher's score is
  asked for: EDM's family (the default on points) trains on log-normal σ, unbounded; a teacher trained on a
  narrower range (the NCSN's levels) may want ``--sigma-min``/``--sigma-max`` of its own;
- the consistency sampler.

Any setting given as a flag is applied over these (``--steps``, ``--distill-levels``, ...). The teacher
is read, never written: its EMA weights through :class:`~scorelab.runs.trained.TrainedRun`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from scorelab.core.errors import CheckpointError, ConfigError
from scorelab.data.sources import data_part
from scorelab.pretrained import require_writable
from scorelab.runs.config import Config
from scorelab.runs.distributed import World
from scorelab.runs.trained import TrainedRun
from scorelab.runs.training import TrainResult, check_teacher, train

# The student's parts: what `--model consistency` implies, but distilled.
STUDENT = {"model": "consistency", "objective": "consistency_distillation", "sampler": "consistency"}


def student_config(teacher: TrainedRun, /, **changes: Any) -> Config:
    """The config of a consistency model distilled from ``teacher`` (see the module docstring), with
    ``changes`` (flat settings, as the command line's flags) applied over it.

    Raises :class:`ConfigError` for a teacher that is not a noise-conditional score model, a conditional
    one (a waveform run's mel), or changes that name another data set or teacher.
    """
    check_teacher(teacher)
    data = teacher.config.data
    if data_part(data.name).condition is not None:
        raise ConfigError(f"{teacher.run_dir} learned {data.name!r}, whose samples are conditioned on features; "
                          "distill handles unconditional runs (points and images)")
    if changes.get("dataset", data.name) != data.name:
        raise ConfigError(f"a distillation learns its teacher's data ({data.name!r}); leave out --dataset")
    if "teacher" in changes:
        raise ConfigError("the teacher is RUN, the run being distilled; leave out --teacher")
    parts = Config(data=data.to_dict(), **STUDENT)
    student_model = dataclasses.fields(parts.model.settings)
    model = {spec.name: getattr(teacher.config.model.settings, spec.name) for spec in student_model
             if spec.name != "parameterisation" and hasattr(teacher.config.model.settings, spec.name)}
    stated = {"seed": teacher.config.seed, "data": data.to_dict(), **STUDENT, **model,
              "teacher": str(teacher.run_dir.resolve())}
    return Config.from_layers(stated, changes)


def distill(teacher_dir: str | Path, out: str | Path, /, *, overwrite: bool = False, progress: bool = True,
            **changes: Any) -> TrainResult:
    """Distil the trained run ``teacher_dir`` into a consistency model in ``out`` (:func:`student_config`).

    Raises :class:`CheckpointError` where ``out`` is the teacher, or exists and is not an empty directory
    (unless ``overwrite``), before anything is written. Under torchrun every rank calls it (rank 0 checks
    ``out``, which the others see it write into).
    """
    teacher = TrainedRun.load(teacher_dir, "cpu")
    out = Path(out)
    require_writable(out, "distilled into")
    if out.resolve() == teacher.run_dir.resolve():
        raise CheckpointError(f"--out {out} is the teacher's own run directory; distil into another one")
    taken = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if taken and not overwrite and World.from_environment().main:
        raise CheckpointError(f"{out} already exists; use --overwrite or another --out (a distillation that "
                              f"stopped goes on with `scorelab train --resume --out {out}`)")
    return train(student_config(teacher, **changes), out, overwrite=overwrite, progress=progress)
