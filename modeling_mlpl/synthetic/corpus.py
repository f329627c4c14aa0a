"""An embedded multilingual speech corpus, synthesised with espeak-ng, in the real on-disk layouts.

Why: the demo and the tests need multilingual speech without downloads. The corpus is written in
the exact Common Voice and VoxPopuli layouts, so the same loaders that read real releases read it:

    <out>/cv/<lang>/clips/common_voice_<lang>_<n>.mp3
    <out>/cv/<lang>/{train,dev,test,validated}.tsv, clip_durations.tsv
    <out>/voxpopuli/unlabelled_data/<lang>/<year>/<session>_<lang>.ogg     15-40 s, several sentences
    <out>/voxpopuli/unlabelled_truth/<lang>.tsv      id, text: true transcripts (synthetic only)
    <out>/text/<lang>.txt                            LM text, sentences disjoint from all audio
    <out>/plan.json                                  digest of each language's plan (written first)
    <out>/manifest.json                              what was generated, voices per split (written last)

Text is real words drawn with their real frequencies (`wordfreq`, top ~20k words), so an n-gram LM
has something to learn. Test sentences are drawn first and every later draw (dev, train,
unlabelled, LM text) rejects any sentence already used, so test text appears nowhere else.
Voices: espeak-ng voice variants; dev/test use held-out variants (unseen speakers). Each
utterance gets its own speed, pitch, gain and white noise, drawn from its split's `VoicePool`.
With `CorpusSize.low_train_variants = k` the low-resource languages get the paper's data regime:
Common Voice's small languages have few speakers and VoxPopuli has hundreds, so the labelled
train set uses k variants with narrow speed/pitch ranges and the unlabelled pool uses all the
other train variants with wider speeds, pitches and noise; PLs then bring new speakers, not only
new sentences. `None` (the `tiny` preset) keeps one pool for labelled and unlabelled audio.

espeak-ng writes 22050 Hz; it is resampled to 16 kHz with soxr, keeping the duration (a test
checks it). Everything is planned in the main process from the seed; workers only synthesise,
so the files, texts and TSVs are the same for a seed whatever the number of jobs. Re-running
skips audio files that exist and decode (writes are atomic), so a killed run resumes; `plan.json`
holds a digest of each language's plan, so a folder made with another seed, size or generator
version is refused instead of being silently mixed with the new plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import unicodedata
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import soxr

from ..audio import SAMPLING_RATE, AudioDecodeError, audio_duration, write_audio

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1.1"  # 1.1: few-speaker labels / many-speaker unlabelled pool
HIGH_RESOURCE = ("en", "de", "es", "fr", "it", "ru")
LOW_RESOURCE = ("pt", "nl", "pl", "el")
# Common Voice code -> espeak-ng voice.
ESPEAK_VOICES = {
    "en": "en-us", "de": "de", "es": "es", "fr": "fr-fr", "it": "it", "ru": "ru",
    "pt": "pt", "nl": "nl", "pl": "pl", "el": "el",
}
# espeak-ng 1.51 voice variants (files in espeak-ng-data/voices/!v). Robotic/whispering ones are
# left out: they would make the task artificial rather than harder.
TRAIN_VARIANTS = (
    "adam", "Alex", "Alicia", "Andrea", "Annie", "antonio", "aunty", "benjamin", "boris", "caleb",
    "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2", "gustave", "Hugo",
    "iven", "iven2", "iven4", "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo", "Marco",
    "Mario", "Michael", "michel", "miguel", "Mike", "Nguyen", "pablo", "paul", "pedro", "quincy",
    "rob", "robert", "steph", "steph3", "Storm", "travis", "victor", "zac", "anika", "norbert",
    "shelby", "sandro", "f1", "f3", "f5", "m1", "m2", "m3", "m5", "m6", "m8", "klatt", "klatt2",
    "klatt6", "grandpa", "AnxiousAndy",
)
HELDOUT_VARIANTS = ("f2", "f4", "m4", "m7", "klatt4", "belinda", "Henrique", "iven3", "steph2", "max")
SPEED_WPM = (120, 210)
PITCH = (25, 75)
SNR_DB = (15.0, 35.0)
GAIN_DB = (-10.0, 0.0)
# Low-resource languages with `low_train_variants` set: a few speakers reading at a narrow range of
# speeds and pitches label the data; the unlabelled pool is wider than dev/test in every direction.
FEW_SPEAKER_SPEED_WPM = (150, 180)
FEW_SPEAKER_PITCH = (40, 60)
MANY_SPEAKER_SPEED_WPM = (110, 230)
MANY_SPEAKER_PITCH = (15, 85)
MANY_SPEAKER_SNR_DB = (10.0, 35.0)
# Planner's speaking-rate estimate (characters per second at 175 wpm), used only to choose how
# many sentences make a 15-40 s recording; the manifest records the real durations.
CHARS_PER_SECOND_175 = 13.0
# Lossy encoder setting: ~25 % faster encoding than the default, still clean speech at 16 kHz.
COMPRESSION_LEVEL = 0.5


@dataclass(frozen=True)
class CorpusSize:
    """Sizes of one preset. Minutes are targets: counts are planned from an average utterance
    length, and the manifest records the hours actually generated."""

    high_resource: tuple[str, ...]
    low_resource: tuple[str, ...]
    high_train_minutes: float
    high_dev_minutes: float
    high_test_minutes: float
    high_unlabelled_minutes: float
    low_train_minutes: float
    low_unlabelled_minutes: float
    low_dev_minutes: float
    low_test_minutes: float
    text_sentences: int  # LM text sentences per language
    vocab_size: int = 20000
    words_per_sentence: tuple[int, int] = (5, 12)  # CV-like 2-6 s utterances
    recording_seconds: tuple[float, float] = (15.0, 40.0)  # VoxPopuli-like long-form
    # Voice variants of each low-resource language's labelled train set (drawn from the seed; the
    # unlabelled pool gets the other train variants). None: labelled and unlabelled audio share
    # every train variant (generator 1.0's corpus, kept so old presets stay reproducible).
    low_train_variants: int | None = None

    @property
    def languages(self) -> tuple[str, ...]:
        return self.high_resource + self.low_resource

    def replace(self, **overrides: Any) -> "CorpusSize":
        return dataclasses.replace(self, **overrides)


PRESETS: dict[str, CorpusSize] = {
    # tests: 3 scripts (Latin, Cyrillic, Greek), seconds to generate
    "tiny": CorpusSize(
        high_resource=("en", "ru"), low_resource=("el",),
        high_train_minutes=0.5, high_dev_minutes=0.2, high_test_minutes=0.2, high_unlabelled_minutes=0.0,
        low_train_minutes=0.3, low_unlabelled_minutes=0.6, low_dev_minutes=0.2, low_test_minutes=0.2,
        text_sentences=200,
    ),
    # The prototype's sizes (docs/results.md, "The prototype"): ~20 min labelled per high-resource
    # language; ~6 min labelled, ~70 min unlabelled, 4 min dev, 9 min test per low-resource language
    "demo": CorpusSize(
        high_resource=HIGH_RESOURCE, low_resource=LOW_RESOURCE,
        high_train_minutes=20.0, high_dev_minutes=2.0, high_test_minutes=2.0, high_unlabelled_minutes=0.0,
        low_train_minutes=6.0, low_unlabelled_minutes=70.0, low_dev_minutes=4.0, low_test_minutes=9.0,
        text_sentences=50000, low_train_variants=4,
    ),
    "full": CorpusSize(
        high_resource=HIGH_RESOURCE, low_resource=LOW_RESOURCE,
        high_train_minutes=120.0, high_dev_minutes=10.0, high_test_minutes=10.0, high_unlabelled_minutes=60.0,
        low_train_minutes=30.0, low_unlabelled_minutes=600.0, low_dev_minutes=10.0, low_test_minutes=20.0,
        text_sentences=200000, low_train_variants=4,
    ),
}
MEAN_UTTERANCE_SECONDS = 3.5  # measured on the demo preset


# --- text ------------------------------------------------------------------------------------
SCRIPTS = {"ru": "CYRILLIC", "el": "GREEK"}  # others: LATIN


def _in_script(word: str, script: str) -> bool:
    return all(unicodedata.name(c, "").startswith(script) for c in word)


@lru_cache(maxsize=None)
def word_list(lang: str, vocab_size: int = 20000) -> tuple[tuple[str, ...], np.ndarray]:
    """The `vocab_size` most frequent words of `lang` written in its script, with probabilities.

    wordfreq case-folds, which turns Greek word-final sigma into medial sigma; it is restored so
    the text is real Greek orthography."""
    import wordfreq

    freq = wordfreq.get_frequency_dict(lang)
    script = SCRIPTS.get(lang, "LATIN")
    words: list[str] = []
    probs: list[float] = []
    for w in wordfreq.top_n_list(lang, vocab_size):
        if not w.isalpha() or not _in_script(w, script):
            continue
        probs.append(freq.get(w, 0.0))
        if lang == "el" and w.endswith("σ"):
            w = w[:-1] + "ς"
        words.append(w)
    p = np.asarray(probs, dtype=np.float64)
    return tuple(words), p / p.sum()


class SentenceSource:
    """Draws sentences of real words (by frequency), never returning one twice."""

    def __init__(self, lang: str, rng: np.random.Generator, size: CorpusSize) -> None:
        self.words, probs = word_list(lang, size.vocab_size)
        self.cdf = np.cumsum(probs)
        self.cdf /= self.cdf[-1]
        self.rng = rng
        self.min_words, self.max_words = size.words_per_sentence
        self.used: set[str] = set()

    def draw(self, n_words: int | None = None) -> str:
        while True:
            n = n_words or int(self.rng.integers(self.min_words, self.max_words + 1))
            # inverse-CDF sampling: rng.choice(p=...) recomputes the CDF on every call (100x slower)
            ids = np.minimum(np.searchsorted(self.cdf, self.rng.random(n), side="right"), len(self.words) - 1)
            tokens = [self.words[i] for i in ids]
            if n > 6 and self.rng.random() < 0.25:
                k = int(self.rng.integers(2, n - 2))
                tokens[k] += ","
            text = " ".join(tokens)
            text = text[0].upper() + text[1:] + ("?" if self.rng.random() < 0.1 else ".")
            if text not in self.used:
                self.used.add(text)
                return text


# --- plan ------------------------------------------------------------------------------------
@dataclass
class AudioJob:
    """One file to synthesise (a CV clip of one sentence, or a VP recording of several)."""

    path: str  # relative to the corpus root
    sentences: list[str]
    voice: str  # espeak voice+variant
    speed: int
    pitch: int
    gain_db: float
    snr_db: float
    noise_seed: int
    pauses: list[float] = field(default_factory=list)  # silence before each sentence and at the end


@dataclass
class ClipRow:
    lang: str
    split: str
    job: AudioJob
    client_id: str


@dataclass
class RecordingRow:
    lang: str
    vp_id: str
    job: AudioJob


def _lang_rng(seed: int, lang: str, purpose: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(lang.encode()), zlib.crc32(purpose.encode())])


@dataclass(frozen=True)
class VoicePool:
    """The speakers (espeak-ng variants) and recording conditions one split draws from."""

    variants: tuple[str, ...]
    speed_wpm: tuple[int, int] = SPEED_WPM
    pitch: tuple[int, int] = PITCH
    snr_db: tuple[float, float] = SNR_DB
    gain_db: tuple[float, float] = GAIN_DB


SPLITS = ("train", "dev", "test", "unlabelled")


def voice_pools(
    lang: str, size: CorpusSize, seed: int, train_variants: tuple[str, ...], heldout_variants: tuple[str, ...]
) -> dict[str, VoicePool]:
    """Which pool each split of `lang` draws from (see the module docstring for why).

    The few labelled variants are drawn with their own generator, so the plan's other draws are
    the same as with `low_train_variants=None`, and the choice is the same for any language subset."""
    heldout = VoicePool(heldout_variants)
    k = size.low_train_variants
    if lang in size.high_resource or k is None:
        shared = VoicePool(train_variants)
        return {"train": shared, "dev": heldout, "test": heldout, "unlabelled": shared}
    if not 1 <= k < len(train_variants):
        raise ValueError(
            f"low_train_variants={k} must be between 1 and {len(train_variants) - 1} "
            "(the other train variants form the unlabelled pool); fix --set low_train_variants=N"
        )
    picked = set(_lang_rng(seed, lang, "speakers").choice(len(train_variants), size=k, replace=False).tolist())
    return {
        "train": VoicePool(
            tuple(v for i, v in enumerate(train_variants) if i in picked), FEW_SPEAKER_SPEED_WPM, FEW_SPEAKER_PITCH
        ),
        "dev": heldout,
        "test": heldout,
        "unlabelled": VoicePool(
            tuple(v for i, v in enumerate(train_variants) if i not in picked),
            MANY_SPEAKER_SPEED_WPM, MANY_SPEAKER_PITCH, MANY_SPEAKER_SNR_DB,
        ),
    }


def _voice_params(rng: np.random.Generator, lang: str, pool: VoicePool) -> dict[str, Any]:
    variant = pool.variants[int(rng.integers(len(pool.variants)))]
    return {
        "voice": f"{ESPEAK_VOICES[lang]}+{variant}",
        "speed": int(rng.integers(pool.speed_wpm[0], pool.speed_wpm[1] + 1)),
        "pitch": int(rng.integers(pool.pitch[0], pool.pitch[1] + 1)),
        "gain_db": round(float(rng.uniform(*pool.gain_db)), 2),
        "snr_db": round(float(rng.uniform(*pool.snr_db)), 2),
        "noise_seed": int(rng.integers(2**31)),
    }


def _count(minutes: float, seconds_each: float) -> int:
    return int(np.ceil(minutes * 60.0 / seconds_each)) if minutes > 0 else 0


def plan_language(lang: str, size: CorpusSize, seed: int, variants: tuple[tuple[str, ...], tuple[str, ...]]):
    """Everything random about one language, drawn in a fixed order from the seed.

    Returns (clips, recordings, lm_sentences)."""
    pools = voice_pools(lang, size, seed, *variants)
    high = lang in size.high_resource
    minutes = {
        "test": size.high_test_minutes if high else size.low_test_minutes,
        "dev": size.high_dev_minutes if high else size.low_dev_minutes,
        "train": size.high_train_minutes if high else size.low_train_minutes,
    }
    unlabelled_minutes = size.high_unlabelled_minutes if high else size.low_unlabelled_minutes
    rng = _lang_rng(seed, lang, "plan")
    source = SentenceSource(lang, _lang_rng(seed, lang, "text"), size)
    clips: list[ClipRow] = []
    n = 0
    for split in ("test", "dev", "train"):  # test first: later draws can never reuse its text
        for _ in range(_count(minutes[split], MEAN_UTTERANCE_SECONDS)):
            params = _voice_params(rng, lang, pools[split])
            pauses = [round(float(rng.uniform(0.1, 0.4)), 3), round(float(rng.uniform(0.1, 0.4)), 3)]
            job = AudioJob(f"cv/{lang}/clips/common_voice_{lang}_{n:08d}.mp3", [source.draw()], pauses=pauses, **params)
            client = hashlib.sha1(f"{lang}:{params['voice']}".encode()).hexdigest()
            clips.append(ClipRow(lang, split, job, client))
            n += 1
    recordings: list[RecordingRow] = []
    lo, hi = size.recording_seconds
    for k in range(_count(unlabelled_minutes, (lo + hi) / 2)):
        params = _voice_params(rng, lang, pools["unlabelled"])
        # the rate estimate is +-15 % off, so aim inside the range to land in [lo, hi]
        target = float(rng.uniform(lo * 1.1, hi * 0.85))
        chars_per_s = CHARS_PER_SECOND_175 * params["speed"] / 175.0
        sentences: list[str] = []
        est = 0.0
        while True:
            s = source.draw()
            pause = float(rng.uniform(0.3, 0.9))
            if sentences and est + len(s) / chars_per_s + pause > hi:
                break
            sentences.append(s)
            est += len(s) / chars_per_s + pause
            if est >= target:
                break
        year = int(rng.integers(2009, 2021))
        month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
        vp_id = f"{year}{month:02d}{day:02d}-0900-PLENARY-{k}_{lang}"
        pauses = [round(float(rng.uniform(0.3, 0.9)), 3) for _ in range(len(sentences) + 1)]
        job = AudioJob(f"voxpopuli/unlabelled_data/{lang}/{year}/{vp_id}.ogg", sentences, pauses=pauses, **params)
        recordings.append(RecordingRow(lang, vp_id, job))
    lm_sentences = [source.draw() for _ in range(size.text_sentences)]
    return clips, recordings, lm_sentences


# --- synthesis -------------------------------------------------------------------------------
def espeak(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng speech for `text`: float32 samples and their rate (22050 Hz for espeak-ng)."""
    try:
        raw = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
            capture_output=True, check=True,
        ).stdout
    except FileNotFoundError as err:
        raise RuntimeError("espeak-ng is not installed (run `make setup`, or apt-get install espeak-ng)") from err
    if raw[:4] != b"RIFF" or raw.find(b"data", 12, 200) < 0:
        raise RuntimeError(f"espeak-ng returned no WAV for voice {voice!r}: {raw[:64]!r}")
    # espeak streams WAV with a placeholder length, so the header's sizes are not trusted.
    rate = int.from_bytes(raw[24:28], "little")
    data = raw.find(b"data", 12, 200) + 8
    samples = np.frombuffer(raw[data : data + (len(raw) - data) // 2 * 2], dtype="<i2")
    return samples.astype(np.float32) / 32768.0, rate


def render(job: AudioJob) -> np.ndarray:
    """The 16 kHz waveform of a job: sentences with pauses, gain, white noise at the job's SNR."""
    pieces: list[np.ndarray] = []
    pauses = job.pauses or [0.0] * (len(job.sentences) + 1)
    for pause, sentence in zip(pauses, job.sentences):
        speech, rate = espeak(sentence, job.voice, job.speed, job.pitch)
        pieces.append(np.zeros(int(pause * SAMPLING_RATE), np.float32))
        pieces.append(soxr.resample(speech, rate, SAMPLING_RATE, quality="HQ").astype(np.float32))
    pieces.append(np.zeros(int(pauses[len(job.sentences)] * SAMPLING_RATE), np.float32))
    audio = np.concatenate(pieces)
    peak = float(np.abs(audio).max()) or 1.0
    audio = audio * (0.9 * 10 ** (job.gain_db / 20) / peak)
    speech_power = float(np.mean(audio[np.abs(audio) > 1e-4] ** 2)) if np.any(np.abs(audio) > 1e-4) else 1e-6
    noise = np.random.default_rng(job.noise_seed).standard_normal(audio.shape[0]).astype(np.float32)
    audio = audio + noise * np.sqrt(speech_power / 10 ** (job.snr_db / 10))
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def synthesize(args: tuple[str, AudioJob]) -> float:
    """Write one job's file under `root` unless a valid one is there; return its duration (s)."""
    root, job = args
    path = os.path.join(root, job.path)
    if os.path.exists(path):
        try:
            return audio_duration(path)
        except AudioDecodeError:
            logger.info("regenerating invalid file %s", path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_audio(path, render(job), compression_level=COMPRESSION_LEVEL)
    return audio_duration(path)


# --- resuming --------------------------------------------------------------------------------
PLAN_FILE = "plan.json"


def plan_digest(clips: list[ClipRow], recordings: list[RecordingRow], lm_sentences: list[str]) -> str:
    """A digest of everything `plan_language` drew: equal digests mean the same files and texts."""
    h = hashlib.sha1()
    for row in clips:
        h.update(json.dumps([row.split, row.client_id, dataclasses.asdict(row.job)], ensure_ascii=False).encode())
    for rec in recordings:
        h.update(json.dumps([rec.vp_id, dataclasses.asdict(rec.job)], ensure_ascii=False).encode())
    h.update("\n".join(lm_sentences).encode())
    return h.hexdigest()


def _same_as_generator_1_0(manifest: dict[str, Any], size: CorpusSize, seed: int, variants: tuple) -> bool:
    """Whether a generator-1.0 manifest (no plan.json then) was made with the plan that `size`
    and `seed` give now: 1.1 with ``low_train_variants=None`` draws 1.0's plan exactly."""
    old_sizes = dict(manifest.get("sizes", {}))
    old_langs = {"high": set(old_sizes.pop("high_resource", ())), "low": set(old_sizes.pop("low_resource", ()))}
    new_sizes = {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(size))).items() if k in old_sizes}
    voices = manifest.get("voices", {})
    return (
        size.low_train_variants is None
        and manifest.get("seed") == seed
        and old_sizes == new_sizes
        and (voices.get("train_variants"), voices.get("heldout_variants")) == tuple(list(v) for v in variants)
        and not old_langs["high"] & set(size.low_resource)
        and not old_langs["low"] & set(size.high_resource)
    )


def _claim_plan(root: Path, digests: dict[str, str], size: CorpusSize, seed: int, variants: tuple) -> None:
    """Record each language's plan digest in `root/plan.json`, refusing a folder that holds the
    same language from another plan: resuming keeps every audio file that decodes, so mixing two
    plans would pair old audio with new transcripts."""
    path = root / PLAN_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))["languages"]
    elif (root / "manifest.json").exists():  # made before plan.json existed (generator 1.0)
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        if not _same_as_generator_1_0(manifest, size, seed, variants):
            made_by = manifest.get("versions", {}).get("generator")
            raise ValueError(
                f"{root} holds a corpus made by generator {made_by} with another plan: pass a new --out (or delete "
                "the folder); the same seed and sizes with --set low_train_variants=none complete a 1.0 corpus"
            )
    clash = sorted(lang for lang, d in digests.items() if stored.get(lang, d) != d)
    if clash:
        raise ValueError(
            f"{root} already holds {' '.join(clash)} from another plan (seed, sizes or generator version): "
            "pass a new --out (or delete the folder)"
        )
    root.mkdir(parents=True, exist_ok=True)
    merged = {"generator": GENERATOR_VERSION, "languages": dict(sorted({**stored, **digests}.items()))}
    _write_lines(path, [json.dumps(merged, indent=1)])


def voices_manifest(
    size: CorpusSize, seed: int, train_variants: tuple[str, ...], heldout_variants: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Per language and split: the variants and speed/pitch/SNR/gain ranges its audio draws from."""
    out: dict[str, dict[str, Any]] = {}
    for lang in size.languages:
        pools = voice_pools(lang, size, seed, train_variants, heldout_variants)
        entry: dict[str, Any] = {split: dataclasses.asdict(pools[split]) for split in SPLITS}
        labelled, unlabelled = set(pools["train"].variants), set(pools["unlabelled"].variants)
        entry["unlabelled_speakers_are_new"] = not labelled & unlabelled
        entry["heldout_speakers_are_unseen"] = not set(pools["test"].variants) & (labelled | unlabelled)
        out[lang] = entry
    return out


# --- writing ---------------------------------------------------------------------------------
CV_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "locale", "segment")


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def _cv_line(row: ClipRow) -> str:
    fields = (row.client_id, os.path.basename(row.job.path), row.job.sentences[0], "2", "0", "", "", "", row.lang, "")
    return "\t".join(fields)


def available_variants() -> set[str] | None:
    """Variant names espeak-ng knows here (None if it cannot be asked)."""
    try:
        out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {line.split()[4].replace("!v/", "") for line in out.splitlines()[1:] if len(line.split()) >= 5}


def espeak_version() -> str:
    try:
        return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "missing"


def generate_corpus(
    out: str | os.PathLike,
    preset: str | CorpusSize = "tiny",
    seed: int = 0,
    jobs: int | None = None,
    languages: Iterable[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Generate (or complete) the corpus under `out`; returns the manifest.

    Args:
        preset: a name in :data:`PRESETS` or a :class:`CorpusSize` (e.g.
            ``PRESETS["demo"].replace(low_unlabelled_minutes=30)``).
        languages: restrict to these of the preset's languages.
        jobs: worker processes (default: CPU count).
    """
    name = preset if isinstance(preset, str) else "custom"
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        size = PRESETS[preset]
    else:
        size = preset
    if languages is not None:
        languages = list(languages)
        bad = [lang for lang in languages if lang not in size.languages]
        if bad:
            raise ValueError(f"language(s) {bad} not in preset {name!r} ({' '.join(size.languages)})")
        size = size.replace(
            high_resource=tuple(lang for lang in size.high_resource if lang in languages),
            low_resource=tuple(lang for lang in size.low_resource if lang in languages),
        )
    unsupported = [lang for lang in size.languages if lang not in ESPEAK_VOICES]
    if unsupported:
        raise ValueError(f"no espeak-ng voice configured for {unsupported}; supported: {' '.join(ESPEAK_VOICES)}")
    known = available_variants()
    if known is None:
        raise RuntimeError("espeak-ng is not installed (run `make setup`, or apt-get install espeak-ng)")
    train_variants = tuple(v for v in TRAIN_VARIANTS if v in known)
    heldout_variants = tuple(v for v in HELDOUT_VARIANTS if v in known)
    if len(train_variants) < 10 or len(heldout_variants) < 3:
        raise RuntimeError(f"espeak-ng has too few voice variants ({len(known)}); is espeak-ng-data complete?")

    root = Path(out)
    plans = {lang: plan_language(lang, size, seed, (train_variants, heldout_variants)) for lang in size.languages}
    digests = {lang: plan_digest(*plans[lang]) for lang in size.languages}
    _claim_plan(root, digests, size, seed, (train_variants, heldout_variants))
    work = [(str(root), c.job) for lang in size.languages for c in plans[lang][0]]
    work += [(str(root), r.job) for lang in size.languages for r in plans[lang][1]]
    # Long recordings first so the pool does not end waiting on one of them.
    order = sorted(range(len(work)), key=lambda i: -len(work[i][1].sentences))
    durations: list[float] = [0.0] * len(work)
    jobs = jobs or os.cpu_count() or 1
    from tqdm.auto import tqdm

    bar = tqdm(total=len(work), desc="synthesising", unit="file", disable=not progress)
    if jobs == 1:
        for i in order:
            durations[i] = synthesize(work[i])
            bar.update()
    else:
        pool = ProcessPoolExecutor(max_workers=jobs)
        try:
            for i, d in zip(order, pool.map(synthesize, [work[i] for i in order], chunksize=4)):
                durations[i] = d
                bar.update()
        finally:
            # on an interrupt, drop the queued work instead of letting workers run on after us;
            # finished files are complete (atomic writes), so a re-run resumes from them
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()

    k = 0
    stats: dict[str, dict[str, dict[str, float]]] = {}
    for lang in size.languages:
        clips, recordings, lm_sentences = plans[lang]
        lang_dir = root / "cv" / lang
        clip_durations: list[str] = ["clip\tduration[ms]"]
        by_split: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
        lang_stats: dict[str, dict[str, float]] = {}
        for row in clips:
            d = durations[k]
            k += 1
            by_split[row.split].append(_cv_line(row))
            clip_durations.append(f"{os.path.basename(row.job.path)}\t{int(round(d * 1000))}")
            s = lang_stats.setdefault(row.split, {"utterances": 0, "hours": 0.0})
            s["utterances"] += 1
            s["hours"] += d / 3600
        header = "\t".join(CV_COLUMNS)
        for split, lines in by_split.items():
            _write_lines(lang_dir / f"{split}.tsv", [header] + lines)
        _write_lines(lang_dir / "validated.tsv", [header] + by_split["train"] + by_split["dev"] + by_split["test"])
        _write_lines(lang_dir / "clip_durations.tsv", clip_durations)
        stats[lang] = lang_stats
        _write_lines(root / "text" / f"{lang}.txt", lm_sentences)
    for lang in size.languages:
        recordings = plans[lang][1]
        if not recordings:
            continue
        truth = ["id\ttext"]
        s = stats[lang].setdefault("unlabelled", {"utterances": 0, "hours": 0.0})
        for rec in recordings:
            d = durations[k]
            k += 1
            truth.append(f"{rec.vp_id}\t{' '.join(rec.job.sentences)}")
            s["utterances"] += 1
            s["hours"] += d / 3600
        _write_lines(root / "voxpopuli" / "unlabelled_truth" / f"{lang}.tsv", truth)
    for lang_stats in stats.values():
        for s in lang_stats.values():
            s["hours"] = round(s["hours"], 4)

    import soundfile
    import wordfreq

    manifest = {
        "preset": name,
        "seed": seed,
        "sizes": dataclasses.asdict(size),
        "languages": {"high_resource": list(size.high_resource), "low_resource": list(size.low_resource)},
        "counts": stats,
        "total_hours": round(float(sum(durations)) / 3600, 4),
        "text_sentences_per_language": size.text_sentences,
        "voices": {
            "espeak": {lang: ESPEAK_VOICES[lang] for lang in size.languages},
            "train_variants": list(train_variants),
            "heldout_variants": list(heldout_variants),
            "speed_wpm": list(SPEED_WPM), "pitch": list(PITCH), "snr_db": list(SNR_DB), "gain_db": list(GAIN_DB),
            "splits": voices_manifest(size, seed, train_variants, heldout_variants),
        },
        "versions": {
            "generator": GENERATOR_VERSION,
            "espeak_ng": espeak_version(),
            "wordfreq": getattr(wordfreq, "__version__", None) or _dist_version("wordfreq"),
            "libsndfile": soundfile.__libsndfile_version__,
        },
        "sampling_rate": SAMPLING_RATE,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False)
    _write_lines(root / "manifest.json", [text])
    return json.loads(text)  # exactly what is on disk (tuples become lists)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
