"""What sampling does for speed changes no sample beyond rounding: channels-last weights, and torch.compile."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import run_cli
from test_images import TINY_UNET

import scorelab as sl
from scorelab.runs.trained import TrainedRun


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("speed") / "run"
    sl.train(sl.Config(dataset="digits", **TINY_UNET), run_dir, progress=False)
    return run_dir


def _contiguous_copy(run: TrainedRun) -> TrainedRun:
    """The same run with every weight in the default (NCHW) layout."""
    run.model.to(memory_format=torch.contiguous_format)
    return run


@pytest.mark.slow
def test_a_run_loaded_on_the_cpu_keeps_conv_weights_channels_last_and_samples_the_same(image_run):
    run = sl.load_run(image_run, "cpu")
    convolutions = [m.weight for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    fast = run.sample(16, generator=torch.Generator().manual_seed(0), sample_steps=5)
    plain = _contiguous_copy(sl.load_run(image_run, "cpu")).sample(
        16, generator=torch.Generator().manual_seed(0), sample_steps=5)
    assert torch.allclose(fast, plain, rtol=0, atol=1e-4 * float(plain.abs().max()))


@pytest.mark.slow
def test_sample_batches_stay_per_sample_with_channels_last_weights(image_run):
    run = sl.load_run(image_run, "cpu")
    whole = torch.cat(list(run.sample_batches(20, seed=4, batch_size=20, sample_steps=3)))
    pieces = torch.cat(list(run.sample_batches(20, seed=4, batch_size=7, sample_steps=3)))
    assert torch.equal(whole, pieces)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile's C++ backend needs a compiler")
def test_compiled_sampling_draws_the_eager_samples_up_to_rounding(image_run, tmp_path, capsys):
    eager = sl.load_run(image_run, "cpu").sample(8, generator=torch.Generator().manual_seed(1), sample_steps=3)
    compiled = sl.load_run(image_run, "cpu", compile=True).sample(8, generator=torch.Generator().manual_seed(1),
                                                                     sample_steps=3)
    assert torch.allclose(compiled, eager, rtol=0, atol=1e-3 * float(eager.abs().max()))
    code, _, err = run_cli(capsys, "sample", image_run, "--compile", "--n", 4, "--sample-steps", 2,
                           "--out", tmp_path / "s.npy")
    assert code == 0, err
