"""DNSMOS P.835: an objective estimate of how a listener would rate a speech clip, with no reference needed.

DNSMOS (Reddy et al. 2022, "DNSMOS P.835: a non-intrusive perceptual objective speech quality metric to
evaluate noise suppressors") is a network trained on listeners' ratings in the ITU-T P.835 protocol. It
gives three scores from 1 (bad) to 5 (excellent): the speech signal itself (``sig``), the background
(``bak``: hiss and noise score low) and the overall quality (``ovrl``), plus the P.808 overall rating
(``p808``). Unlike the distances of :mod:`scorelab.metrics.audio` it does not reward a smooth blur: a
vocoder whose output has the right envelope but no harmonics scores low on ``sig`` and ``ovrl``.

The models are the ONNX files of Microsoft's ``speechmos`` wheel, run by ``onnxruntime``, offline
(``pip install "scorelab[audio]"``). They read 16 kHz audio in windows of 9.01 s; a shorter clip is
repeated end to end until it fills one (speechmos's rule), and a longer one is scored in windows one
second apart and averaged.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from scorelab.core.errors import ConfigError, DataError

DNSMOS_RATE = 16_000  # the only rate the DNSMOS models read
SCORES = ("ovrl", "sig", "bak", "p808")


def _speechmos_dnsmos():
    try:
        from speechmos import dnsmos
    except ImportError as exc:
        raise ConfigError(f"DNSMOS needs the speechmos and onnxruntime wheels ({exc.name} is missing): "
                          'pip install "scorelab[audio]"') from None
    return dnsmos


def dnsmos(wave: Tensor, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 of one mono clip ``wave`` [L] at ``sample_rate``: {"ovrl", "sig", "bak", "p808"}, each in [1, 5].

    The clip is resampled to 16 kHz (librosa's soxr resampler) and clipped to [-1, 1], the range the
    models were trained on.
    """
    import librosa

    if wave.ndim != 1 or len(wave) == 0:
        raise DataError(f"DNSMOS scores one non-empty mono clip, got shape {list(wave.shape)}")
    samples = wave.detach().cpu().double().numpy()
    if not np.isfinite(samples).all():
        raise DataError("DNSMOS cannot score a clip with NaN or infinite samples")
    if sample_rate != DNSMOS_RATE:
        samples = librosa.resample(samples, orig_sr=sample_rate, target_sr=DNSMOS_RATE)
    scores = _speechmos_dnsmos().run(np.clip(samples, -1.0, 1.0).astype(np.float32), DNSMOS_RATE)
    return {name: float(scores[f"{name}_mos"]) for name in SCORES}
