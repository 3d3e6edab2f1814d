"""Audio feature vectors (space ``audio-logmel-v1``, 120 dimensions): no learned model.

The first two minutes of the sound (non-finite samples as silence), mixed to mono, become a
log-mel spectrogram: 25 ms Hann windows every 10 ms, 40 triangular mel bands from 0 to 8 kHz
(fixed in hertz, so files of any sample rate share one band layout; bands above a file's
Nyquist frequency stay at the floor, which records its bandwidth). Three blocks, each of unit
length, weighted so that the cosine of two sounds is ``0.5 * shape + 0.25 * spread + 0.25 *
change``:

- shape (40): the mean log energy of each band minus the mean over bands (the spectral
  envelope, independent of loudness);
- spread (40): the standard deviation of each band over time (how much it varies);
- change (40): the mean absolute frame-to-frame difference of each band (how fast it moves).

Re-encodings and level changes of one recording come out very close; sounds with similar
timbre come out close. It does not recognise words, speakers or instruments, and there is no
text-to-audio search in this space.
"""

from __future__ import annotations

import io
import math
from functools import cache

import numpy as np
import numpy.typing as npt
import soundfile

from hartonomous.embed.features import FeatureError, combine
from hartonomous.embed.sound_file import open_sound

AUDIO_SPACE = "audio-logmel-v1"
AUDIO_DIMENSION = 120

MAX_SECONDS = 120.0
_BANDS = 40
_MAX_HZ = 8000.0
_WINDOW_S, _HOP_S = 0.025, 0.010
_FLOOR = 1e-10  # power floor: silence and empty bands, log10 -> -10
_FRAMES_PER_BLOCK = 2048  # frames transformed at once; bounds memory for long files
_SHARES = (0.5, 0.25, 0.25)


def audio_features(data: bytes) -> npt.NDArray[np.float32]:
    """The 120-d unit vector of an encoded sound (any format libsndfile reads)."""
    try:
        sound, _ = open_sound(io.BytesIO(data), len(data))
        with sound:
            rate = int(sound.samplerate)
            frames = min(sound.frames, int(MAX_SECONDS * rate))
            samples = sound.read(frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise FeatureError(f"unreadable audio: {exc}") from exc
    if samples.shape[0] == 0:
        raise FeatureError("audio without samples")
    return log_mel_features(samples.mean(axis=1, dtype=np.float64), rate)


def log_mel_features(signal: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.float32]:
    """The 120-d unit vector of a mono signal sampled at ``rate`` Hz.

    Non-finite samples (NaN, ±Inf in float files) count as silence: the features describe the
    finite rest of the sound.
    """
    finite = np.isfinite(signal)
    if not finite.all():
        signal = np.where(finite, signal, 0.0)
    log_mel = _log_mel(signal, rate)
    if np.all(log_mel <= math.log10(_FLOOR) + 1e-9):
        raise FeatureError("silent audio: nothing to describe")
    band_means = log_mel.mean(axis=0)
    change = (
        np.abs(np.diff(log_mel, axis=0)).mean(axis=0) if log_mel.shape[0] > 1 else np.zeros(_BANDS)
    )
    return combine(
        [
            (_SHARES[0], band_means - band_means.mean()),
            (_SHARES[1], log_mel.std(axis=0)),
            (_SHARES[2], change),
        ]
    )


def _log_mel(signal: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.float64]:
    """(frames, 40) log10 mel band energies."""
    n_fft = 1 << math.ceil(math.log2(_WINDOW_S * rate))
    hop = max(1, round(_HOP_S * rate))
    if signal.shape[0] < n_fft:
        signal = np.pad(signal, (0, n_fft - signal.shape[0]))
    count = 1 + (signal.shape[0] - n_fft) // hop
    window = np.hanning(n_fft)
    filters = _mel_filters(rate, n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft)[::hop][:count]
    out = np.empty((count, _BANDS))
    for start in range(0, count, _FRAMES_PER_BLOCK):
        block = frames[start : start + _FRAMES_PER_BLOCK] * window
        power = np.abs(np.fft.rfft(block, axis=1)) ** 2 / n_fft
        out[start : start + _FRAMES_PER_BLOCK] = np.log10(power @ filters.T + _FLOOR)
    return out


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@cache
def _mel_filters(rate: int, n_fft: int) -> npt.NDArray[np.float64]:
    """(40, n_fft // 2 + 1) triangular filters, HTK mel scale, 0-8 kHz whatever the rate."""
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(_MAX_HZ)), _BANDS + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    filters: npt.NDArray[np.float64] = np.maximum(0.0, np.minimum(rising, falling))
    return filters
