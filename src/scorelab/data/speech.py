"""Real speech, synthesised offline by eSpeak NG: English sentences in several voices and speaking rates.

eSpeak NG (https://github.com/espeak-ng/espeak-ng) is a small formant synthesiser. The
``espeakng_loader`` wheel ships its shared library and its voice data, so nothing is installed
system-wide and nothing is downloaded: the library is called through ctypes (its C API,
``speak_lib.h``) in synchronous mode, which hands the samples to a callback and opens no audio device.

eSpeak NG is not a pure function of its input: it keeps synthesis state in static variables that no
call resets (the phase of its pitch flutter and its echo buffer, in ``wavegen.c``) and seeds its noise
generator from the clock when it is initialised, so the same sentence spoken twice by one loaded
library differs by a few samples. Each utterance is therefore spoken by a freshly loaded library
(loaded, initialised, seeded, unloaded), a private copy made once per process, so that the same
arguments give the same samples in any process and in any order, whatever else has loaded eSpeak NG.

:func:`speech_corpus` speaks every sentence of :data:`SENTENCES` in every voice of :data:`VOICES` at
every rate of :data:`RATES` and splits by sentence: the last sentences are the test split, so no test
sentence is heard in training. It is built once and kept under the cache directory as one ``.npz``.
"""

from __future__ import annotations

import _ctypes
import ctypes
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scorelab.core.atomic import write_atomic
from scorelab.core.cache import cache_dir
from scorelab.core.errors import ConfigError, DataError, ScorelabError

SAMPLE_RATE = 22_050  # eSpeak NG's only output rate

SENTENCES: tuple[str, ...] = (
    "The morning fog lifted slowly from the quiet harbour.",
    "Heavy rain is expected across the northern hills by Thursday evening.",
    "A sudden gust of wind scattered the dry leaves along the path.",
    "Snow fell all night, and the village woke to silence.",
    "The forecast promised sunshine, but thick clouds rolled in before noon.",
    "Thunder rumbled in the distance while the children hurried home.",
    "Chop the onions finely and fry them gently in butter.",
    "She kneaded the dough for ten minutes until it felt smooth.",
    "Add a pinch of salt before the soup begins to boil.",
    "The bread came out of the oven golden and crisp.",
    "Fresh basil, ripe tomatoes and olive oil make a simple sauce.",
    "He burnt the toast again and opened every window in the kitchen.",
    "Our train to the coast leaves the station at half past seven.",
    "The ferry crossed the bay in less than forty minutes.",
    "Pack a warm jacket, because mountain evenings can be surprisingly cold.",
    "The old map showed a bridge that no longer exists.",
    "We missed the last bus and walked back under the stars.",
    "Her suitcase was lost somewhere between Lisbon and Oslo.",
    "Water boils at a lower temperature high up in the mountains.",
    "Light from the sun takes about eight minutes to reach the earth.",
    "The chemist measured each powder carefully on a tiny brass scale.",
    "Bees tell each other where the flowers are with a curious dance.",
    "A magnet can pick up iron nails but not copper coins.",
    "The telescope revealed four small moons circling the bright planet.",
    "My neighbour plays the violin every Sunday afternoon.",
    "The library stays open late during the examination weeks.",
    "Please remember to water the plants while I am away.",
    "The puppy chewed through three shoelaces before breakfast.",
    "Quiet voices drifted up from the garden below the balcony.",
    "Six thick thistle sticks stood beside the wooden gate.",
    "The museum displays a huge skeleton of a blue whale.",
    "Could you pass me the jug of cold water, please?",
    "Why does the clock in the hall always run five minutes fast?",
    "The orchestra tuned their instruments as the lights went down.",
    "A young fox watched us from the edge of the field.",
    "The engineer checked every bolt on the bridge twice.",
    "Yellow kites danced above the beach on a breezy July morning.",
    "The market sells cheese, honey, and jars of pickled vegetables.",
    "Grandfather repaired the broken chair with glue and patience.",
    "Measure the length of the table before you buy a cloth.",
    "The volcano has been quiet for nearly two hundred years.",
    "Every autumn the geese fly south in long, noisy lines.",
    "She typed the final chapter of her novel at dawn.",
    "The pharmacy on the corner closes early on Wednesdays.",
    "Ice cubes cracked loudly as the warm juice was poured.",
    "A zebra's stripes may help it keep cool in the heat.",
    "The pilot announced a short delay because of strong crosswinds.",
    "Judges praised the sculpture for its bold shape and smooth finish.",
)
# Two American and two British voices; "+f3" and "+f4" are eSpeak NG's female variants (voices/!v).
VOICES: tuple[str, ...] = ("en-us", "en-us+f3", "en-gb-x-rp", "en-gb-scotland+f4")
RATES: tuple[int, ...] = (150, 185)  # words per minute, either side of eSpeak NG's default of 175

RATE_RANGE = (80, 450)  # espeakRATE_MINIMUM and espeakRATE_MAXIMUM in speak_lib.h
PITCH_RANGE = (0, 100)
SILENCE = 100  # int16 amplitude (-50 dBFS) below which a leading or trailing sample counts as silence
MARGIN = SAMPLE_RATE // 20  # 50 ms of the silence kept either side of the speech
RAND_SEED = 1  # the seed eSpeak NG's own command line uses for --deterministic

# speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns once every sample has gone to the callback
INITIALIZE_DONT_EXIT = 0x8000  # report a failed initialisation instead of calling exit()
EE_OK = 0
POS_CHARACTER = 1
CHARS_UTF8 = 1
ESPEAK_RATE = 1
ESPEAK_PITCH = 3
# int callback(short *wav, int numsamples, espeak_EVENT *events); wav is NULL once synthesis has ended.
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_unload = _ctypes.FreeLibrary if os.name == "nt" else _ctypes.dlclose


@dataclass(frozen=True)
class _Engine:
    """The private copy of eSpeak NG's library, its data folder and its version."""

    folder: tempfile.TemporaryDirectory  # holds the copy; removed with this object, at exit at the latest
    library: str
    data: str
    version: str


_ENGINE: _Engine | None = None
# eSpeak NG is not thread-safe, and two threads would load the same copy and share its state.
_LOCK = threading.Lock()


def _engine() -> _Engine:
    """The process's eSpeak NG, set up on first use; call it with :data:`_LOCK` held."""
    global _ENGINE
    if _ENGINE is None:
        try:
            import espeakng_loader

            source, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        except (ImportError, RuntimeError):
            message = 'speech needs eSpeak NG from the espeakng-loader wheel: pip install "scorelab[audio]"'
            raise DataError(message) from None
        # A copy of our own: a library that another package has loaded would not unload, and would share its state.
        folder = tempfile.TemporaryDirectory(prefix="scorelab-espeak-")
        library = shutil.copy(source, folder.name)
        _ENGINE = _Engine(folder, library, data, _version(library))
    return _ENGINE


def _load(path: str) -> ctypes.CDLL:
    """eSpeak NG's library at ``path``, loaded afresh, with the signatures of the functions used here."""
    library = ctypes.CDLL(path)
    library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    library.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    library.espeak_Info.restype = ctypes.c_char_p
    library.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    library.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    library.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    return library


def _version(path: str) -> str:
    """eSpeak NG's version string (``espeak_Info``), such as ``1.52.0``."""
    library = _load(path)
    try:
        return library.espeak_Info(None).decode()
    finally:
        _unload(library._handle)


def _check_voice(voice: str, data: str) -> None:
    """Raise :class:`DataError` for a voice variant (``+name``) that is not in ``data``: eSpeak NG ignores it."""
    variant = voice.partition("+")[2]
    if variant and not (Path(data) / "voices" / "!v" / variant).is_file():
        raise _unknown_voice(voice)


def _unknown_voice(voice: str) -> DataError:
    return DataError(f"eSpeak NG has no voice {voice!r}; voices to use: {', '.join(VOICES)}")


def _speak(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """``text`` spoken by a freshly loaded eSpeak NG, as int16 samples at :data:`SAMPLE_RATE`."""
    chunks: list[np.ndarray] = []

    @_SYNTH_CALLBACK
    def collect(wav, n_samples, events):
        if wav and n_samples > 0:
            chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())  # eSpeak NG reuses its buffer
        return 0  # go on (1 would abort the synthesis)

    with _LOCK:
        engine = _engine()
        _check_voice(voice, engine.data)
        library = _load(engine.library)
        try:
            sample_rate = library.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, engine.data.encode(),
                                                    INITIALIZE_DONT_EXIT)
            try:
                if sample_rate != SAMPLE_RATE:
                    raise DataError(f"eSpeak NG did not start with its data at {engine.data} (status {sample_rate})")
                library.espeak_ng_SetRandSeed(RAND_SEED)  # espeak_Initialize seeded it from the clock
                library.espeak_SetSynthCallback(collect)
                if library.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                    raise _unknown_voice(voice)
                library.espeak_SetParameter(ESPEAK_RATE, rate, 0)
                library.espeak_SetParameter(ESPEAK_PITCH, pitch, 0)
                encoded = text.encode()
                status = library.espeak_Synth(encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
                if status != EE_OK:
                    raise DataError(f"eSpeak NG failed to speak {text!r} (status {status})")
            finally:
                library.espeak_Terminate()
        finally:
            _unload(library._handle)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _trim(samples: np.ndarray) -> np.ndarray:
    """``samples`` with leading and trailing silence (below :data:`SILENCE`) cut to at most :data:`MARGIN`."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= SILENCE)
    if len(loud) == 0:
        return samples[:0]
    return samples[max(0, loud[0] - MARGIN):loud[-1] + 1 + MARGIN]


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"eSpeak NG's {name} must be in {bounds[0]}–{bounds[1]}, got {value!r}")


def synthesise(text: str, *, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by eSpeak NG: a float32 mono waveform in [-1, 1] (int16 / 32768) at :data:`SAMPLE_RATE`.

    ``voice`` is an eSpeak NG voice name, optionally with a variant (``en-us+f3``); ``rate`` is in
    words per minute (80–450) and ``pitch`` in eSpeak NG's units (0–100), checked because eSpeak NG
    clamps them silently (:class:`ConfigError`). Leading and trailing silence is cut to at most 50 ms.
    The same arguments always give the same samples. Raises :class:`DataError` for text with nothing
    to say, an unknown voice, or a missing eSpeak NG.
    """
    if not text.strip():
        raise DataError("cannot synthesise empty text")
    _check_range("rate (words per minute)", rate, RATE_RANGE)
    _check_range("pitch", pitch, PITCH_RANGE)
    samples = _trim(_speak(text, voice, rate, pitch))
    if len(samples) == 0:
        raise DataError(f"eSpeak NG speaks nothing for {text!r}")
    return samples.astype(np.float32) / 32768


@dataclass(frozen=True)
class SpeechCorpus:
    """Utterances split by sentence into ``train`` and ``test`` (1-D float32 waveforms in [-1, 1]) at
    ``sample_rate``, with the sentence of each utterance."""

    train: list[Tensor]
    test: list[Tensor]
    train_texts: list[str]
    test_texts: list[str]
    sample_rate: int = SAMPLE_RATE

    @property
    def minutes(self) -> float:
        """The length of all the audio, train and test, in minutes."""
        return sum(len(wave) for wave in self.train + self.test) / self.sample_rate / 60


def _cache_key() -> str:
    """Everything that determines the corpus's samples, as JSON: an edit to any of it rebuilds the corpus."""
    with _LOCK:
        version = _engine().version
    return json.dumps({"sentences": list(SENTENCES), "voices": list(VOICES), "rates": list(RATES),
                       "espeak": version, "loader": importlib.metadata.version("espeakng-loader"),
                       "silence": SILENCE, "margin": MARGIN}, sort_keys=True)


def _cache_path(key: str) -> Path:
    return cache_dir() / "speech" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".npz")


def _read_cache(path: Path, key: str, n_utterances: int) -> list[np.ndarray] | None:
    """The cached utterances (int16) if ``path`` holds them for ``key``, else None."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["key"]) != key:
                return None
            samples, offsets = archive["samples"], archive["offsets"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if len(offsets) != n_utterances + 1 or offsets[-1] != len(samples):
        return None
    return np.split(samples, offsets[1:-1])


def _write_cache(path: Path, key: str, utterances: list[np.ndarray]) -> None:
    """Keep ``utterances`` at ``path``; the cache only saves time, so a failed write is skipped."""
    offsets = np.cumsum([0] + [len(samples) for samples in utterances], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), samples=np.concatenate(utterances), offsets=offsets)
    try:
        write_atomic(path, buffer.getvalue())
    except (OSError, ScorelabError):
        pass


def speech_corpus(*, test_sentences: int = 8) -> SpeechCorpus:
    """Every sentence of :data:`SENTENCES` spoken in every voice of :data:`VOICES` at every rate of
    :data:`RATES`, split by sentence: the last ``test_sentences`` sentences are the test split.

    The first build speaks each utterance with :func:`synthesise` (about 4 s for the default corpus's
    384 utterances, 20 minutes of audio) and keeps the int16 samples under ``cache_dir()/speech``;
    later calls read them back.
    """
    if not 1 <= test_sentences < len(SENTENCES):
        raise DataError(f"test_sentences must be from 1 to {len(SENTENCES) - 1} (there are {len(SENTENCES)} "
                        f"sentences), got {test_sentences}")
    texts = [text for text in SENTENCES for _voice in VOICES for _rate in RATES]
    key = _cache_key()
    path = _cache_path(key)
    utterances = _read_cache(path, key, len(texts))
    if utterances is None:
        # int16 / 32768 is exact in float32, so the samples come back exactly.
        utterances = [(synthesise(text, voice=voice, rate=rate) * 32768).astype(np.int16)
                      for text in SENTENCES for voice in VOICES for rate in RATES]
        _write_cache(path, key, utterances)
    waves = [torch.from_numpy(samples.astype(np.float32) / 32768) for samples in utterances]
    n_train = (len(SENTENCES) - test_sentences) * len(VOICES) * len(RATES)
    return SpeechCorpus(waves[:n_train], waves[n_train:], texts[:n_train], texts[n_train:])
