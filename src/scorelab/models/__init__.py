"""Score models: backbones, the preconditioning wrapper that makes them scores, and their registry.

:data:`MODELS` (:mod:`scorelab.models.registry`) registers each model by name with its settings
(:mod:`scorelab.models.settings`, without torch); :func:`build_model` builds one for data of a given
shape and noise process. The names below load on first use (:mod:`scorelab.core.lazy`).
"""

from __future__ import annotations

from scorelab.core.lazy import lazy_package

_OBJECTS = {
    "MLP": "scorelab.models.mlp",
    "MODELS": "scorelab.models.registry",
    "PARAMETERISATIONS": "scorelab.models.settings",
    "CondLinearMLP": "scorelab.models.mlp",
    "ConditionalLinear": "scorelab.models.mlp",
    "ConditionalMLP": "scorelab.models.mlp",
    "EnergyScore": "scorelab.models.energy",
    "LabelEmbedding": "scorelab.models.labels",
    "ModelPart": "scorelab.models.registry",
    "NoiseConditionalMLP": "scorelab.models.registry",
    "Preconditioned": "scorelab.models.preconditioning",
    "UNet": "scorelab.models.unet",
    "WaveGrad": "scorelab.models.wavegrad",
    "build_model": "scorelab.models.registry",
    "mlp_stack": "scorelab.models.mlp",
    "sinusoidal_embedding": "scorelab.models.embedding",
}
__all__ = sorted([*_OBJECTS])
__getattr__, __dir__ = lazy_package(__name__, _OBJECTS)
