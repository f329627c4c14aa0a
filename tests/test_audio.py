import io
import logging

import numpy as np
import pytest
import soundfile as sf

from modeling_mlpl.audio import (
    SAMPLING_RATE,
    AudioDecodeError,
    audio_duration,
    load_audio,
    load_segment,
    row_segment,
    try_load_audio,
    write_audio,
)
from tests.helpers_data import corrupt, empty, tone, write


def test_resampling_from_22050_keeps_duration_and_pitch(tmp_path):
    path = tmp_path / "espeak_like.wav"
    sf.write(path, tone(2.0, freq=440.0, sr=22050), 22050)
    audio = load_audio(path)
    assert audio.dtype == np.float32
    assert abs(len(audio) / SAMPLING_RATE - 2.0) < 0.01
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * SAMPLING_RATE / len(audio)
    assert abs(peak_hz - 440.0) < 2.0


def test_stereo_is_averaged_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    left = tone(1.0)
    sf.write(path, np.stack([left, -left * 0 + 0.1], axis=1), SAMPLING_RATE)
    audio = load_audio(path)
    assert audio.ndim == 1
    np.testing.assert_allclose(audio, (left + 0.1) / 2, atol=1e-4)


@pytest.mark.parametrize("fmt,subtype,ext", [("MP3", None, "mp3"), ("OGG", "VORBIS", "ogg"), ("FLAC", None, "flac")])
def test_compressed_formats_decode_to_the_right_length(tmp_path, fmt, subtype, ext):
    path = write(tmp_path / f"a.{ext}", 1.5, fmt=fmt, subtype=subtype)
    assert abs(audio_duration(path) - 1.5) < 0.01
    assert abs(len(load_audio(path)) - 1.5 * SAMPLING_RATE) < 0.01 * SAMPLING_RATE


def test_bytes_and_datasets_dicts_are_accepted(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, tone(1.0), SAMPLING_RATE, format="FLAC")
    a = load_audio(buf.getvalue())
    b = load_audio({"bytes": buf.getvalue(), "path": "x.flac"})
    np.testing.assert_array_equal(a, b)
    assert len(a) == SAMPLING_RATE


def test_offset_and_duration_read_a_window(tmp_path):
    x = np.linspace(-0.5, 0.5, 3 * SAMPLING_RATE, dtype=np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, x, SAMPLING_RATE, subtype="FLOAT")
    window = load_audio(path, offset_s=1.0, duration_s=0.5)
    np.testing.assert_allclose(window, x[SAMPLING_RATE : SAMPLING_RATE + SAMPLING_RATE // 2], atol=1e-6)


@pytest.mark.parametrize("maker", [corrupt, empty])
def test_bad_files_raise_an_error_naming_the_file(tmp_path, maker):
    path = maker(tmp_path / "clip_42.mp3")
    with pytest.raises(AudioDecodeError, match="clip_42.mp3"):
        load_audio(path)
    with pytest.raises(AudioDecodeError, match="clip_42.mp3"):
        audio_duration(path)


def test_missing_file_is_a_decode_error_and_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_try_load_audio_warns_and_returns_none(tmp_path, caplog):
    path = corrupt(tmp_path / "bad.ogg")
    with caplog.at_level(logging.WARNING):
        assert try_load_audio(path) is None
    assert "bad.ogg" in caplog.text


def test_write_audio_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "out.mp3"
    write_audio(path, tone(1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp3"]
    assert abs(audio_duration(path) - 1.0) < 0.01
    with pytest.raises(ValueError, match="unsupported"):
        write_audio(tmp_path / "out.xyz", tone(1.0))


def ramp(tmp_path, seconds=3):
    x = np.linspace(-0.5, 0.5, seconds * SAMPLING_RATE, dtype=np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, x, SAMPLING_RATE, subtype="FLOAT")
    return path, x


def test_a_row_without_offset_is_its_whole_file_whatever_its_duration():
    assert row_segment({"audio": "a.wav", "duration": 2.5}) == (None, None)
    assert row_segment({"audio": "a.wav", "offset": None, "duration": 2.5}) == (None, None)


def test_a_row_with_offset_is_the_segment_it_names():
    assert row_segment({"offset": 1.25, "duration": 0.5}) == (1.25, 0.5)
    assert row_segment({"offset": 0.0, "duration": 0.5}) == (0.0, 0.5)
    assert row_segment({"offset": 4.0}) == (4.0, None)


def test_load_segment_without_offset_reads_the_whole_file(tmp_path):
    path, x = ramp(tmp_path)
    np.testing.assert_array_equal(load_segment(path, None, 1.0), load_audio(path))
    assert len(load_segment(path)) == len(x)


def test_load_segment_reads_offset_plus_duration(tmp_path):
    path, x = ramp(tmp_path)
    segment = load_segment(path, *row_segment({"offset": 1.0, "duration": 0.5}))
    np.testing.assert_allclose(segment, x[SAMPLING_RATE : SAMPLING_RATE + SAMPLING_RATE // 2], atol=1e-6)


def test_load_segment_without_duration_reads_to_the_end(tmp_path):
    path, x = ramp(tmp_path)
    np.testing.assert_allclose(load_segment(path, 2.0), x[2 * SAMPLING_RATE :], atol=1e-6)


def test_load_segment_longer_than_the_file_stops_at_its_end(tmp_path):
    path, x = ramp(tmp_path)
    np.testing.assert_allclose(load_segment(path, 2.5, 10.0), x[2 * SAMPLING_RATE + SAMPLING_RATE // 2 :], atol=1e-6)


def test_load_segment_past_the_end_is_empty(tmp_path):
    path, _ = ramp(tmp_path)
    assert load_segment(path, 5.0, 1.0).size == 0


def test_load_segment_of_a_bad_file_raises_naming_it(tmp_path):
    path = corrupt(tmp_path / "clip_7.mp3")
    with pytest.raises(AudioDecodeError, match="clip_7.mp3"):
        load_segment(path, 1.0, 0.5)
