"""The ``scorelab`` command line: it parses, calls the library and prints.

Bad input prints one line, ``scorelab: error: ...``, to stderr and exits with
status 2; no traceback, and no good file is overwritten.

Only the command being run gets its arguments built, from the settings catalogues
(:mod:`scorelab.runs.settings`, which import no torch), and each command imports what
it needs when it runs, so ``scorelab --help``, ``scorelab train --help`` and a bad flag
answer without loading torch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from scorelab.core.errors import (
    ConfigError,
    ScorelabError,
    one_line,
    require_positive_int,
)
from scorelab.core.registry import origin
from scorelab.data.settings import SETTINGS as DATA_SETTINGS
from scorelab.pretrained import PREFIX
from scorelab.runs.settings import CATALOGUES, CHOICE_SECTIONS, NAME_KEYS, flat_fields
from scorelab.sampling.settings import WAVEGRAD_STARTS
from scorelab.sampling.settings import SETTINGS as SAMPLER_SETTINGS
from scorelab.sampling.settings import Guided

# Settings that a config file writes LO,HI and the command line takes as two numbers (--guidance-interval 0.5 5).
PAIRS = {"guidance_interval": ("LO", "HI")}


def _fields_named(name: str, catalogue: dict[str, type]) -> dict[str, dataclasses.Field]:
    """The field ``name`` of each part of ``catalogue`` (part name -> settings dataclass) that has it."""
    found = {part: [f for f in dataclasses.fields(settings) if f.name == name] for part, settings in catalogue.items()}
    return {part: fields[0] for part, fields in found.items() if fields}


def _shared_help(name: str, catalogue: dict[str, type]) -> str:
    """The help of the setting ``name``: one line where every part that has it shares it through a common
    settings dataclass, else each one's, after the parts that share it (``sample_steps``)."""
    by_origin: dict[type, list[str]] = {}
    for part in _fields_named(name, catalogue):
        by_origin.setdefault(origin(catalogue[part], name), []).append(part)
    helps = {cls: next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("help", name)
             for cls in by_origin}
    if len(by_origin) == 1:
        return next(iter(helps.values()))
    return "; ".join(f"{', '.join(parts)}: {helps[cls]}" for cls, parts in by_origin.items())


def _setting_help(section: str, name: str, spec: dataclasses.Field) -> str:
    """``[section: the parts that have it] help (default: ...)``, one default per part where they differ."""
    if section not in CHOICE_SECTIONS:
        return f"[{section}] {spec.metadata.get('help', name)} (default: {spec.default})"
    catalogue = CATALOGUES[section]
    fields = _fields_named(name, catalogue)
    text = _shared_help(name, catalogue)
    defaults = {part: spec.default for part, spec in fields.items()}
    where = section if len(defaults) == len(catalogue) else f"{section}: {', '.join(defaults)}"
    if len(set(map(repr, defaults.values()))) == 1:
        return f"[{where}] {text} (default: {next(iter(defaults.values()))})"
    return f"[{where}] {text} (default: " + ", ".join(f"{value} for {part}" for part, value in defaults.items()) + ")"


class _Pair(argparse.Action):
    """Two numbers given to a flag, kept as the setting's text ``LO,HI``."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, ",".join(map(repr, values)))


def _add_setting_flag(parser: argparse.ArgumentParser, name: str, spec: dataclasses.Field, help_text: str,
                      default: object, *aliases: str) -> None:
    """A flag --name (and ``aliases``) for the setting ``name``, typed by its field."""
    flags = [*aliases, "--" + name.replace("_", "-")]
    if name in PAIRS:
        parser.add_argument(*flags, dest=name, nargs=2, type=float, action=_Pair, default=default,
                            metavar=PAIRS[name], help=help_text)
    elif spec.type == "bool":
        parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=default,
                            help=help_text)
    else:
        parser.add_argument(*flags, dest=name, type={"int": int, "float": float, "str": str}[spec.type],
                            default=default, metavar=name.upper(), help=help_text)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per part name and per setting; SUPPRESS keeps unset flags out of the namespace."""
    for key, section in NAME_KEYS.items():
        names = DATA_SETTINGS if section == "data" else CATALOGUES[section]
        extra = (", a .csv/.npy file of rows, images (a folder of PNG/JPEG or an .npy [N, (C,) H, W]) or a folder "
                 "of .wav files") \
            if section == "data" else ""
        parser.add_argument("--" + key, default=argparse.SUPPRESS, metavar=key.upper(),
                            help=f"{section}: {' | '.join(names)}{extra}")
    for name, (section, spec) in flat_fields().items():
        if name != "device":  # device is the shared --device flag
            _add_setting_flag(parser, name, spec, _setting_help(section, name, spec), argparse.SUPPRESS)


def _sampler_settings() -> dict[str, dataclasses.Field]:
    """Every sampler setting by name, the first sampler's field for each."""
    specs: dict[str, dataclasses.Field] = {}
    for settings in SAMPLER_SETTINGS.values():
        for spec in dataclasses.fields(settings):
            specs.setdefault(spec.name, spec)
    return specs


def _add_sampler_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per sampler setting, None when not given (the run's value then stands)."""
    for name, spec in _sampler_settings().items():
        _add_setting_flag(parser, name, spec, _shared_help(name, SAMPLER_SETTINGS) + " (default: the run's)", None)
    _add_renamed_flag(parser, "--steps", "--sample-steps", type=int)


class _RenamedFlag(argparse.Action):
    """An old flag that still works: it sets its new flag's value, with a one-line notice."""

    def __init__(self, *args, new: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warnings.warn(f"{option_string} is now {self.new} in `scorelab {parser.prog.split()[-1]}`; the old flag "
                      "still works", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def _add_renamed_flag(parser: argparse.ArgumentParser, old: str, new: str, **kwargs) -> None:
    """``old``, hidden from the help, as a synonym of the flag ``new`` already added."""
    parser.add_argument(old, dest=new.lstrip("-").replace("-", "_"), action=_RenamedFlag, new=new,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def _setting_flags(args: argparse.Namespace) -> dict:
    """The settings given as flags (``--hidden 64`` as ``hidden``), by their flat names."""
    known = set(flat_fields()) | set(NAME_KEYS)
    return {key: value for key, value in vars(args).items() if key in known}


def _config_from_args(args: argparse.Namespace):
    """Defaults, then the --config file, then explicit flags; then what those choices imply. With
    --resume the run's own config.toml stands in for the defaults."""
    from scorelab.runs.config import Config, read_toml

    flags = _setting_flags(args)
    file = read_toml(args.config) if args.config else {}
    base = args.out if getattr(args, "resume", False) else getattr(args, "init_from", None)
    if base is not None:
        from scorelab.runs.training import saved_config

        return saved_config(base).replace(**file).replace(**flags)
    return Config.from_layers(file, flags)


def _run_path(text: str) -> Path:
    """A run directory's path, or a pretrained run's (``pretrained:NAME``); an unknown name is a usage error."""
    from scorelab import pretrained

    try:
        return pretrained.resolve(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_run_argument(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("run_dir", type=_run_path, metavar="RUN_DIR",
                   help=(help or "a run directory") + f", or {PREFIX}NAME for a run that ships (`scorelab pretrained`)")


def _results_beside(run_dir: Path) -> Path:
    """Where a command writes what belongs beside the run: the run directory itself, or, for a pretrained run
    (read-only), a copy of it in the current directory."""
    from scorelab import pretrained

    name = pretrained.name_of(run_dir)
    if name is None:
        return run_dir
    copy = pretrained.working_copy(run_dir, Path.cwd())
    print(f"{PREFIX}{name} is read-only: its results go into a copy of it, {copy}")
    return copy


def _device(args: argparse.Namespace) -> str:
    return getattr(args, "device", "auto")


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=_run_path, metavar="RUN_DIR", help="run directory to write")
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="a TOML file of settings, flat or in tables")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue from RUN_DIR/model.safetensors with RUN_DIR/config.toml and these flags; only "
                            "steps, lr, lr_schedule, checkpoint_every, log_every, device and the sampler may change")
    start.add_argument("--init-from", type=_run_path, metavar="RUN",
                       help=f"fine-tune: start from RUN's EMA weights (a run directory or {PREFIX}NAME) and its "
                            "config, with these flags on top, training --steps steps (default: as many as RUN's) "
                            "with a fresh optimiser into RUN_DIR")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes of this machine (data-parallel, through torchrun); the batch is "
                        "split over them")
    _add_compile_flag(p, "steps")
    _add_config_flags(p)


def _add_compile_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--compile", action="store_true",
                   help=f"compile the network with torch.compile (a C++ compiler is needed on the CPU): a one-time "
                        f"cost of a minute or two, then faster {what}; pays only for long jobs")


def _distill_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_argument(p, "the trained run to distil (its EMA weights, read only)")
    p.add_argument("--out", required=True, type=_run_path, metavar="RUN2", help="run directory of the consistency model")
    p.add_argument("--overwrite", action="store_true", help="replace what RUN2 holds")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes of this machine (data-parallel, through torchrun), as train --nproc")
    _add_config_flags(p)


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_argument(p)
    p.add_argument("--n", type=int, default=5000, help="number of samples (default: 5000)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help="output file: .npy, .csv (rows of numbers) or .png (a grid of images)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed (default: 0); sample i depends on (seed, i) alone, whatever the batch size")
    p.add_argument("--batch-size", type=int, metavar="B",
                   help="samples drawn at once (default: 256 images or 10000 points); the samples do not change")
    p.add_argument("--sampler", choices=list(SAMPLER_SETTINGS), help="sampler (default: the run's)")
    p.add_argument("--class", dest="label", metavar="C",
                   help="a class-conditional run: draw class C (an integer); 'all': --n of each class, one row "
                        "of the grid per class (sample i of a class is the same as with --class C); 'none': the "
                        "unconditional model (default: the classes in turn, sample i of class i mod K)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar (shown on a terminal only)")
    _add_compile_flag(p, "sampling")
    _add_sampler_flags(p)


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_argument(p)
    p.add_argument("--n", type=int, help="points per set (default: 5000), image samples (default: 1000), or test "
                   "utterances of a waveform run (default: 4)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions R of the W2 ratio (default: 3)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--nll", action="store_true",
                   help="also the test NLL in nats through the probability-flow ODE and the variational bound of "
                   "the ancestral chain, beside the data's own NLL where it is known")
    p.add_argument("--n-test", type=int, default=500,
                   help="test points for --nll, or test images for an image run's bits/dim (default: 500)")
    p.add_argument("--vocoder-steps", type=int, nargs="+", metavar="K",
                   help="waveform runs: WaveGrad's numbers of steps to measure (default: 6 25 50 1000)")
    _add_compile_flag(p, "sampling")
    for spec in dataclasses.fields(Guided):  # a class-conditional run is measured per class, guided as asked
        _add_setting_flag(p, spec.name, spec, spec.metadata["help"] + " (default: the run's)", None)


def _plot_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_argument(p)
    p.add_argument("--trajectories", action="store_true",
                   help="sampler trajectories over the score field (trajectories.png)")
    p.add_argument("--animate", action="store_true",
                   help="a GIF of the run's sampler carrying points from noise to data (SAMPLER.gif, e.g. stochastic_heun.gif)")
    p.add_argument("--out", type=Path, metavar="DIR", help="figure directory (default: RUN_DIR)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("scorelab-demo"), metavar="DIR",
                   help="run directory (default: ./scorelab-demo)")


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a reduced smoke run (2 densities, few steps)")
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="only these densities (default: the suite)")
    p.add_argument("--out", type=Path, default=Path("bench_runs"), metavar="DIR",
                   help="where the run directories go (default: ./bench_runs)")
    p.add_argument("--repeats", type=int, default=None, metavar="R",
                   help="repetitions behind each mean (default: 10, or 3 with --quick)")
    p.add_argument("--floor-repeats", type=int, default=None, metavar="F",
                   help="repetitions behind each real-vs-real floor, F >= R (default: 3R)")
    # Into the bench directory by default: run inside a clone, ./BENCHMARKS.md is the project's own record.
    p.add_argument("--benchmarks-md", type=Path, default=None, metavar="FILE",
                   help="Markdown file whose toy-suite section is rewritten (default: OUT/BENCHMARKS.md)")
    p.add_argument("--figure", type=Path, default=None, metavar="FILE.png",
                   help="grid figure, data vs samples (default: OUT/toy_suite.png)")


def cmd_train(args: argparse.Namespace) -> int | None:
    if args.nproc is not None:
        return _launch(args)
    from scorelab.evaluation import schedule_search
    from scorelab.runs.distributed import World
    from scorelab.runs.training import saved_config, train

    result = train(_config_from_args(args), args.out, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress, compile=args.compile, init_from=args.init_from)
    if not World.from_environment().main:
        return None
    if schedule_search.searches(saved_config(args.out)) and result.resumed_from < result.steps:
        print("searching few-step noise schedules for the wavegrad sampler ...", flush=True)
        schedule_search.prepare(args.out)
    if result.changes:
        print(f"resumed from step {result.resumed_from} with "
              + ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in result.changes.items()))
    if result.resumed_from == result.steps:
        print(f"{result.run_dir} is already trained to {result.steps} steps; nothing to do "
              "(--steps N with a larger N trains further)")
        return
    print(f"trained {result.steps} steps in {result.seconds:.1f} s; final loss {result.final_loss:.4g}; "
          f"{result.parameters:,} parameters; run directory: {result.run_dir}")


def cmd_distill(args: argparse.Namespace) -> int | None:
    if args.nproc is not None:
        return _launch(args)
    from scorelab.runs.distill import distill
    from scorelab.runs.distributed import World

    result = distill(args.run_dir, args.out, overwrite=args.overwrite, progress=not args.no_progress,
                     **_setting_flags(args))
    if World.from_environment().main:
        print(f"distilled {args.run_dir} in {result.steps} steps ({result.seconds:.1f} s; final loss "
              f"{result.final_loss:.4g}); sample it with `scorelab sample {result.run_dir} --sample-steps 1` (or 2)")


def _launch(args: argparse.Namespace) -> int:
    """``train --nproc N``: the same command without the flag, on N processes started by torchrun."""
    from scorelab.runs.distributed import launch

    require_positive_int("--nproc", args.nproc)
    if "WORLD_SIZE" in os.environ:
        raise ConfigError("--nproc starts its own processes; under torchrun, leave it out")
    argv = list(args.argv)
    at = next(i for i, arg in enumerate(argv) if arg == "--nproc" or arg.startswith("--nproc="))
    del argv[at:at + (1 if "=" in argv[at] else 2)]
    return launch(args.nproc, argv)


def cmd_sample(args: argparse.Namespace) -> None:
    from scorelab.runs.distributed import World, resolve_device
    from scorelab.runs.trained import TrainedRun

    require_positive_int("--n", args.n)
    if args.batch_size is not None:
        require_positive_int("--batch-size", args.batch_size)
    world = World.from_environment()
    run = TrainedRun.load(args.run_dir, str(world.device(resolve_device(_device(args)))), compile=args.compile)
    options = {name: getattr(args, name) for name in _sampler_settings()}
    SAMPLE_OUTPUTS[run.modality.name](run, args, options)


def _class_request(run, label: str | None) -> int | str | None:
    """``--class``: None (the classes in turn), a class in [0, classes), "all", or "none" (the null class); a
    one-line error for anything else."""
    if label is None:
        return None
    if not run.classes:
        raise ConfigError(f"--class needs a class-conditional run (trained with --conditional); {run.run_dir} has "
                          "no classes")
    if label == "all":
        return label
    if label == "none":
        from scorelab.core.guidance import NULL_LABEL

        return NULL_LABEL
    if not label.lstrip("-").isdigit() or not 0 <= int(label) < run.classes:
        raise ConfigError(f"--class must be an integer in [0, {run.classes}), 'all' or 'none', got {label!r}")
    return int(label)


def _write_sample_file(run, args: argparse.Namespace, options: dict) -> None:
    """Points and images: the samples in one file (.npy, .csv or a .png grid), drawn in batches that the
    ranks of a torchrun job share out; with ``--class all``, --n of each class in turn, a row of the grid each."""
    import time

    import torch
    from tqdm.auto import tqdm

    from scorelab.runs.distributed import batches_in_order, collective, process_group
    from scorelab.runs.sample_io import SampleWriter, estimate

    batch_size = args.batch_size or run.sample_batch_size
    label = _class_request(run, args.label)
    total = args.n * run.classes if label == "all" else args.n

    def make(first: int, count: int):
        if label == "all":
            return run.class_grid_rows(first, count, seed=args.seed, per_class=args.n, sampler=args.sampler, **options)
        return run.sample_rows(first, count, seed=args.seed, sampler=args.sampler, cond=label, **options)

    # Under torchrun the ranks share the batches out and rank 0 writes them; samples travel on the CPU (gloo).
    with process_group(torch.device("cpu")) as world, collective(world):
        batches = batches_in_order(make, total, batch_size, run.shape, world)
        if not world.main:
            for _ in batches:
                pass
            return
        writer = SampleWriter(args.out, total, run.shape, value_range=run.value_range,
                              columns=args.n if label == "all" else None)
        print(writer.plan(), flush=True)  # before any work: a job of days does not start silently
        started = time.perf_counter()
        with writer as out, tqdm(total=total, unit="sample", desc="sample", dynamic_ncols=True,
                                 disable=True if args.no_progress else None) as bar:  # None: on a terminal only
            for batch in batches:
                out.write(batch)
                bar.update(len(batch))
                if out.written == len(batch) < total:  # the first batch of several
                    tqdm.write(estimate(len(batch), time.perf_counter() - started, total, batch_size, world.size))
    print(f"wrote {total} samples to {args.out}")


def _write_test_utterances(run, args: argparse.Namespace, options: dict) -> None:
    """Waveforms: the run's test utterances vocoded, one at a time; under torchrun, rank 0 vocodes them all."""
    from scorelab.runs.distributed import World

    if World.from_environment().main:
        _vocode_test_utterances(run, args, options)


# How `scorelab sample` writes a run's samples, by its modality (:attr:`scorelab.data.modality.Modality.name`).
SAMPLE_OUTPUTS = {"points": _write_sample_file, "images": _write_sample_file, "waveforms": _write_test_utterances}

def _vocode_test_utterances(run, args: argparse.Namespace, options: dict) -> None:
    """A waveform run's samples: its first --n test utterances vocoded from their mel spectrograms, as WAVs."""
    import torch

    from scorelab.data.audio import SAMPLE_RATE
    from scorelab.evaluation.audio import test_utterances
    from scorelab.evaluation.vocoding import vocode, write_wav

    if args.out.suffix:
        raise ConfigError(f"a waveform run writes one .wav per test utterance: --out must be a directory, "
                          f"got {args.out.name!r}")
    waves, names = test_utterances(run, args.n)
    for index, (wave, name) in enumerate(zip(waves, names)):
        out = vocode(run, wave, generator=torch.Generator().manual_seed(args.seed + index), sampler=args.sampler,
                     **options)
        write_wav(args.out / f"test_{index:03d}.wav", out.wave)
        print(f"{args.out / f'test_{index:03d}.wav'}: {name} ({len(wave) / SAMPLE_RATE:.2f} s, vocoded in "
              f"{out.seconds:.1f} s)")


def _vocode_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_argument(p)
    p.add_argument("--input", required=True, type=Path, metavar="IN.wav", help="the speech whose mel is vocoded")
    p.add_argument("--out", required=True, type=Path, metavar="OUT.wav", help="the waveform to write")
    p.add_argument("--sample-steps", type=int, default=6,
                   help="WaveGrad's refinement steps: the run's searched schedule for 6, 25 or 50; the training "
                        "chain respaced otherwise (default: 6)")
    _add_renamed_flag(p, "--steps", "--sample-steps", type=int)
    p.add_argument("--start", choices=WAVEGRAD_STARTS,
                   help="where the chain starts: noise, or Griffin-Lim's waveform of the same mel (default: the run's; "
                        "its searched chains were chosen for that start)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def cmd_vocode(args: argparse.Namespace) -> None:
    import torch

    from scorelab.data.audio import SAMPLE_RATE, read_wav
    from scorelab.evaluation.vocoding import require_waveform_run, vocode, write_wav
    from scorelab.runs.trained import TrainedRun

    require_positive_int("--sample-steps", args.sample_steps)
    if args.out.suffix.lower() != ".wav":
        raise ConfigError(f"--out must end in .wav, got {args.out.name!r}")
    run = TrainedRun.load(args.run_dir, _device(args))
    require_waveform_run(run)
    wave = read_wav(args.input)
    out = vocode(run, wave, generator=torch.Generator().manual_seed(args.seed), sampler="wavegrad",
                 sample_steps=args.sample_steps, start=args.start)
    write_wav(args.out, out.wave)
    seconds = len(wave) / SAMPLE_RATE
    print(f"wrote {args.out}: {seconds:.2f} s of audio from the mel of {args.input}, {args.sample_steps} steps in "
          f"{out.seconds:.1f} s (real-time factor {out.seconds / seconds:.2f})")


def _check_evaluation_flags(args: argparse.Namespace) -> None:
    if args.n is not None:
        require_positive_int("--n", args.n)
    require_positive_int("--repeats", args.repeats)
    require_positive_int("--n-test", args.n_test)
    for steps in args.vocoder_steps or ():
        require_positive_int("--vocoder-steps", steps)


def _evaluation(run, args: argparse.Namespace) -> dict:
    """What ``scorelab evaluate`` measures of ``run`` with its flags ``args``; written to RUN_DIR/metrics.json."""
    from scorelab.evaluation.evaluate import EVALUATIONS, evaluate_run

    likelihood = args.nll or EVALUATIONS[run.modality.name].likelihood_by_default
    guidance = {spec.name: getattr(args, spec.name, None) for spec in dataclasses.fields(Guided)}
    return evaluate_run(run, n=args.n, repeats=args.repeats, seed=args.seed, n_test=args.n_test if likelihood else None,
                        wavegrad_steps=tuple(args.vocoder_steps) if args.vocoder_steps else None,
                        **{key: value for key, value in guidance.items() if value is not None})


def cmd_evaluate(args: argparse.Namespace) -> None:
    from scorelab.evaluation.evaluate import EVALUATIONS
    from scorelab.runs.trained import TrainedRun

    _check_evaluation_flags(args)
    args.run_dir = _results_beside(args.run_dir)
    run = TrainedRun.load(args.run_dir, _device(args), compile=args.compile)
    metrics = _evaluation(run, args)
    print(EVALUATIONS[run.modality.name].format(metrics))
    print(f"wrote {args.run_dir / 'metrics.json'}")


def cmd_plot(args: argparse.Namespace) -> None:
    from scorelab.runs.trained import TrainedRun

    if args.out is None:
        args.run_dir = _results_beside(args.run_dir)
    run = TrainedRun.load(args.run_dir, _device(args))
    for path in _figures(run, args):
        print(f"wrote {path}")


def _figures(run, args: argparse.Namespace) -> list[Path]:
    """Draw the figures ``scorelab plot`` draws of ``run`` with its flags ``args``; their paths."""
    from scorelab import plots

    chosen = [name for name, wanted in (("trajectories", args.trajectories), ("animation", args.animate)) if wanted]
    return plots.plot_run(run, args.out or args.run_dir, chosen or plots.STANDARD_FIGURES, args.seed)


def _report_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_argument(p)
    p.add_argument("--no-compute", action="store_true",
                   help="only write the page of what the run holds; without it, a run without metrics.json is "
                        "evaluated first (as `scorelab evaluate RUN_DIR`) and one without figures plotted (as "
                        "`scorelab plot RUN_DIR`)")
    p.add_argument("--n", type=int, help="the evaluation's --n, when it is made (default: evaluate's)")
    p.add_argument("--repeats", type=int, help="the evaluation's --repeats, when it is made (default: evaluate's)")


def _arguments_of(command: str, argv: Sequence[object]) -> argparse.Namespace:
    """The arguments of ``scorelab COMMAND ARGV``: that command's defaults for every flag ``argv`` leaves out."""
    return build_parser(command).parse_args([command, *map(str, argv)])


def cmd_report(args: argparse.Namespace) -> None:
    from scorelab.app.run_report import lacking, write_report
    from scorelab.runs.trained import TrainedRun

    args.run_dir = _results_beside(args.run_dir)
    if not args.no_compute:
        flags = [(flag, value) for flag, value in (("--n", args.n), ("--repeats", args.repeats)) if value is not None]
        evaluate = _arguments_of("evaluate", [args.run_dir, *(item for pair in flags for item in pair)])
        _check_evaluation_flags(evaluate)  # before the run loads: a bad flag answers at once
        missing = lacking(args.run_dir)
        run = TrainedRun.load(args.run_dir, _device(args)) if missing else None
        if "evaluation" in missing:
            _evaluation(run, evaluate)
            print(f"made the evaluation the page lacked (scorelab evaluate): {args.run_dir / 'metrics.json'}")
        if "figures" in missing:
            drawn = _figures(run, _arguments_of("plot", [args.run_dir]))
            print(f"made the figures the page lacked (scorelab plot): {', '.join(path.name for path in drawn)}")
    print(f"wrote {write_report(args.run_dir)}")


def cmd_demo(args: argparse.Namespace) -> None:
    from scorelab.app import demo
    from scorelab.evaluation.evaluate import format_report

    print(f"scorelab demo: NCSN on the swiss roll -> {args.out}")
    result = demo.run_demo(args.out, _device(args), progress=sys.stderr.isatty(),
                           phase=lambda message: print(f"  {message} ...", flush=True))
    sampler = result.config.sampler.to_dict()
    guidance = {spec.name for spec in dataclasses.fields(Guided)}  # the demo's unconditional run is not guided
    settings = ", ".join(f"{key} = {value}" for key, value in sampler.items() if key != "name" and key not in guidance)
    print(f"train time   {result.trained.seconds:6.1f} s  ({result.trained.steps} steps)")
    print(f"sample time  {result.sample_seconds:6.1f} s  ({demo.DEMO_SAMPLES} points, {sampler['name']}: {settings})")
    print(format_report(result.report))
    print("figures      " + ", ".join(path.name for path in result.figures))


def cmd_bench(args: argparse.Namespace) -> None:
    from scorelab.app.bench import run_bench
    from scorelab.runs.config import Config

    for flag, value in (("--repeats", args.repeats), ("--floor-repeats", args.floor_repeats)):
        if value is not None:
            require_positive_int(flag, value)
    run_bench(args.out, quick=args.quick, datasets=args.datasets,
              benchmarks_md=args.benchmarks_md or args.out / "BENCHMARKS.md",
              figure=args.figure or args.out / "toy_suite.png", config=Config(device=_device(args)),
              repeats=args.repeats, floor_repeats=args.floor_repeats)


def cmd_pretrained(args: argparse.Namespace) -> None:
    from scorelab import pretrained

    if not pretrained.names():
        print("no pretrained runs ship with this installation")
    for name in pretrained.names():
        record = pretrained.Provenance.read(name)
        values, changed = record.values, record.changed_files()
        scores = record.scores_text(" · ")
        print(f"{PREFIX}{name}  ({record.size / 1e6:.2f} MB, {values['weights']})  {record.summary}\n"
              f"  trained  {values['steps']} steps in {values['train_minutes']:.1f} min on {values['machine']}: "
              f"`{values['command']}`\n"
              f"  scores   {scores} (`{values['evaluate']}`)\n"
              f"  try      {values['example']}"
              + (f"\n  CHANGED  {', '.join(changed)} differ from what provenance.toml records" if changed else ""))


class Command:
    """A subcommand: its one-line help, its description, how to add its arguments, and what it runs."""

    def __init__(self, help: str, description: str, arguments: Callable[[argparse.ArgumentParser], None],
                 run: Callable[[argparse.Namespace], int | None]) -> None:
        self.help, self.description, self.arguments, self.run = help, description, arguments, run


COMMANDS = {
    "train": Command(
        "train a score model into a run directory",
        "Train a score model. Precedence: defaults < --config file < flags. Each setting belongs to a section "
        "([data], [model], [process], [objective], [optim], [sampler]) and, where not every part of it has the "
        "setting, to the parts named in its help; a setting the chosen part lacks is an error. The resolved config "
        "is saved as RUN_DIR/config.toml.", _train_arguments, cmd_train),
    "distill": Command(
        "distil a trained run into a consistency model that samples in one or two steps",
        "Consistency distillation (Song et al. 2023): train a consistency model f(y, σ), f(y, σ_min) = y, whose "
        "target at each level is one step of RUN's probability-flow ODE (its EMA score, read only) from the level "
        "above. RUN2 learns RUN's data, over RUN's noise range, starting from RUN's weights where the networks "
        "match; flags change any setting (e.g. --steps, --distill-levels, --teacher-solver). Sample it with "
        "`scorelab sample RUN2 --sample-steps 1` or 2.", _distill_arguments, cmd_distill),
    "sample": Command(
        "draw samples from a trained run",
        "Draw samples from a trained run and save them as .npy, .csv or (images) a .png grid; images are in the "
        "data's own units and shape [n, C, H, W]. A waveform run vocodes its first --n test utterances into the "
        "directory --out, one WAV each. Sampler settings default to the run's "
        "(for another sampler: its defaults, with the run's settings it shares).", _sample_arguments, cmd_sample),
    "evaluate": Command(
        "W2 ratio of a run against fresh data (images: classifier features, bits/dim); writes metrics.json",
        "Mean exact W2 between model samples and fresh data over R repetitions, beside the real-vs-real floor (two "
        "fresh data sets of the same size). For a data file, each repetition compares disjoint random subsets of its "
        "rows. For images, on the test split: Fréchet distance and KID in a trained classifier's features beside "
        "their floors, precision and recall, class coverage, memorisation and bits per dimension beside a Gaussian "
        "and a Gaussian mixture.", _evaluate_arguments, cmd_evaluate),
    "vocode": Command(
        "turn a WAV file's mel spectrogram back into a waveform with a trained WaveGrad run",
        "Read IN.wav (mono; resampled to 22 050 Hz), compute its log-mel spectrogram, and write the waveform that "
        "the run's WaveGrad sampler makes from it in --steps refinement steps.", _vocode_arguments, cmd_vocode),
    "plot": Command(
        "draw the data, score fields, samples and trajectories",
        "Without flags: data.png, score_field.png, samples.png and trajectories.png. With flags: only the figures "
        "asked for.", _plot_arguments, cmd_plot),
    "report": Command(
        "write RUN_DIR/report.html, one page of the run",
        "One self-contained HTML page (figures and audio embedded): the run's parts, provenance, training curve, "
        "metrics with their floors (from `scorelab evaluate`), the figures `scorelab plot` drew, and the config. "
        "A run not yet evaluated or plotted is evaluated and plotted first, unless --no-compute is given.",
        _report_arguments, cmd_report),
    "pretrained": Command(
        "list the trained runs that ship with scorelab, with their scores and sizes",
        f"The runs that ship inside the package, each usable wherever a run directory is, as {PREFIX}NAME: how it "
        "was trained, what `scorelab evaluate` scored, its size, and a command to try. A pretrained run is read-only: "
        f"evaluate, plot and report write into a copy of it (./pretrained-NAME), and `scorelab train --init-from "
        f"{PREFIX}NAME --out RUN` fine-tunes one.", lambda p: None, cmd_pretrained),
    "demo": Command(
        "the seed tutorial's swiss-roll NCSN, done right",
        "Train the seed's NCSN on the swiss roll, sample, evaluate and plot; prints train time, sample time, W2 and "
        "its floor.", _demo_arguments, cmd_demo),
    "bench": Command(
        "train and measure the defaults on every density of the 2-D suite",
        "For each density: train with default settings, sample 5000 points, and report the W2 ratio, MMD and energy "
        "distance beside their floors, with train and sample seconds. Writes a section of BENCHMARKS.md and a grid "
        "figure.", _bench_arguments, cmd_bench),
}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, as every other error is (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"scorelab: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: every command listed, and the arguments of ``command`` (of every command when None)."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--device", default=argparse.SUPPRESS, help="auto | cpu | cuda[:N] (default: auto)")
    shared.add_argument("--threads", default=argparse.SUPPRESS, metavar="N",
                        help="CPU threads per process: a number, or auto (default: one for a small model, else the "
                        "cores that other processes leave free, re-chosen each second as they come and go)")
    parser = _Parser(
        prog="scorelab",
        description="Score-based generative modelling: train score networks and diffusion models, "
        "sample with Langevin dynamics, DDPM, DDIM or the probability-flow ODE, and measure quality "
        "against ground truth.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        sub = subparsers.add_parser(name, help=spec.help, description=spec.description, parents=[shared])
        if command is None or command == name:
            spec.arguments(sub)
    return parser


def _out_of_memory(error: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's CPU allocator or CUDA (torch.OutOfMemoryError)."""
    message = str(error)
    return (isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in message or "out of memory" in message.lower())


def _notice(message, category, *_) -> None:
    print(f"scorelab: note: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``scorelab`` command; returns its exit code. Notices of renamed flags and parts are one line each."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", FutureWarning)
        warnings.showwarning = _notice
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else ""  # "": no command's arguments are needed
    args = build_parser(command).parse_args(argv)
    args.argv = argv
    try:
        if hasattr(args, "threads"):
            from scorelab.core.threads import parse_threads, set_threads

            set_threads(parse_threads(args.threads))
        return COMMANDS[args.command].run(args) or 0
    except ScorelabError as error:
        if type(error).__name__ in ("TrainingDiverged", "PeerLost") and _rank() > 0:
            return 2  # every rank saw the same NaN, or the rank that failed says why: rank 0 speaks for the rest
        print(f"scorelab: error: {_rank_prefix()}{one_line(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left early (`scorelab pretrained | head`): stop quietly, as Unix tools do. Pointing stdout at
        # /dev/null keeps Python's flush at exit from failing a second time (the recipe of Python's `signal` docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        print(f"scorelab: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise
        print(f"scorelab: error: out of memory ({one_line(error) or 'MemoryError'}); ask for less at once "
              "(a smaller --n or --batch-size)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # On its own line: a progress bar may have been cut off mid-line.
        print(f"\nscorelab: interrupted{_left_behind(args)}", file=sys.stderr)
        return 130


def _left_behind(args: argparse.Namespace) -> str:
    """What an interrupted command leaves, as the end of the line that says so ("" where nothing need be said)."""
    if args.command in ("train", "distill", "demo", "bench"):  # each trains; checkpoints are written atomically
        return "; the last checkpoint written is intact"
    if args.command == "sample" and args.out.suffix:  # SampleWriter writes the file whole, or not at all
        return f"; {args.out} was not written (a file already there is untouched)"
    if args.command == "sample":  # a waveform run's WAVs, each written whole
        return f"; the WAVs already in {args.out} are whole, the rest were not written"
    return ""


def _rank() -> int:
    """This process's rank in a torchrun job (0 outside one)."""
    with contextlib.suppress(ValueError):
        return int(os.environ.get("RANK", "0"))
    return 0


def _rank_prefix() -> str:
    """``rank R: `` in the errors of a rank other than 0, whose lines would otherwise look like rank 0's."""
    return f"rank {_rank()}: " if _rank() > 0 else ""


if __name__ == "__main__":
    sys.exit(main())
