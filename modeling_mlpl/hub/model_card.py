"""Model and dataset cards for published MLPL checkpoints (Jinja2 templates in ``model_cards/``).

The YAML header is produced by ``huggingface_hub.ModelCardData`` / ``DatasetCardData`` (so the Hub
parses it: languages, license, ``pipeline_tag``, ``model-index`` with per-language CER/WER), the body
by one template per recipe stage that extends ``model_cards/base.md.j2``. Measured numbers come from
an evaluation JSON (``modeling_mlpl.evaluation.metrics.per_language_metrics`` output, as written by
``run_scripts/evaluate.py``); nothing in a card is typed by hand.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "STAGE_PATTERN",
    "STAGE_TEMPLATES",
    "EvalRow",
    "CardInfo",
    "validate_stage",
    "stage_template",
    "hub_language_code",
    "load_eval_results",
    "eval_rows_to_eval_results",
    "model_card_data",
    "render_model_card",
    "render_dataset_card",
    "find_template_dir",
    "looks_synthetic",
]

# One Hub branch (or repo) per recipe stage (docs/paper.md "Recipe"): stage 2 is per language.
STAGE_PATTERN = re.compile(r"^(stage1-multilingual|stage2-ft-[A-Za-z]{2,3}(?:-[A-Za-z]+)?|stage4a-pl|stage4b-pl|mctct-converted)$")
STAGE_TEMPLATES: dict[str, str] = {
    "stage1-multilingual": "stage1-multilingual.md.j2",
    "stage2-ft": "stage2-ft.md.j2",
    "stage4a-pl": "stage4a-pl.md.j2",
    "stage4b-pl": "stage4b-pl.md.j2",
    "mctct-converted": "mctct-converted.md.j2",
}
DATASET_TEMPLATE = "pl-dataset.md.j2"

# Decoder keys of per_language_metrics rows -> how cards name them.
DECODER_LABELS = {"prediction": "greedy", "prediction_greedy": "greedy", "prediction_lm": "LM", "lm": "LM",
                  "greedy": "greedy"}  # fmt: skip
_NON_LANGUAGE_KEYS = {"all", "_meta", "meta", "dataset", "split", "config"}



def validate_stage(stage: str) -> str:
    """Check a stage name (it becomes the Hub branch name and picks the card template)."""
    if not STAGE_PATTERN.match(stage or ""):
        raise ValueError(
            f"unknown stage {stage!r}; use stage1-multilingual, stage2-ft-<lang> (e.g. stage2-ft-pt), "
            "stage4a-pl, stage4b-pl or mctct-converted"
        )
    return stage


def stage_template(stage: str) -> str:
    validate_stage(stage)
    return STAGE_TEMPLATES["stage2-ft" if stage.startswith("stage2-ft-") else stage]


def hub_language_code(code: str) -> str:
    """Common Voice code -> ISO 639 code for Hub metadata ("sv-SE" -> "sv", "rm-sursilv" -> "rm")."""
    from ..data.languages import iso639_1

    return iso639_1(code)


def find_template_dir(template_dir: str | os.PathLike | None = None) -> Path:
    """The card templates: an explicit folder, $MLPL_MODEL_CARDS, the installed package's copy or the
    repository's ``model_cards/``."""
    candidates = [Path(template_dir)] if template_dir else []
    candidates += [Path(os.environ["MLPL_MODEL_CARDS"])] if os.environ.get("MLPL_MODEL_CARDS") else []
    package = Path(__file__).resolve().parent.parent
    candidates += [package / "model_cards", package.parent / "model_cards"]  # installed wheel, source checkout
    for candidate in candidates:
        if (candidate / "base.md.j2").is_file():
            return candidate
    raise FileNotFoundError(
        f"model card templates not found (looked in {', '.join(map(str, candidates))}); "
        "pass template_dir or set MLPL_MODEL_CARDS to the repository's model_cards/ folder"
    )


@dataclass
class EvalRow:
    """One measured rate: a language, a decoder (greedy / LM), CER and WER as fractions."""

    language: str
    decoder: str
    cer: float | None
    wer: float | None
    n_utterances: int | None = None
    dataset: str | None = None  # e.g. "vp" for a "vp/pt" group; None = the card's evaluation dataset


@dataclass
class CardInfo:
    """Everything a card says beyond the checkpoint itself.

    ``synthetic``: trained/evaluated on the espeak-ng corpus; the card then warns at the very top.
    ``eval_dataset``: (hub dataset type, pretty name, split) of the evaluation set for ``model-index``.
    """

    stage: str
    repo_id: str | None = None
    revision: str | None = None
    languages: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    license: str = "apache-2.0"
    base_model: str | None = None
    synthetic: bool = False
    eval_rows: list[EvalRow] = field(default_factory=list)
    eval_dataset_type: str = "mozilla-foundation/common_voice_6_1"
    eval_dataset_name: str = "Common Voice 6.1"
    eval_split: str = "test"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    model_facts: dict[str, Any] = field(default_factory=dict)
    lm_languages: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    notes: str = ""

    @property
    def fine_tuning_mode(self) -> str:
        """How a stage-2 model was fine-tuned, from its training_args.json (`training_mode`, pl_* flags)."""
        h = self.hyperparameters
        if h.get("training_mode") != "semi_supervised":
            return "fine-tuned supervised (labelled data only)"
        dropout = h.get("pl_dropout")
        dropout = "kept" if dropout in (None, -1) else f"{dropout:g}"
        return (f"fine-tuned semi-supervised (slimIPL: PLs from update {h.get('pl_start_step')}, "
                f"{h.get('pl_labeled_updates')} labelled : {h.get('pl_unlabeled_updates')} unlabelled updates, cache of "
                f"{h.get('pl_cache_size')} recordings refreshed with probability {h.get('pl_cache_refresh_prob')}, "
                f"dropout {dropout} from the PL start)")  # fmt: skip

    @property
    def language(self) -> str | None:
        """The fine-tuned language of a stage-2 model (the stage name carries it)."""
        return self.stage[len("stage2-ft-"):] if self.stage.startswith("stage2-ft-") else None


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def load_eval_results(source: str | os.PathLike | Mapping[str, Any]) -> tuple[list[EvalRow], dict[str, Any]]:
    """Read an evaluation JSON into rows, plus its metadata (dataset, split) if it has any.

    Accepted shapes (rates as fractions):
    - ``per_language_metrics`` output: ``{lang: {"n_utterances": n, "prediction": {"cer", "wer"}, ...}}``;
    - a flat table ``{lang: {"cer": x, "wer": y}}``;
    - either of them under ``"metrics"``, ``"results"`` or ``"per_group"`` (``evaluation.report_from_predictions``'s
      ``metrics.json``), beside ``"dataset"``/``"split"`` keys; a group ``"vp/pt"`` is language pt of set vp.
    The pooled ``"all"`` entry is skipped (model-index is per language).
    """
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"evaluation JSON not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"evaluation JSON {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("evaluation JSON must be an object mapping languages to metrics")
    meta = {k: data[k] for k in ("dataset", "dataset_type", "dataset_name", "split", "synthetic") if k in data}
    table = data.get("per_group", data.get("metrics", data.get("results", data)))
    rows: list[EvalRow] = []
    for group, entry in table.items():
        if group in _NON_LANGUAGE_KEYS or not isinstance(entry, Mapping):
            continue
        dataset, _, language = group.rpartition("/")
        dataset = dataset or None
        n_utts = entry.get("n_utterances")
        if "cer" in entry or "wer" in entry:
            rows.append(EvalRow(language, "greedy", _rate(entry.get("cer")), _rate(entry.get("wer")), n_utts, dataset))
        for key, value in entry.items():
            if isinstance(value, Mapping) and ("cer" in value or "wer" in value):
                decoder = DECODER_LABELS.get(key, key.removeprefix("prediction_"))
                rows.append(
                    EvalRow(language, decoder, _rate(value.get("cer")), _rate(value.get("wer")), n_utts, dataset)
                )
    if not rows:
        raise ValueError("evaluation JSON holds no per-language CER/WER (expected {lang: {'cer':..,'wer':..}})")
    return rows, meta


def eval_rows_to_eval_results(info: CardInfo) -> list:
    """``EvalResult`` entries (rates in %, as Hub ASR leaderboards show them) for ``model-index``."""
    from huggingface_hub import EvalResult

    results = []
    for row in info.eval_rows:
        for metric, value in (("cer", row.cer), ("wer", row.wer)):
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type="automatic-speech-recognition",
                    task_name="Speech Recognition",
                    dataset_type=row.dataset or info.eval_dataset_type,
                    dataset_name=f"{row.dataset or info.eval_dataset_name} ({row.language})",
                    dataset_config=row.language,
                    dataset_split=info.eval_split,
                    metric_type=metric,
                    metric_name=f"Test {metric.upper()} ({row.decoder}, %)",
                    metric_value=round(100.0 * value, 2),
                )
            )
    return results


def _tags(info: CardInfo) -> list[str]:
    tags = ["automatic-speech-recognition", "ctc", "multilingual", "pseudo-labeling", "mlpl", info.stage]
    if info.synthetic:
        tags.append("synthetic-data")
    if info.lm_languages:
        tags.append("kenlm")
    return tags


def model_card_data(info: CardInfo):
    """The card's YAML metadata as ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import ModelCardData

    languages = list(dict.fromkeys(hub_language_code(code) for code in info.languages)) or None
    eval_results = eval_rows_to_eval_results(info) or None
    model_name = (info.repo_id or "mlpl").split("/")[-1] + (f" ({info.stage})" if info.stage else "")
    return ModelCardData(
        language=languages,
        license=info.license,
        library_name="transformers",
        pipeline_tag="automatic-speech-recognition",
        tags=_tags(info),
        datasets=info.datasets or None,
        base_model=info.base_model,
        metrics=["cer", "wer"],
        model_name=model_name,
        eval_results=eval_results,
    )


def _environment(template_dir: Path):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the test, not the reader
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _eval_table(info: CardInfo) -> list[dict[str, Any]]:
    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}"

    return [
        {"language": f"{r.dataset}/{r.language}" if r.dataset else r.language, "decoder": r.decoder, "cer": pct(r.cer), "wer": pct(r.wer),
         "n": "—" if r.n_utterances is None else r.n_utterances}
        for r in info.eval_rows
    ]  # fmt: skip


def render_model_card(info: CardInfo, template_dir: str | os.PathLike | None = None):
    """Render the stage's template into a ``huggingface_hub.ModelCard`` (metadata parsed and checked)."""
    from huggingface_hub import ModelCard

    validate_stage(info.stage)
    card_data = model_card_data(info)
    template = _environment(find_template_dir(template_dir)).get_template(stage_template(info.stage))
    text = template.render(
        card_data=card_data.to_yaml(),
        info=info,
        eval_table=_eval_table(info),
        repo_id=info.repo_id or "<user>/<model>",
        revision=info.revision,
    )
    return ModelCard(text)  # parses the YAML header; raises on malformed metadata


def render_dataset_card(
    *,
    repo_id: str | None,
    languages: Iterable[str],
    source_model: str | None,
    source_audio: str,
    license: str = "cc0-1.0",
    synthetic: bool = False,
    files: Iterable[str] = (),
    stats: Mapping[str, Any] | None = None,
    template_dir: str | os.PathLike | None = None,
):
    """Card of a pseudo-label dataset repo (``push_dataset``) as ``huggingface_hub.DatasetCard``."""
    from huggingface_hub import DatasetCard, DatasetCardData

    languages = list(dict.fromkeys(hub_language_code(code) for code in languages)) or None
    tags = ["pseudo-labels", "mlpl"] + (["synthetic-data"] if synthetic else [])
    data = DatasetCardData(
        language=languages,
        license=license,
        task_categories=["automatic-speech-recognition"],
        tags=tags,
        pretty_name=(repo_id or "mlpl pseudo-labels").split("/")[-1],
    )
    template = _environment(find_template_dir(template_dir)).get_template(DATASET_TEMPLATE)
    text = template.render(
        card_data=data.to_yaml(),
        repo_id=repo_id or "<user>/<dataset>",
        languages=languages or [],
        source_model=source_model,
        source_audio=source_audio,
        synthetic=synthetic,
        files=list(files),
        stats=dict(stats or {}),
    )
    return DatasetCard(text)


_SYNTHETIC_MARKERS = ("synthetic", "espeak")


def looks_synthetic(*texts: str) -> bool:
    """Whether training/eval descriptions mention the espeak-ng synthetic corpus.

    Used only to default the loud warning *on*: a false positive costs a banner, a false negative
    would let a toy model pass for a real one.
    """
    return any(marker in text.lower() for text in texts for marker in _SYNTHETIC_MARKERS)
