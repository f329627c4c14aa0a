"""Builders of small corpora in the real on-disk layouts, with the defects loaders must survive."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone(seconds: float, freq: float = 220.0, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write(path: Path, seconds: float, sr: int = SR, fmt: str | None = None, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, sr=sr), sr, format=fmt, subtype=subtype)
    return path


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ID3\x03\x00garbage" + bytes(range(256)) * 4)
    return path


def empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"
NFD_SENTENCE = "  " + unicodedata.normalize("NFD", "Ação   boa") + "\u00a0 "


def write_common_voice(root: Path, lang: str = "pt", clip_durations: bool = True) -> dict:
    """A CV release folder for `lang`. Returns what a correct loader should report."""
    d = root / lang
    clips = d / "clips"
    good = {f"common_voice_{lang}_{i}.mp3": 1.0 + 0.5 * i for i in range(6)}
    for name, secs in good.items():
        write(clips / name, secs, fmt="MP3")
    corrupt(clips / f"common_voice_{lang}_bad.mp3")
    empty(clips / f"common_voice_{lang}_empty.mp3")

    def row(path: str, sentence: str) -> str:
        return f"c1\t{path}\t{sentence}\t2\t0\t\t\t\t{lang}\t"

    c = [f"common_voice_{lang}_{i}.mp3" for i in range(6)]
    lines = [
        CV_HEADER,
        row(c[0], "Olá mundo."),
        row(c[1], '"Ele disse ""oi""."'),  # CSV-quoted copy -> Ele disse "oi".
        row(c[2], '"Sim," disse ele.'),  # a real quote at the start: kept
        f"c1\t{c[3]}\tUma\tfrase\t2\t0\t\t\t\t{lang}\t",  # a tab inside the sentence
        row(c[4], NFD_SENTENCE),
        row(c[5], ""),  # empty sentence
        row(f"common_voice_{lang}_missing.mp3", "Falta o ficheiro."),
        row(f"common_voice_{lang}_empty.mp3", "Ficheiro vazio."),
        row(f"common_voice_{lang}_bad.mp3", "Ficheiro corrompido."),
        "c1_only_one_field",
        row(c[0], "Linha duplicada."),
    ]
    (d / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / "test.tsv").write_text(CV_HEADER + "\n" + row(c[1], "Teste.") + "\n", encoding="utf-8")
    if clip_durations:
        dur = ["clip\tduration[ms]"] + [f"{n}\t{int(s * 1000)}" for n, s in good.items()]
        (d / "clip_durations.tsv").write_text("\n".join(dur) + "\n", encoding="utf-8")
    return {
        "texts": {
            f"{lang}/common_voice_{lang}_0": "Olá mundo.",
            f"{lang}/common_voice_{lang}_1": 'Ele disse "oi".',
            f"{lang}/common_voice_{lang}_2": '"Sim," disse ele.',
            f"{lang}/common_voice_{lang}_3": "Uma frase",
            f"{lang}/common_voice_{lang}_4": "Ação boa",
        },
        "durations": {f"{lang}/{Path(n).stem}": s for n, s in good.items()},
        "skipped": {"empty_sentence": 1, "missing_audio": 1, "empty_audio": 1, "corrupt_audio": 1, "malformed_row": 1, "duplicate_id": 1},
        "repaired": {"quoted_sentence": 1, "tab_in_sentence": 1},
    }


def write_common_voice_parquet(root: Path, lang: str = "pt", split: str = "train") -> dict[str, str]:
    """A Parquet copy (`<root>/<lang>/<split>/0000.parquet`) with audio bytes embedded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    texts = {}
    for i in range(3):
        buf = io.BytesIO()
        sf.write(buf, tone(1.0 + i), SR, format="MP3")
        name = f"common_voice_{lang}_{i}.mp3"
        rows.append({"path": name, "audio": {"bytes": buf.getvalue(), "path": name}, "sentence": f"Frase {i}."})
        texts[f"{lang}/common_voice_{lang}_{i}"] = f"Frase {i}."
    rows.append({"path": "broken.mp3", "audio": {"bytes": b"not audio at all", "path": "broken.mp3"}, "sentence": "X."})
    (root / lang / split).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / lang / split / "0000.parquet")
    return texts


def write_audiofolder(root: Path, lang: str = "nl", split: str = "train") -> dict[str, str]:
    d = root / lang / split
    write(d / "a.wav", 1.0)
    write(d / "b.flac", 2.0, fmt="FLAC")
    (d / "metadata.csv").write_text('file_name,sentence\na.wav,"Hallo, wereld."\nb.flac,Goedemorgen\n', encoding="utf-8")
    return {f"{lang}/a": "Hallo, wereld.", f"{lang}/b": "Goedemorgen"}


def write_voxpopuli(root: Path, lang: str = "pl") -> dict:
    u = root / "unlabelled_data" / lang
    write(u / "2019" / f"20190101-0900-PLENARY-1_{lang}.ogg", 20.0, fmt="OGG", subtype="VORBIS")
    write(u / "2020" / f"20200101-0900-PLENARY-2_{lang}.ogg", 31.5, fmt="OGG", subtype="VORBIS")
    corrupt(u / "2020" / f"20200102-0900-PLENARY-3_{lang}.ogg")
    empty(u / "2020" / f"20200103-0900-PLENARY-4_{lang}.ogg")
    t = root / "transcribed_data" / lang
    vid = f"20180612-0900-PLENARY-15-{lang}_20180612-19:14:13_3"
    write(t / "2018" / f"{vid}.ogg", 3.0, fmt="OGG", subtype="VORBIS")
    header = "id\traw_text\tnormalized_text\tspeaker_id\tsplit\tgender\tis_gold_transcript\taccent"
    lines = [
        header,
        f"{vid}\tDzień dobry, Państwu!\tdzień dobry państwu\t123\ttrain\tmale\tTrue\tNone",
        f"20180612-0900-PLENARY-15-{lang}_missing\tBrak pliku.\tbrak pliku\t123\ttrain\tmale\tTrue\tNone",
    ]
    (t / "asr_train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "unlabelled": {f"{lang}/20190101-0900-PLENARY-1_{lang}": 20.0, f"{lang}/20200101-0900-PLENARY-2_{lang}": 31.5},
        "transcribed": {f"{lang}/{vid}": "Dzień dobry, Państwu!"},
    }


def write_librispeech(root: Path, split: str = "test-clean") -> dict[str, str]:
    """The flac tree under `<root>/LibriSpeech/<split>`, one utterance listed but missing."""
    texts = {}
    for spk, chapter in (("1089", "134686"), ("121", "127105")):
        d = root / "LibriSpeech" / split / spk / chapter
        lines = []
        for u in range(2):
            uid = f"{spk}-{chapter}-{u:04d}"
            write(d / f"{uid}.flac", 1.0 + u, fmt="FLAC")
            lines.append(f"{uid} HE HOPED THERE WOULD BE STEW FOR DINNER {u}")
            texts[uid] = f"HE HOPED THERE WOULD BE STEW FOR DINNER {u}"
        lines.append(f"{spk}-{chapter}-0099 THIS FILE IS MISSING")
        (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return texts


def write_librispeech_parquet(root: Path) -> dict[str, str]:
    """The `openslr/librispeech_asr` Parquet layout: `<root>/clean/test/0000.parquet`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, texts = [], {}
    for u in range(3):
        uid = f"1089-134686-{u:04d}"
        buf = io.BytesIO()
        sf.write(buf, tone(1.0 + u), SR, format="FLAC")
        rows.append({"file": f"{uid}.flac", "audio": {"bytes": buf.getvalue(), "path": f"{uid}.flac"}, "text": f"WORD {u}",
                     "speaker_id": 1089, "chapter_id": 134686, "id": uid})
        texts[uid] = f"WORD {u}"
    (root / "clean" / "test").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "clean" / "test" / "0000.parquet")
    return texts
