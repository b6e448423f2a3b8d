"""One record per modality: every data set declares one, and each layer above keys its own part by it."""

import torch

from scorelab.core.processes import denoised_from_score
from scorelab.data.modality import IMAGES, MODALITIES, POINTS, WAVEFORMS
from scorelab.data.normalisation import Normalisation
from scorelab.data.sources import DATA, FILE, IMAGE_FILES, WAV_FILES, data_part
from scorelab.evaluation.evaluate import EVALUATIONS
from scorelab.plots import RUN_FIGURES


def test_every_data_set_declares_a_modality_and_every_layer_above_knows_each():
    declared = {part.name: part.modality for part in [*DATA.parts(), FILE, IMAGE_FILES, WAV_FILES]}
    assert set(declared.values()) == set(MODALITIES.values())
    assert (declared["moons"], declared["digits"], declared["speech"]) == (POINTS, IMAGES, WAVEFORMS)
    assert data_part("rows.csv").modality is POINTS
    assert set(EVALUATIONS) == set(RUN_FIGURES) == set(MODALITIES)


def test_images_map_their_range_onto_minus_one_one_and_samples_are_clipped_to_it():
    digits = data_part("digits")
    raw = torch.zeros(3, 1, 8, 8)
    normalisation = IMAGES.normalisation(digits, "digits", digits.make(), raw)
    assert torch.equal(normalisation.to_model(torch.tensor([0.0, 8.0, 16.0]).view(3, 1, 1, 1).expand(3, 1, 8, 8))[:, 0, 0, 0],
                       torch.tensor([-1.0, 0.0, 1.0]))
    assert IMAGES.value_range(normalisation) == (0.0, 16.0)
    out = IMAGES.finish(torch.tensor([-3.0, 0.5, 7.0]).view(3, 1, 1, 1).expand(3, 1, 8, 8), normalisation, False)
    assert torch.equal(out[:, 0, 0, 0], torch.tensor([0.0, 12.0, 16.0]))


def test_a_waveforms_every_denoised_estimate_stays_in_minus_one_one():
    normalisation = Normalisation.of_scale(0.1, (1, 16))
    y = torch.randn(4, 1, 16, generator=torch.Generator().manual_seed(0)) * 30
    sigma = torch.full((4,), 2.0)

    def far(x, s, cond=None):  # the score of a point mass at 50 in model units: D(y) = 50, far beyond 1/0.1
        return (50.0 - x) / s.view(-1, 1, 1) ** 2

    kept = WAVEFORMS.keep_in_range(far, normalisation)
    denoised = denoised_from_score(y, kept(y, sigma), sigma)
    assert torch.allclose(denoised, torch.full_like(y, 10.0))  # 1/scale: the waveform's 1 in model units
    assert WAVEFORMS.finish(torch.full((1, 1, 16), 50.0), normalisation, False).max() == 1.0
    assert POINTS.value_range(normalisation) is None and POINTS.keep_in_range(far, normalisation) is far
