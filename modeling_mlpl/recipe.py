"""The paper's recipe as staged, idempotent glue over the project's own entry points (icefall style).

Stages (PAPER.md "Recipe"):
  0 corpus        embedded espeak-ng corpus (or the user's Common Voice / VoxPopuli copies)
  1 stage1        multilingual theta on labeled data, loss = CTC + gamma * LID
  2 stage2-<L>    monolingual fine-tune theta -> theta'_L for every low-resource target language L
  3 pl-<L>        theta'_L greedy-decodes L's unlabeled long-form audio into pseudo-labels (PLs)
  4 stage4a ...   strategy A (continue theta on labels + PLs), strategy B (scratch, then fine-tune),
                  the controls (labels only with equal updates; oracle = true transcripts) and options
  5 lm, eval      n-gram LMs, alpha/beta tuned on dev with theta', every model on test, greedy and LM
  6 report        tables (markdown + JSON) and a plot

Each step runs a script of run_scripts/ in a subprocess and leaves `<exp>/.done/<step>` when it
succeeded; a finished step is skipped, an unfinished one is re-run with the script's own resume.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

from .training.arguments import mapping_to_argv

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "run_scripts")

# Stage-4 style runs: name -> (init, which PL datasets, fine-tune afterwards). "pl" = greedy PLs (paper).
VARIANTS = {
    "stage4a": "strategy A: continue theta on labels + greedy PLs (paper)",
    "labels_only": "control: continue theta on labels only, same number of updates as stage4a",
    "oracle": "control: continue theta on labels + the true transcripts of the same unlabeled audio",
    "pl_lm": "option: PLs decoded with the n-gram LM instead of greedy",
    "pl_filtered": "option: greedy PLs, the least confident ones dropped at merge time",
    "pl_auto": "option: PLs made with --language auto (the LID head routes each recording)",
    "stage4b": "strategy B: from scratch on labels + greedy PLs, then fine-tune per language on labels",
    "pl_round2": "option: a second PL round, teacher = average of stage4a's last checkpoints",
}


def _up_to_date(output: str, *inputs: str) -> bool:
    """make's rule: `output` exists and none of the existing `inputs` was written after it."""
    if not os.path.exists(output):
        return False
    return all(os.path.getmtime(p) <= os.path.getmtime(output) for p in inputs if os.path.exists(p))


class RecipeError(RuntimeError):
    """A step failed or the configuration is wrong (printed as one line by run_scripts/recipe.py)."""


@dataclass
class RecipeConfig:
    """One setting of the recipe (configs/*.yaml). Training blocks are passed to train.py as flags."""

    name: str
    exp_dir: str
    corpus: dict
    high_resource: list[str]
    low_resource: list[str]
    train_common: dict = field(default_factory=dict)
    stage1: dict = field(default_factory=dict)
    stage2: dict = field(default_factory=dict)
    stage4: dict = field(default_factory=dict)
    stage4b_scratch: dict = field(default_factory=dict)
    stage4b_finetune: dict = field(default_factory=dict)
    pseudo_label: dict = field(default_factory=dict)
    pseudo_label_lm: dict = field(default_factory=dict)  # extra pseudo_label.py flags for LM-decoded PLs
    pl_filter: dict = field(default_factory=lambda: {"top_percent": 75})
    variants: list[str] = field(default_factory=lambda: ["stage4a", "labels_only", "oracle"])
    # Labeled data of the stage-4 runs: "all" languages (the paper) or only the "low_resource" targets
    # (a small model's updates then all go to the languages the PLs are for).
    stage4_labels: str = "all"
    lm: dict = field(default_factory=lambda: {"order": 3})
    tune_lm: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)
    threads: int = 2

    @classmethod
    def load(cls, path: str) -> "RecipeConfig":
        if not os.path.isfile(path):
            raise RecipeError(f"config {path!r} not found")
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RecipeError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
        missing = sorted(k for k in ("name", "exp_dir", "corpus", "high_resource", "low_resource") if k not in raw)
        if missing:
            raise RecipeError(f"{path}: missing key(s) {missing}")
        config = cls(**raw)
        config.validate(path)
        return config

    def validate(self, path: str = "config") -> None:
        """Cross-field checks (also after command-line overrides such as --variants)."""
        bad = sorted(set(self.variants) - set(VARIANTS))
        if bad:
            raise RecipeError(f"{path}: unknown variant(s) {bad}; choose from {sorted(VARIANTS)}")
        if not self.low_resource:
            raise RecipeError(f"{path}: low_resource must name at least one target language")
        if "pl_round2" in self.variants and (
            "stage4a" not in self.variants or self.variants.index("stage4a") > self.variants.index("pl_round2")
        ):
            raise RecipeError(f"{path}: variant pl_round2 needs stage4a listed before it (stage4a is its teacher)")
        if self.stage4_labels not in ("all", "low_resource"):
            raise RecipeError(f"{path}: stage4_labels must be 'all' or 'low_resource', got {self.stage4_labels!r}")

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.high_resource) | set(self.low_resource))


@dataclass
class Step:
    stage: int
    name: str
    run: Callable[[], None]
    description: str = ""


class Recipe:
    """Plans and runs the steps of one seed of a RecipeConfig."""

    def __init__(self, config: RecipeConfig, seed: int = 0, threads: int | None = None):
        self.config = config
        self.seed = seed
        self.threads = threads or config.threads
        self.exp = os.path.join(config.exp_dir, f"seed{seed}")
        corpus = config.corpus
        self.corpus_dir = corpus.get("dir")
        self.cv_root = corpus.get("cv_root") or (self.corpus_dir and os.path.join(self.corpus_dir, "cv"))
        self.vp_root = corpus.get("voxpopuli_root") or (self.corpus_dir and os.path.join(self.corpus_dir, "voxpopuli"))
        self.text_dir = corpus.get("text_dir") or (self.corpus_dir and os.path.join(self.corpus_dir, "text"))
        if not self.cv_root or not self.vp_root:
            raise RecipeError("corpus needs `dir` (synthetic corpus) or both `cv_root` and `voxpopuli_root`")

    # -- paths
    def path(self, *parts: str) -> str:
        return os.path.join(self.exp, *parts)

    def model_dir(self, name: str) -> str:
        return self.path("models", name)

    def pl_dataset(self, variant: str, lang: str) -> str:
        return self.path("pl", f"{variant}-{lang}", "merged", "dataset")

    # -- running
    def _env(self) -> dict:
        env = dict(os.environ)
        # Two torch threads collapse when another process holds a core: steps run one at a time.
        env.update(OMP_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        env.setdefault("HF_HUB_OFFLINE", "1")
        return env

    def script(self, name: str, *argv: str) -> None:
        cmd = [sys.executable, os.path.join(SCRIPTS, name), *argv]
        logger.info("$ %s", " ".join(cmd))
        result = subprocess.run(cmd, env=self._env())
        if result.returncode != 0:
            raise RecipeError(f"{name} exited with code {result.returncode}; command: {' '.join(cmd)}")

    def train(self, output: str, *argv: str, block: dict) -> None:
        options = {**self.config.train_common, **block, "seed": self.seed, "num_threads": self.threads}
        self.script("train.py", *argv, *mapping_to_argv(options), "--output_dir", output, "--resume", "true")

    # -- the plan
    def steps(self) -> list[Step]:
        c = self.config
        steps = [Step(0, "corpus", self.make_corpus, "embedded espeak-ng corpus")]
        steps.append(Step(1, "stage1", lambda: self.train(
            self.model_dir("stage1"), "--cv_root", self.cv_root, "--cv_languages", *c.languages,
            block=c.stage1), "multilingual theta (CTC + gamma LID)"))
        for lang in c.low_resource:
            steps.append(Step(2, f"stage2-{lang}", lambda lang=lang: self.train(
                self.model_dir(f"stage2-{lang}"), "--init_from", self.model_dir("stage1"),
                "--cv_root", self.cv_root, "--cv_languages", lang, block=c.stage2), f"theta' for {lang}"))
        needs_lm_early = "pl_lm" in c.variants
        if needs_lm_early:
            steps.append(Step(3, "lm", self.build_lm, "n-gram LMs (needed for LM-decoded PLs)"))
            steps.append(Step(3, "tune-lm", self.tune_lm, "alpha/beta on dev with theta and theta'"))
        for lang in c.low_resource:
            steps.append(Step(3, f"pl-{lang}", lambda lang=lang: self.pseudo_label("pl", lang), f"greedy PLs, {lang}"))
            if "oracle" in c.variants:
                steps.append(Step(3, f"oracle-{lang}", lambda lang=lang: self.make_oracle(lang), f"true labels, {lang}"))
            if "pl_lm" in c.variants:
                steps.append(Step(3, f"pl_lm-{lang}", lambda lang=lang: self.pseudo_label("pl_lm", lang), f"LM PLs, {lang}"))
            if "pl_filtered" in c.variants:
                steps.append(Step(3, f"pl_filtered-{lang}", lambda lang=lang: self.filter_pl(lang), f"filtered PLs, {lang}"))
        if "pl_auto" in c.variants:
            steps.append(Step(3, "pl-auto", self.pseudo_label_auto, "PLs with --language auto (LID routing)"))
        for variant in c.variants:
            if variant == "stage4b":
                steps.append(Step(4, "stage4b-scratch", self.train_4b_scratch, VARIANTS[variant]))
                for lang in c.low_resource:
                    steps.append(Step(4, f"stage4b-{lang}", lambda lang=lang: self.train(
                        self.model_dir(f"stage4b-{lang}"), "--init_from", self.model_dir("stage4b-scratch"),
                        "--cv_root", self.cv_root, "--cv_languages", lang, block=c.stage4b_finetune),
                        f"strategy B fine-tune, {lang}"))
            else:
                if variant == "pl_round2":
                    steps.append(Step(4, "teacher-round2", self.average_teacher, "average stage4a's last checkpoints"))
                    for lang in c.low_resource:
                        steps.append(Step(4, f"pl_round2-{lang}", lambda lang=lang: self.pseudo_label(
                            "pl_round2", lang, model=self.model_dir("stage4a-avg")), f"round-2 PLs, {lang}"))
                steps.append(Step(4, variant, lambda v=variant: self.train_stage4(v), VARIANTS[variant]))
        if not needs_lm_early:
            steps.append(Step(5, "lm", self.build_lm, "n-gram LMs per language"))
            steps.append(Step(5, "tune-lm", self.tune_lm, "alpha/beta on dev with theta and theta'"))
        tuned_in_tune_lm = dict(self.lm_processor_models())
        for name, langs in self.evaluated_models():
            if name not in tuned_in_tune_lm:
                steps.append(Step(5, f"tune-{name}", lambda n=name, ls=langs: self.tune_model(n, ls),
                                  f"alpha/beta on dev for {name}"))
            steps.append(Step(5, f"eval-{name}", lambda n=name, ls=langs: self.evaluate(n, ls), f"test CER/WER of {name}"))
        steps.append(Step(6, "report", self.report, "tables and plot"))
        return steps

    def evaluated_models(self) -> list[tuple[str, list[str]]]:
        """(model name, languages it is evaluated on): each model on the languages it was trained for."""
        c = self.config
        models = [("stage1", c.languages)]
        models += [(f"stage2-{lang}", [lang]) for lang in c.low_resource]
        for variant in c.variants:
            if variant == "stage4b":
                models += [(f"stage4b-{lang}", [lang]) for lang in c.low_resource]
            else:
                models.append((variant, self.stage4_label_languages))
        return models

    def run(self, stage: int = 0, stop_stage: int = 6, force: bool = False) -> None:
        done_dir = self.path(".done")
        os.makedirs(done_dir, exist_ok=True)
        for step in self.steps():
            if not stage <= step.stage <= stop_stage:
                continue
            marker = os.path.join(done_dir, step.name)
            if os.path.exists(marker) and not force:
                logger.info("[stage %d] %s: done, skipped", step.stage, step.name)
                continue
            logger.info("[stage %d] %s: %s", step.stage, step.name, step.description)
            start = time.time()
            step.run()
            with open(marker, "w") as f:
                json.dump({"seconds": round(time.time() - start, 1), "finished": time.strftime("%F %T")}, f)
            logger.info("[stage %d] %s: finished in %.0f s", step.stage, step.name, time.time() - start)

    # -- steps
    def make_corpus(self) -> None:
        corpus = self.config.corpus
        if "preset" not in corpus:  # the user's own copies: nothing to make, only check they exist
            for root in (self.cv_root, self.vp_root):
                if not os.path.isdir(root):
                    raise RecipeError(f"corpus directory {root} does not exist")
            return
        argv = ["--preset", corpus["preset"], "--out", self.corpus_dir, "--seed", str(corpus.get("seed", 0)),
                "--languages", *self.config.languages, "--jobs", str(self.threads)]
        for key, value in corpus.get("sizes", {}).items():
            argv += ["--set", f"{key}={value}"]
        self.script("make_synthetic_corpus.py", *argv)

    def pseudo_label(self, variant: str, lang: str, model: str | None = None) -> None:
        """PLs of `lang`'s unlabeled audio; the teacher is theta'_lang unless `model` is given."""
        out = self.path("pl", f"{variant}-{lang}")
        options = dict(self.config.pseudo_label)
        if variant == "pl_lm":
            options["lm_dir"] = self.path("lm", "processor")
            options.update(self.config.pseudo_label_lm)
        model = model or self.model_dir(f"stage2-{lang}")
        self.script("pseudo_label.py", "--model", model, "--data", f"voxpopuli:{self.vp_root}",
                    "--language", lang, "--output_dir", out, "--resume", "--merge", "--threads", str(self.threads),
                    *(["--align_truth"] if variant == "oracle" else []), *mapping_to_argv(options))

    def pseudo_label_auto(self) -> None:
        """All low-resource unlabeled audio, language unknown: theta's LID head routes to theta'_L."""
        out = self.path("pl", "pl_auto")
        self.script("pseudo_label.py", "--model", self.model_dir("stage1"), "--data", f"voxpopuli:{self.vp_root}",
                    "--data_languages", ",".join(self.config.low_resource), "--language", "auto",
                    "--models_per_language", self.model_dir("stage2-{lang}"), "--output_dir", out, "--resume",
                    "--merge", "--threads", str(self.threads), *mapping_to_argv(self.config.pseudo_label))

    def filter_pl(self, lang: str) -> None:
        """Same raw greedy PLs, re-merged with the confidence filter into a second dataset."""
        src, dst = self.path("pl", f"pl-{lang}"), self.path("pl", f"pl_filtered-{lang}")
        os.makedirs(dst, exist_ok=True)
        for shard in glob.glob(os.path.join(src, "*.jsonl")):
            shutil.copy(shard, dst)
        self.script("pseudo_label.py", "--merge_only", "--output_dir", dst, *mapping_to_argv(self.config.pl_filter))

    def make_oracle(self, lang: str) -> None:
        """All of `lang`'s unlabeled recordings with their synthetic true transcripts (what PLs can at
        best give), force-aligned by theta'_lang so they get token times and are cropped like PLs."""
        self.pseudo_label("oracle", lang)

    def _stage4_datasets(self, variant: str) -> list[str]:
        low = self.config.low_resource
        if variant == "labels_only":
            return []
        if variant == "pl_auto":
            candidates = [self.path("pl", "pl_auto", "merged", "dataset")]
        else:
            source = {"stage4a": "pl", "oracle": "oracle", "pl_lm": "pl_lm", "pl_filtered": "pl_filtered",
                      "pl_round2": "pl_round2"}[variant]
            candidates = [self.pl_dataset(source, lang) for lang in low]
        kept = []
        for path in candidates:
            stats = os.path.join(os.path.dirname(path), "stats.json")
            if os.path.exists(stats) and json.load(open(stats))["kept"] == 0:
                logger.warning("%s holds no pseudo-label after filtering: not used", path)
            else:
                kept.append(path)
        return kept

    @property
    def stage4_label_languages(self) -> list[str]:
        c = self.config
        return c.languages if c.stage4_labels == "all" else sorted(c.low_resource)

    def train_stage4(self, variant: str) -> None:
        datasets = self._stage4_datasets(variant)
        extra = ["--train_datasets", *datasets] if datasets else []
        self.train(self.model_dir(variant), "--init_from", self.model_dir("stage1"), "--cv_root", self.cv_root,
                   "--cv_languages", *self.stage4_label_languages, *extra, block=self.config.stage4)

    def average_teacher(self) -> None:
        from .training.checkpointing import average_checkpoints

        averaged = average_checkpoints(self.model_dir("stage4a"), self.model_dir("stage4a-avg"), last=3)
        logger.info("round-2 teacher = mean of %s", ", ".join(os.path.basename(p) for p in averaged))

    def train_4b_scratch(self) -> None:
        c = self.config
        theta = self.model_dir("stage1")
        with open(os.path.join(theta, "config.json")) as f:
            languages = json.load(f)["languages"]
        self.train(self.model_dir("stage4b-scratch"), "--tokenizer_dir", theta, "--languages", *languages,
                   "--cv_root", self.cv_root, "--cv_languages", *self.stage4_label_languages,
                   "--train_datasets", *self._stage4_datasets("stage4a"), block=c.stage4b_scratch)

    def build_lm(self) -> None:
        processor_dir = self.path("lm", "processor")
        os.makedirs(processor_dir, exist_ok=True)
        # The LM processor is theta's processor (all models share its vocabulary) + language_model/.
        from transformers import AutoProcessor

        AutoProcessor.from_pretrained(self.model_dir("stage1")).save_pretrained(processor_dir)
        texts = [f"{lang}={os.path.join(self.text_dir, lang + '.txt')}" for lang in self.config.languages]
        argv = [a for t in texts for a in ("--text", t)]
        self.script("build_lm.py", *argv, "--out", self.path("lm", "ngram"), "--processor-dir", processor_dir,
                    *mapping_to_argv(self.config.lm))

    def lm_processor_models(self) -> list[tuple[str, list[str]]]:
        """(model, languages) whose dev-tuned alpha/beta go into the shared LM processor, in this order:
        theta on every language, then theta'_L on L (so LM-decoded PLs use their teacher's weights)."""
        c = self.config
        return [("stage1", c.languages)] + [(f"stage2-{lang}", [lang]) for lang in c.low_resource]

    def tune_lm(self) -> None:
        for model, languages in self.lm_processor_models():
            self.tune_model(model, languages, save=True)

    def lm_params_path(self, model: str) -> str:
        return self.path("lm", "alpha_beta", f"{model}.json")

    def tune_model(self, model: str, languages: list[str], save: bool = False) -> None:
        """Dev logits of `model` + the alpha/beta grid -> lm/alpha_beta/<model>.json: every model is
        LM-decoded with weights tuned for it on dev (`save` also writes them into the shared processor)."""
        logits = self.path("lm", f"dev-{model}.npz")
        if not self._dev_logits_current(logits, model, languages):
            out = self.path("lm", f"dev-eval-{model}")
            shutil.rmtree(out, ignore_errors=True)  # resuming it would save logits of the new utterances only
            self.script("evaluate.py", "--model", self.model_dir(model), "--data", f"cv:{self.cv_root}",
                        "--split", "dev", "--languages", *languages, "--no-lm", "--save-logits", logits,
                        "--out", out)
        self.script("tune_lm.py", "--processor-dir", self.path("lm", "processor"), "--logits", logits,
                    "--languages", *languages, "--output", self.lm_params_path(model),
                    *([] if save else ["--dry-run"]), *mapping_to_argv(self.config.tune_lm))

    def _weights(self, model: str) -> str:
        return os.path.join(self.model_dir(model), "model.safetensors")

    def _drop_if_stale(self, predictions: str, *inputs: str) -> None:
        """evaluate.py resumes after the ids already in `predictions` (a killed run loses nothing); written
        before one of `inputs` changed (a retrained model, re-tuned alpha/beta), they are stale: start over."""
        if os.path.exists(predictions) and not _up_to_date(predictions, *inputs):
            logger.info("%s predates %s: evaluating afresh", predictions, " / ".join(inputs))
            shutil.rmtree(os.path.dirname(predictions))

    def _dev_logits_current(self, logits: str, model: str, languages: list[str]) -> bool:
        """Re-tuning alpha/beta (e.g. `--stage 5 --force` with another grid or metric) reuses the dev
        logits saved by the last tuning when they are newer than the model's weights and cover `languages`."""
        weights = self._weights(model)
        if not (os.path.exists(weights) and _up_to_date(logits, weights)):
            return False
        from .lm_tuning import load_logits_meta

        return set(languages) <= set(load_logits_meta(logits)["languages"])

    def evaluate(self, name: str, languages: list[str]) -> None:
        params = self.lm_params_path(name)
        if not os.path.exists(params):  # e.g. an experiment folder from before per-model tuning
            raise RecipeError(f"{params} missing: tune {name} first (re-run stage 5 with --force)")
        out = self.path("eval", name)
        self._drop_if_stale(os.path.join(out, "predictions.jsonl"), self._weights(name), params)
        self.script("evaluate.py", "--model", self.model_dir(name), "--data", f"cv:{self.cv_root}", "--split", "test",
                    "--languages", *languages, "--lm-dir", self.path("lm", "processor"), "--lm-params", params,
                    "--out", out, *mapping_to_argv(self.config.evaluate))

    def report(self) -> None:
        from .report import write_report

        write_report(self)
