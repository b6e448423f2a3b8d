"""Settings without torch: each section's catalogue lists the registry's parts with their settings dataclasses,
and what carries over from one sampler's settings to another's is the fields of their common bases."""

from __future__ import annotations

import dataclasses
import itertools

from scorelab.core.registry import shared_settings
from scorelab.runs.config import parts
from scorelab.runs.settings import CATALOGUES, CHOICE_SECTIONS
from scorelab.sampling.settings import SETTINGS as SAMPLERS_SETTINGS
from scorelab.sampling.settings import Guided

# What ``scorelab.core.registry.same_settings`` (fields with the same name and help line) carried over
# between two different samplers before the settings moved into common dataclasses; every pair not listed
# carried nothing, and a sampler to itself carries every field.
CARRIED_BEFORE = {
    ("ald", "langevin"): {"n_steps_each"}, ("ald", "pc"): {"denoise"}, ("ald", "ddpm"): {"sample_steps"},
    ("ald", "ddim"): {"sample_steps"}, ("ald", "ode"): {"denoise"}, ("langevin", "ald"): {"n_steps_each"},
    ("pc", "ald"): {"denoise"}, ("pc", "ode"): {"denoise"}, ("ddpm", "ald"): {"sample_steps"},
    ("ddpm", "ddim"): {"sample_steps"}, ("ddim", "ald"): {"sample_steps"}, ("ddim", "ddpm"): {"sample_steps"},
    ("ode", "ald"): {"denoise"}, ("ode", "pc"): {"denoise"},
    ("heun", "stochastic_heun"): {"rho", "sample_steps"}, ("heun", "dpmpp_2m"): {"rho", "sample_steps"},
    ("stochastic_heun", "heun"): {"rho", "sample_steps"}, ("stochastic_heun", "dpmpp_2m"): {"rho", "sample_steps"},
    ("dpmpp_2m", "heun"): {"rho", "sample_steps"}, ("dpmpp_2m", "stochastic_heun"): {"rho", "sample_steps"},
}


def test_every_registry_registers_its_catalogues_parts_with_their_settings():
    for section in CHOICE_SECTIONS:
        registered = [(part.name, part.settings) for part in parts(section)]
        assert registered == list(CATALOGUES[section].items()), section


def test_the_toy_sets_of_the_catalogue_are_the_generators():
    from scorelab.data.settings import TOY_SETS
    from scorelab.data.toy import DATASETS

    assert tuple(DATASETS) == TOY_SETS


def test_sampler_settings_carry_over_as_before_for_every_pair():
    """As before, and guidance's settings (issue 32) between every pair: they wrap the score any sampler walks."""
    assert len(SAMPLERS_SETTINGS) == 12  # the ten above, issue 33's flow Euler and consistency: they carry nothing
    guidance = {f.name for f in dataclasses.fields(Guided)}
    for a, b in itertools.product(SAMPLERS_SETTINGS, repeat=2):
        carried = shared_settings(SAMPLERS_SETTINGS[a], SAMPLERS_SETTINGS[b])
        if a == b:
            assert carried == {f.name for f in dataclasses.fields(SAMPLERS_SETTINGS[a])}, a
        else:
            assert carried == CARRIED_BEFORE.get((a, b), set()) | guidance, (a, b)


def test_a_trained_runs_sampler_settings_carry_over_through_the_common_bases(tmp_path):
    import scorelab as sl
    from scorelab.runs.trained import load_run

    config = sl.Config(dataset="moons", n_data=200, steps=2, batch_size=32, hidden=8, depth=1, sampler="ald",
                       n_steps_each=7, sample_steps=3, denoise=False, device="cpu")
    sl.train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run", device="cpu")
    assert run.sampler_settings("langevin")[1].n_steps_each == 7
    assert run.sampler_settings("ddim")[1].sample_steps == 3
    assert run.sampler_settings("pc")[1].denoise is False
    assert run.sampler_settings("pc")[1].n_steps_each == 100  # the same name, another meaning
    assert run.sampler_settings("heun")[1].sample_steps == 18
