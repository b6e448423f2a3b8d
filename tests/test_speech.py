"""eSpeak NG speech: plausible, deterministic utterances, clean errors, and a corpus split by sentence and cached."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from scorelab.core.errors import DataError
from scorelab.data import speech

pytest.importorskip("espeakng_loader")

NINE_WORDS = "The morning fog lifted slowly from the quiet harbour."


def test_a_sentence_is_speech_of_plausible_length_and_energy():
    wave = speech.synthesise(NINE_WORDS)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 1.0 < len(wave) / speech.SAMPLE_RATE < 6.0
    assert np.abs(wave).max() <= 1.0
    assert np.sqrt(np.mean(wave ** 2)) > 0.02  # speech, not near-silence


def test_leading_and_trailing_silence_is_at_most_50_ms():
    wave = speech.synthesise(NINE_WORDS)
    loud = np.flatnonzero(np.abs(wave) >= speech.SILENCE / 32768)
    assert loud[0] <= speech.MARGIN and len(wave) - 1 - loud[-1] <= speech.MARGIN


def test_the_same_call_gives_the_same_samples_whatever_was_spoken_between():
    first = speech.synthesise(NINE_WORDS, voice="en-us+f3")
    speech.synthesise("Something else, in another voice.", voice="en-gb-x-rp", rate=300)
    assert np.array_equal(first, speech.synthesise(NINE_WORDS, voice="en-us+f3"))


def test_a_faster_rate_is_shorter():
    assert len(speech.synthesise(NINE_WORDS, rate=200)) < len(speech.synthesise(NINE_WORDS, rate=130))


@pytest.mark.parametrize("voice", sorted(speech.VOICES))
def test_every_corpus_voice_exists(voice):
    assert len(speech.synthesise("Yes.", voice=voice)) > 0


@pytest.mark.parametrize("voice", ["xx-nowhere", "en-us+nowhere"])
def test_an_unknown_voice_is_one_line_naming_it_and_the_voices(voice):
    with pytest.raises(DataError) as error:
        speech.synthesise(NINE_WORDS, voice=voice)
    message = str(error.value)
    assert "\n" not in message and voice in message and all(name in message for name in speech.VOICES)


@pytest.mark.parametrize("text", ["", "   ", "..."])
def test_text_with_nothing_to_say_is_a_data_error(text):
    with pytest.raises(DataError):
        speech.synthesise(text)


def test_a_missing_espeakng_loader_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(speech, "_ENGINE", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes the import fail
    with pytest.raises(DataError, match=r'pip install "scorelab\[audio\]"') as error:
        speech.synthesise(NINE_WORDS)
    assert "\n" not in str(error.value)


@pytest.fixture
def tiny_corpus(monkeypatch, tmp_path):
    """Three sentences in one voice at one rate, cached under ``tmp_path``."""
    monkeypatch.setenv("SCORELAB_CACHE", str(tmp_path))
    monkeypatch.setattr(speech, "SENTENCES", ("One cat sat down.", "Two dogs ran off.", "Three birds flew by."))
    monkeypatch.setattr(speech, "VOICES", ("en-us",))
    monkeypatch.setattr(speech, "RATES", (185,))
    return tmp_path


def test_the_corpus_is_split_by_sentence(tiny_corpus):
    corpus = speech.speech_corpus(test_sentences=1)
    assert corpus.train_texts == ["One cat sat down.", "Two dogs ran off."]
    assert corpus.test_texts == ["Three birds flew by."]
    assert not set(corpus.train_texts) & set(corpus.test_texts)
    assert len(corpus.train) == 2 and len(corpus.test) == 1 and corpus.sample_rate == speech.SAMPLE_RATE
    assert np.array_equal(corpus.test[0].numpy(), speech.synthesise("Three birds flew by.", rate=185))
    assert corpus.minutes == pytest.approx(sum(len(w) for w in corpus.train + corpus.test) / speech.SAMPLE_RATE / 60)


def test_a_second_call_reads_the_cache_and_an_edit_rebuilds_it(tiny_corpus, monkeypatch):
    first = speech.speech_corpus(test_sentences=1)
    assert len(list((tiny_corpus / "speech").glob("*.npz"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("synthesised although the corpus is cached")

    with monkeypatch.context() as patch:
        patch.setattr(speech, "synthesise", refuse)
        second = speech.speech_corpus(test_sentences=1)
        assert all(np.array_equal(a, b) for a, b in zip(first.train + first.test, second.train + second.test))
        patch.setattr(speech, "RATES", (150,))
        with pytest.raises(AssertionError, match="synthesised"):
            speech.speech_corpus(test_sentences=1)


def test_a_cache_that_cannot_be_written_or_read_is_rebuilt(tiny_corpus, monkeypatch):
    blocked = tiny_corpus / "a file, not a directory"
    blocked.write_text("")
    monkeypatch.setenv("SCORELAB_CACHE", str(blocked))
    assert len(speech.speech_corpus(test_sentences=1).train) == 2

    monkeypatch.setenv("SCORELAB_CACHE", str(tiny_corpus))
    speech.speech_corpus(test_sentences=1)
    for path in (tiny_corpus / "speech").glob("*.npz"):
        path.write_bytes(b"not an npz")
    assert len(speech.speech_corpus(test_sentences=1).test) == 1


@pytest.mark.parametrize("test_sentences", [0, 3])
def test_a_split_that_leaves_no_sentence_on_one_side_is_a_data_error(tiny_corpus, test_sentences):
    with pytest.raises(DataError, match="test_sentences"):
        speech.speech_corpus(test_sentences=test_sentences)
