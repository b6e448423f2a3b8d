"""DNSMOS P.835 through speechmos: it rates clean speech above the same speech with hiss, and reads any rate."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("speechmos")
pytest.importorskip("espeakng_loader")

from scorelab.core.errors import DataError  # noqa: E402
from scorelab.data.speech import SAMPLE_RATE, synthesise  # noqa: E402
from scorelab.metrics.speech_quality import DNSMOS_RATE, SCORES, dnsmos  # noqa: E402


@pytest.fixture(scope="module")
def sentence() -> torch.Tensor:
    return torch.from_numpy(synthesise("The ferry crossed the bay in less than forty minutes.")).float()


def test_dnsmos_rates_clean_speech_above_the_same_speech_with_hiss(sentence):
    hiss = 0.05 * torch.randn(len(sentence), generator=torch.Generator().manual_seed(0))
    clean, noisy = dnsmos(sentence, SAMPLE_RATE), dnsmos(sentence + hiss, SAMPLE_RATE)
    assert set(clean) == set(SCORES) and all(1 <= value <= 5 for value in clean.values())
    # Hiss is what the background score exists for; the overall score follows it.
    assert clean["bak"] > noisy["bak"] + 1 and clean["ovrl"] > noisy["ovrl"] + 0.3


def test_dnsmos_resamples_to_its_own_rate(sentence):
    """The same speech at 22 050 Hz and at DNSMOS's 16 kHz scores alike (the resampler is all that differs)."""
    import librosa

    at_16k = torch.from_numpy(librosa.resample(sentence.double().numpy(), orig_sr=SAMPLE_RATE, target_sr=DNSMOS_RATE))
    assert dnsmos(sentence, SAMPLE_RATE)["ovrl"] == pytest.approx(dnsmos(at_16k, DNSMOS_RATE)["ovrl"], abs=0.02)


def test_dnsmos_refuses_what_is_not_one_finite_clip(sentence):
    with pytest.raises(DataError, match="one non-empty mono clip"):
        dnsmos(torch.stack([sentence, sentence]), SAMPLE_RATE)
    with pytest.raises(DataError, match="NaN"):
        dnsmos(torch.full((1000,), float("nan")), SAMPLE_RATE)
