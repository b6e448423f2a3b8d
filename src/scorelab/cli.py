"""The ``scorelab`` command line: train, sample, evaluate, plot, demo.

Bad input prints one line, ``scorelab: error: ...``, to stderr and exits with
status 2; no traceback, and no good file is overwritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from scorelab import data as data_module
from scorelab.checkpoint import write_atomic
from scorelab.config import MODELS, OBJECTIVES, PROJECTIONS, Config, read_toml, with_implied
from scorelab.diffusion import make_chain
from scorelab.errors import ConfigError, ScorelabError, one_line, require_positive_int
from scorelab.metrics import RatioReport, w2_ratio
from scorelab.objectives import diffusion_variational_bound
from scorelab.run import SAMPLERS, TrainedRun
from scorelab.train import train, training_data

SAMPLE_SUFFIXES = (".npy", ".csv")
CONFIG_HELP = {  # one line per Config field; the defaults are appended automatically
    "dataset": "toy data set name or .csv/.npy file",
    "n_data": "points drawn from a named data set (files use every row)",
    "standardize": "train on standardised data and map samples back",
    "model": " | ".join(MODELS),
    "hidden": "hidden units per layer",
    "depth": "number of hidden layers",
    "fourier_features": "random Fourier features of the input (noise_conditional; 0: none)",
    "sigma_max": "largest noise level σ_1; 0 takes the largest pairwise distance in the data (NCSNv2)",
    "sigma_min": "smallest noise level σ_L",
    "n_levels": "number of geometric noise levels L",
    "weight_power": "λ(σ) = σ^p weighting of the annealed DSM loss",
    "reference_size": "annealed DSM: reference points per step for the stable target field (0: off)",
    "objective": "training objective: " + " | ".join(OBJECTIVES),
    "n_projections": "sliced objectives: projections per sample",
    "projection": "sliced objectives: " + " | ".join(PROJECTIONS),
    "steps": "optimisation steps",
    "batch_size": "minibatch size",
    "lr": "Adam learning rate",
    "lr_schedule": "cosine (decay to 0 over the run) | constant",
    "ema_decay": "EMA decay of the sampling weights",
    "seed": "random seed (data, init, minibatches, noise)",
    "device": "auto | cpu | cuda[:N]",
    "checkpoint_every": "write model.safetensors every N steps",
    "log_every": "append a train_log.csv row every N steps",
    "sampler": "default sampler: " + " | ".join(SAMPLERS),
    "n_steps_each": "Langevin steps per noise level",
    "step_size": "Langevin step size ε at the smallest level",
    "denoise": "finish sampling with a Tweedie denoising step",
    "snr": "predictor-corrector: the corrector's signal-to-noise ratio",
    "schedule": "diffusion β schedule: linear | quadratic | sigmoid | cosine",
    "timesteps": "diffusion chain length T",
    "sample_steps": "diffusion sampler steps (0: every timestep; ode: adaptive dopri5)",
    "eta": "DDIM η in [0, 1] (0 is deterministic)",
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field; SUPPRESS keeps unset flags out of the namespace."""
    defaults = Config()
    for field in dataclasses.fields(Config):
        if field.name == "dataset":
            continue
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{CONFIG_HELP.get(field.name, field.name)} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=argparse.SUPPRESS, metavar=field.name.upper(),
                                help=help_text)


def _config_from_args(args: argparse.Namespace) -> Config:
    """Defaults, then the --config file, then explicit flags; then what those choices imply."""
    fields = {field.name for field in dataclasses.fields(Config)}
    stated = read_toml(args.config) if args.config else {}
    settings = {k: v for k, v in Config.from_dict(stated).to_dict().items() if k in stated}  # typed by Config
    settings |= {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return Config().replace(**with_implied(settings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorelab",
        description="Score-based generative modelling: train noise-conditional score networks, "
        "sample with annealed Langevin dynamics, and measure quality against ground truth.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train", help="train a score model into a run directory",
                            description="Train a score model. Precedence: defaults < --config file < flags. "
                            "The resolved config is saved as RUN_DIR/config.toml.")
    p.add_argument("--dataset", default=argparse.SUPPRESS,
                   help=f"toy data set ({', '.join(sorted(data_module.DATASETS))}) or a .csv/.npy file "
                   f"(default: {Config().dataset})")
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="run directory to write")
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="a TOML file of config values")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/model.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(p)

    p = commands.add_parser("sample", help="draw samples from a trained run",
                            description="Draw samples from a trained run and save them as .npy or .csv.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--n", type=int, default=5000, help="number of samples (default: 5000)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file, .npy or .csv")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--sampler", choices=list(SAMPLERS), help="sampler (default: the run's config)")
    p.add_argument("--n-steps-each", type=int, help="Langevin steps per level (default: the run's config)")
    p.add_argument("--step-size", type=float, help="step size ε (default: the run's config)")
    p.add_argument("--snr", type=float, help="pc: corrector signal-to-noise ratio (default: the run's config)")
    p.add_argument("--steps", type=int, dest="sample_steps",
                   help="ddpm/ddim/ode: number of sampling steps (default: the run's config)")
    p.add_argument("--eta", type=float, help="ddim: η in [0, 1] (default: the run's config)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")

    p = commands.add_parser("evaluate", help="W2 ratio of a run against fresh data; writes metrics.json",
                            description="Mean exact W2 between model samples and fresh data over R repetitions, "
                            "beside the real-vs-real floor (two fresh data sets of the same size). For a data "
                            "file, each repetition compares disjoint random subsets of its rows.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--n", type=int, default=5000, help="points per set (default: 5000)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions R (default: 3)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--nll", action="store_true",
                   help="also the test NLL in nats through the probability-flow ODE (and, for DDPM, the "
                   "variational bound), beside the data's own NLL where it is known")
    p.add_argument("--n-test", type=int, default=500, help="test points for --nll (default: 500)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")

    p = commands.add_parser("plot", help="draw the data, score fields, samples and trajectories",
                            description="Without flags: data.png, score_field.png, samples.png and "
                            "trajectories.png. With flags: only the figures asked for.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--trajectories", action="store_true",
                   help="sampler trajectories over the score field (trajectories.png)")
    p.add_argument("--animate", action="store_true",
                   help="a GIF of annealed Langevin carrying points from noise to data (annealed_langevin.gif)")
    p.add_argument("--out", type=Path, metavar="DIR", help="figure directory (default: RUN_DIR)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")

    p = commands.add_parser("demo", help="the seed tutorial's swiss-roll NCSN, done right",
                            description="Train the default NCSN on the swiss roll, sample, evaluate and plot; "
                            "prints train time, sample time, W2 and its floor.")
    p.add_argument("--out", type=Path, default=Path("scorelab-demo"), metavar="DIR",
                   help="run directory (default: ./scorelab-demo)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")

    p = commands.add_parser("bench", help="train and measure the defaults on every density of the 2-D suite",
                            description="For each density: train with default settings, sample 5000 points, "
                            "and report the W2 ratio, MMD and energy distance beside their floors, with train "
                            "and sample seconds. Writes a section of BENCHMARKS.md and a grid figure.")
    p.add_argument("--quick", action="store_true", help="a reduced smoke run (2 densities, few steps)")
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="only these densities (default: the suite)")
    p.add_argument("--out", type=Path, default=Path("bench_runs"), metavar="DIR",
                   help="where the run directories go (default: ./bench_runs)")
    p.add_argument("--repeats", type=int, default=None, metavar="R",
                   help="repetitions behind each mean (default: 10, or 3 with --quick)")
    p.add_argument("--floor-repeats", type=int, default=None, metavar="F",
                   help="repetitions behind each real-vs-real floor, F >= R (default: 3R)")
    p.add_argument("--benchmarks-md", type=Path, default=Path("BENCHMARKS.md"), metavar="FILE",
                   help="Markdown file whose toy-suite section is rewritten (default: ./BENCHMARKS.md)")
    p.add_argument("--figure", type=Path, default=Path("benchmarks/toy_suite.png"), metavar="FILE.png",
                   help="grid figure, data vs samples (default: ./benchmarks/toy_suite.png)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    return parser


def _truth(config: Config):
    """Fresh data for a named set; the rows themselves for a file."""
    if data_module.is_file_source(config.dataset):
        return training_data(config)
    return lambda n, generator: data_module.load(config.dataset, n, generator=generator)


def evaluate_run(run: TrainedRun, *, n: int = 5000, repeats: int = 3, seed: int = 1,
                 n_test: int | None = None) -> dict:
    """The W2 ratio of ``run`` (and with ``n_test`` the test NLL), written to ``RUN_DIR/metrics.json``."""
    report = w2_ratio(lambda k, g: run.sample(k, generator=g), _truth(run.config), n=n, repeats=repeats, seed=seed)
    metrics = {"w2": report.to_dict(), "step": run.step, "dataset": run.config.dataset}
    if n_test is not None:
        metrics["nll"] = held_out_nll(run, n_test, seed)
    write_atomic(run.run_dir / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics


def held_out_nll(run: TrainedRun, n_test: int, seed: int) -> dict:
    """Mean ± standard error of −log p in nats on fresh test points (for a file: random rows of it,
    which the model was trained on)."""
    generator = torch.Generator().manual_seed(seed + 7919)
    truth = _truth(run.config)
    x = truth[torch.randperm(len(truth), generator=generator)[:n_test]] if isinstance(truth, torch.Tensor) \
        else truth(n_test, generator)
    nll = -run.log_prob(x, generator=generator)
    result = {"n": len(x), "ode_nll": nll.mean().item(), "ode_nll_se": nll.std().item() / len(x) ** 0.5,
              "data_nll": data_module.reference_nll(run.config.dataset, x)}
    if run.config.model == "ddpm":
        chain = make_chain(run.config.schedule, run.config.timesteps)
        bound = diffusion_variational_bound(run.model, run.normalisation.to_model(x).to(run.device), chain,
                                            generator=generator).total.cpu()
        bound = bound + run.normalisation.scale.log().sum()
        result |= {"bound": bound.mean().item(), "bound_se": bound.std().item() / len(x) ** 0.5}
    return result


def format_report(report: RatioReport) -> str:
    return "\n".join([
        f"{'metric':<10}{'model':>18}{'floor (data vs iid data)':>26}{'ratio':>8}",
        f"{'W2':<10}{report.model_mean:>10.4f} ± {report.model_std:<6.4f}"
        f"{report.floor_mean:>18.4f} ± {report.floor_std:<6.4f}{report.ratio:>8.3f}",
        f"(means ± std over {report.repeats} repetitions, the floor's over {report.floor_repeats}, "
        f"n = {report.n} per set)",
    ])


FIGURES = ("data", "score_field", "samples", "trajectories", "animation")
STANDARD_FIGURES = FIGURES[:4]


def format_nll(nll: dict) -> str:
    lines = [f"test NLL (probability-flow ODE)  {nll['ode_nll']:.4f} ± {nll['ode_nll_se']:.4f} nats  (n = {nll['n']})"]
    if "bound" in nll:
        lines.append(f"variational bound (DDPM chain)   {nll['bound']:.4f} ± {nll['bound_se']:.4f} nats")
    if nll["data_nll"] is not None:
        lines.append(f"data's own NLL (exact/entropy)   {nll['data_nll']:.4f} nats")
    return "\n".join(lines)


def plot_run(run: TrainedRun, out_dir: Path, figures: Sequence[str] = STANDARD_FIGURES, seed: int = 0) -> list[Path]:
    """Write the ``figures`` named (see :data:`FIGURES`) for ``run`` into ``out_dir``."""
    from scorelab import plots  # matplotlib loads only when figures are asked for

    x = training_data(run.config)[:5000]
    generator = torch.Generator().manual_seed(seed)
    draw = {
        "data": lambda: plots.plot_data(x, out_dir / "data.png", title=run.config.dataset),
        "score_field": lambda: plots.plot_score_fields(run, x, out_dir / "score_field.png"),
        "samples": lambda: plots.plot_samples(x, run.sample(len(x), generator=generator), out_dir / "samples.png",
                                              title=f"{run.config.sampler} samples"),
        "trajectories": lambda: plots.plot_trajectories(run, x, out_dir / "trajectories.png", generator=generator),
        "animation": lambda: plots.animate_sampler(run, x, out_dir / f"{run.config.sampler}.gif",
                                                   generator=generator),
    }
    return [draw[name]() for name in figures]


def save_samples(samples: torch.Tensor, path: Path) -> None:
    array = samples.numpy()
    if path.suffix == ".npy":
        import io

        buffer = io.BytesIO()
        np.save(buffer, array)
        payload = buffer.getvalue()
    else:
        header = ",".join(f"x{i}" for i in range(array.shape[1]))
        rows = "\n".join(",".join(f"{v:.9g}" for v in row) for row in array)
        payload = f"{header}\n{rows}\n".encode()
    write_atomic(path, payload)


def cmd_train(args: argparse.Namespace) -> None:
    config = _config_from_args(args)
    result = train(config, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"trained {result.steps} steps in {result.seconds:.1f} s; final loss {result.final_loss:.4g}; "
          f"run directory: {result.run_dir}")


def cmd_sample(args: argparse.Namespace) -> None:
    require_positive_int("--n", args.n)
    if args.out.suffix not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--out must end in {' or '.join(SAMPLE_SUFFIXES)}, got {args.out.name!r}")
    run = TrainedRun.load(args.run_dir, args.device)
    samples = run.sample(args.n, sampler=args.sampler, generator=torch.Generator().manual_seed(args.seed),
                         n_steps_each=args.n_steps_each, step_size=args.step_size, snr=args.snr,
                         sample_steps=args.sample_steps, eta=args.eta)
    save_samples(samples, args.out)
    print(f"wrote {args.n} samples to {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    require_positive_int("--n", args.n)
    require_positive_int("--repeats", args.repeats)
    if args.nll:
        require_positive_int("--n-test", args.n_test)
    run = TrainedRun.load(args.run_dir, args.device)
    metrics = evaluate_run(run, n=args.n, repeats=args.repeats, seed=args.seed, n_test=args.n_test if args.nll else None)
    print(format_report(RatioReport(**metrics["w2"])))
    if "nll" in metrics:
        print(format_nll(metrics["nll"]))
    print(f"wrote {args.run_dir / 'metrics.json'}")


def cmd_plot(args: argparse.Namespace) -> None:
    run = TrainedRun.load(args.run_dir, args.device)
    chosen = [name for name, wanted in (("trajectories", args.trajectories), ("animation", args.animate)) if wanted]
    for path in plot_run(run, args.out or args.run_dir, chosen or STANDARD_FIGURES, args.seed):
        print(f"wrote {path}")


# The demo keeps the quick settings it was first measured with (BENCHMARKS.md "demo" has its time
# and W2 ratio on 2 cores): the suite-wide defaults (Fourier features, batch 2048, 20 levels x 100
# steps) took 124 s for a W2 ratio of 1.04 on the same swiss roll (README "Status").
DEMO_SETTINGS = {"dataset": "swiss_roll", "fourier_features": 0, "reference_size": 0, "batch_size": 512,
                 "lr": 3e-3, "lr_schedule": "constant", "sigma_max": 1.0, "n_levels": 10, "n_steps_each": 50}


def cmd_demo(args: argparse.Namespace) -> None:
    config = Config(device=args.device).replace(**DEMO_SETTINGS)
    print(f"scorelab demo: NCSN on the swiss roll -> {args.out}")
    result = train(config, args.out, overwrite=True, progress=sys.stderr.isatty())
    run = TrainedRun.load(args.out, args.device)
    start = time.perf_counter()
    run.sample(5000, generator=torch.Generator().manual_seed(0))
    sample_seconds = time.perf_counter() - start
    report = RatioReport(**evaluate_run(run)["w2"])
    figures = plot_run(run, args.out, FIGURES)
    print(f"train time   {result.seconds:6.1f} s  ({result.steps} steps)")
    print(f"sample time  {sample_seconds:6.1f} s  (5000 points, annealed Langevin, "
          f"{config.n_levels} levels x {config.n_steps_each} steps)")
    print(format_report(report))
    print("figures      " + ", ".join(path.name for path in figures))


def cmd_bench(args: argparse.Namespace) -> None:
    from scorelab.bench import run_bench

    for flag, value in (("--repeats", args.repeats), ("--floor-repeats", args.floor_repeats)):
        if value is not None:
            require_positive_int(flag, value)
    run_bench(args.out, quick=args.quick, datasets=args.datasets, benchmarks_md=args.benchmarks_md,
              figure=args.figure, config=Config(device=args.device), repeats=args.repeats,
              floor_repeats=args.floor_repeats)


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "plot": cmd_plot, "demo": cmd_demo,
            "bench": cmd_bench}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except ScorelabError as error:
        print(f"scorelab: error: {one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"scorelab: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scorelab: interrupted; the last checkpoint written is intact", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
