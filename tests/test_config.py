"""The sectioned config: flat settings and tables mean the same, round-trip through TOML, and fail in one line."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

import scorelab as sl
from scorelab.app.cli import main
from scorelab.core.errors import ConfigError, ScorelabError
from scorelab.runs.config import CHOICE_SECTIONS, DEFAULTS, flat_fields, parts


def test_flat_settings_and_tables_are_the_same_config():
    flat = sl.Config(dataset="moons", process="ve", hidden=64, steps=10, sigma_min=0.05, seed=4)
    tables = sl.Config(seed=4, data={"name": "moons"}, model={"hidden": 64}, optim={"steps": 10},
                       process={"name": "ve", "sigma_min": 0.05})
    assert flat == tables
    assert (flat.data.name, flat.model.hidden, flat.optim.steps, flat.process.sigma_min) == ("moons", 64, 10, 0.05)


def test_the_toml_has_one_table_per_section_and_round_trips(tmp_path):
    config = sl.Config(model="ddpm", timesteps=200, sample_steps=50, hidden=32)
    text = config.to_toml()
    tables = tomllib.loads(text)
    assert set(tables) == {"seed", "device", *CHOICE_SECTIONS, "optim"}
    assert tables["model"] == {"name": "ddpm", "hidden": 32, "depth": 3, "fourier_features": 32,
                               "parameterisation": "edm"}
    assert tables["process"] == {"name": "vp", "schedule": "linear", "timesteps": 200, "continuous": False}
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert sl.Config.from_toml(path) == config
    assert sl.Config.from_dict(config.flat()) == config


def test_every_default_part_and_every_part_builds_with_its_defaults():
    assert {section: getattr(sl.Config(), section).name
            for section in CHOICE_SECTIONS} == DEFAULTS
    for section in CHOICE_SECTIONS:
        for part in parts(section):
            assert part.make() is not None, (section, part.name)


def test_each_setting_has_one_section_and_a_line_of_help():
    for name, (section, spec) in flat_fields().items():
        assert spec.metadata.get("help"), name


def test_choosing_a_part_implies_its_companions_unless_they_are_chosen():
    assert sl.Config(model={"name": "energy"}).objective.name == "sliced"
    assert sl.Config(model="energy", objective="exact").objective.name == "exact"
    vp = sl.Config(process="vp")
    assert (vp.objective.name, vp.sampler.name, vp.model.name) == ("eps", "ddpm", "noise_conditional")
    assert sl.Config(objective="dsm").model.name == "mlp"


def test_replace_keeps_other_sections_and_starts_a_new_part_from_its_defaults():
    config = sl.Config(sampler="ald", n_steps_each=5, step_size=1e-4, hidden=16)
    changed = config.replace(sampler="pc")
    assert changed.sampler.to_dict() == {"name": "pc", "sample_steps": 0, "n_steps_each": 100, "snr": 0.16,
                                         "denoise": True, "guidance": 1.0, "guidance_interval": "", "guide": ""}
    assert changed.model.hidden == 16 and config.sampler.name == "ald"
    assert config.replace(hidden=8).model.hidden == 8


@pytest.mark.parametrize("values, message", [
    ({"colour": "red"}, "unknown config key(s): colour"),
    ({"model": {"name": "transformer"}}, "unknown model 'transformer'"),
    ({"network": {"hidden": 3}}, "unknown config table [network]"),
    ({"model": {"lr": 0.1}}, "lr belongs in [optim], not [model]"),
    ({"hidden": 8, "model": {"hidden": 16}}, "hidden is given twice"),
    ({"model": {"hidden": "wide"}}, "hidden should be int"),
    ({"optim": {"steps": 0}}, "steps must be a positive integer"),
    ({"optim": {"ema_decay": 1.0}}, "ema_decay must be in [0.0, 1.0)"),
    ({"process": {"name": "vp", "sigma_max": 2.0}}, "sigma_max does not apply to process 'vp'"),
    ({"sampler": {"name": "ddim", "eta": 1.5}}, "eta must be in [0.0, 1.0]"),
    ({"device": "tpu"}, "device must be auto, cpu or cuda"),
    ({"seed": 1.5}, "seed should be int"),
    ({"data": {"name": 7}}, "the data name should be a string"),
])
def test_bad_values_are_one_config_error_flat_or_in_tables(values, message):
    with pytest.raises(ConfigError) as error:
        sl.Config.from_dict(values)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_a_sectioned_config_file_and_flags(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nhidden = 16\n[optim]\nsteps = 10\nlr = 0.002\n[sampler]\nname = "ald"\nn_steps_each = 3\n')
    code = main(["train", "--out", str(tmp_path / "run"), "--config", str(path), "--hidden", "24", "--n-data", "200",
                 "--n-levels", "3", "--batch-size", "32", "--device", "cpu", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    saved = sl.Config.from_toml(tmp_path / "run" / "config.toml")
    assert (saved.model.hidden, saved.optim.steps, saved.optim.lr, saved.sampler.n_steps_each) == (24, 10, 0.002, 3)
    path.write_text('[model]\nname = "mlp"\nfourier_features = 4\n')
    code = main(["train", "--out", str(tmp_path / "bad"), "--config", str(path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fourier_features does not apply to model 'mlp'" in err[0]
    assert not (tmp_path / "bad").exists()


SCALARS = st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=12))
KEYS = st.sampled_from([*flat_fields(), "name", "dataset", "model", "colour"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from([*CHOICE_SECTIONS, "optim", "seed", "hidden", "network"]),
                       st.one_of(SCALARS, st.dictionaries(KEYS, SCALARS, max_size=4)), max_size=4))
def test_any_table_of_values_is_a_config_or_one_config_error(values):
    try:
        sl.Config.from_dict(values)
    except ScorelabError as error:
        assert "\n" not in str(error)


def test_only_samplers_that_respace_the_process_are_limited_to_its_steps():
    with pytest.raises(ConfigError, match="timesteps = 100"):
        sl.Config(model="ddpm", timesteps=100, sampler="ddim", sample_steps=101)
    assert sl.Config(model="ddpm", timesteps=100, sampler="heun", sample_steps=101).sampler.sample_steps == 101


TABLES = st.dictionaries(st.sampled_from([*CHOICE_SECTIONS, "optim", "seed", "hidden", "network"]),
                         st.one_of(SCALARS.filter(lambda value: value == value),  # TOML has nan, but not nan == nan
                                   st.dictionaries(KEYS, SCALARS, max_size=4)), max_size=4)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.binary(max_size=120),  # any bytes: not UTF-8, not TOML
    st.tuples(TABLES, st.floats(0, 1)).map(  # a config.toml cut short anywhere, as a killed write leaves it
        lambda cut: (lambda text: text[:round(len(text) * cut[1])])(tomli_w.dumps(cut[0]).encode()))))
def test_any_config_toml_file_is_a_config_or_one_config_error(content):
    """The hypothesis fuzz of config.toml files of the reliability issue: never a traceback."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_bytes(content)
        try:
            sl.Config.from_toml(path)
        except ScorelabError as error:
            assert "\n" not in str(error)
