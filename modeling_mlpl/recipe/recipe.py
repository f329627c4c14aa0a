"""The paper's recipe as staged, idempotent glue over the project's own entry points (icefall style).

Stages (docs/paper.md "Recipe"):
  0 corpus        embedded espeak-ng corpus (or the user's Common Voice / VoxPopuli copies)
  1 stage1        multilingual theta on labeled data, loss = CTC + gamma * LID
  2 stage2-<L>    fine-tune theta -> theta'_L per low-resource target L: supervised (the baseline) and,
                  with `stage2_mode: semi_supervised`, slimIPL on L's unlabeled audio (stage2ssl-<L>,
                  then the teacher of the PLs)
  3 pl-<L>        the teacher greedy-decodes L's unlabeled long-form audio into pseudo-labels (PLs): theta'_L,
                  or any checkpoint the config's `teacher:` names (distillation: docs/teachers.md)
  4 stage4a ...   the stage-4 variants of :mod:`modeling_mlpl.recipe.variants` (strategy A/B, controls, options)
  5 lm, eval      n-gram LMs, alpha/beta tuned on dev per model, every model on test, greedy and LM
  6 report        tables (markdown + JSON) and a plot, from the results manifest

Each step runs a command of modeling_mlpl.commands in its own process (forked from a server that has imported torch
once: :mod:`.script_runner`), declares the steps it needs and the paths it
writes, and leaves `<exp>/.done/<step>` when it succeeded; a finished step is skipped, an unfinished one
is re-run with the script's own resume. Independent steps run side by side (`jobs`, :mod:`.scheduler`).
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Sequence

import yaml

from .script_runner import run_script
from .scheduler import SchedulerError, Step, current, render_step_times, run_steps, step_times
from ..training.arguments import mapping_to_argv
from .variants import BASE_ROWS, PL_SOURCES, REFERENCE_ROW, VARIANTS, Variant, is_pl_row

logger = logging.getLogger(__name__)

COMMANDS = "modeling_mlpl.commands"  # each step runs one of its modules (train, pseudo_label, ...)
# Where this package is imported from: a subprocess step finds it there whether installed or in a checkout.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = "manifest.json"
STAGE2_MODES = ("supervised", "semi_supervised")
# Config blocks handed to train.py (validated against its own argument dataclasses when loaded).
# PL sets only the stage-2 mlpl teacher can make (LM-fused decoding, routing by theta's LID head).
MLPL_ONLY_PL_KINDS = ("lm", "agreement", "auto")
TRAINING_BLOCKS = ("stage1", "stage2", "stage2_semi", "stage4", "stage4_noisy", "stage4_finetune",
                   "stage4b_scratch", "stage4b_finetune")  # fmt: skip
# The other blocks, each handed to one command and validated against that command's own parser when the
# config is loaded; with the arguments the recipe always adds itself, so that the command's required
# options are present (their values are never used).
COMMAND_BLOCKS = {
    "pseudo_label": ("pseudo_label", ["--output_dir", "unused"]),
    "pseudo_label_lm": ("pseudo_label", ["--output_dir", "unused"]),
    "pl_filter": ("pseudo_label", ["--merge_only", "--output_dir", "unused"]),
    "pl_agreement": ("select_pseudo_labels", ["--greedy", "unused", "--lm", "unused", "--output_dir", "unused"]),
    "lm": ("build_lm", ["--output_dir", "unused"]),
    "tune_lm": ("tune_lm", ["--processor-dir", "unused"]),
    "evaluate": ("evaluate", ["--output_dir", "unused"]),
}


def _up_to_date(output: str, *inputs: str) -> bool:
    """make's rule: `output` exists and none of the existing `inputs` was written after it."""
    if not os.path.exists(output):
        return False
    return all(os.path.getmtime(p) <= os.path.getmtime(output) for p in inputs if os.path.exists(p))


def _same_teacher(run_file: str, model: str) -> bool:
    """Whether the PL run bound in `run_file` (pl_run.json) was made by `model` (folder or Hub id)."""
    with open(run_file, encoding="utf-8") as f:
        recorded = str(json.load(f).get("--model", ""))
    name = os.path.realpath(model) if os.path.exists(model) else model
    return recorded == name or recorded.startswith(f"{name} (")


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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
    # Teacher of the PLs: the supervised theta' ("supervised") or slimIPL's ("semi_supervised": stage2 +
    # stage2_semi flags, on the target's unlabeled audio). The supervised theta' is always the baseline row.
    stage2_mode: str = "supervised"
    stage2_semi: dict = field(default_factory=dict)
    # Stage 3's teacher: None = theta'_L from stage 2 (the paper). Else any checkpoint pseudo_label.py takes (a
    # folder or Hub id: transformers CTC, MMS, Whisper, another mlpl model), and the student (stage 4 on) learns
    # from its PLs. Stage 2 is trained all the same: theta' is the baseline row, and the oracle's forced alignment
    # of the true transcripts needs an mlpl model (the stage-2 one).
    teacher: str | None = None
    teacher_revision: str | None = None  # Hub branch, tag or commit of `teacher`
    teacher_language: dict | str | None = None  # our code -> the teacher's (MMS adapter: {pt: por}), or one for all
    pl_text_rule: str | None = None  # text.PL_TEXT_RULES; None: pseudo_label.py's default for the teacher's kind
    stage4: dict = field(default_factory=dict)
    stage4_noisy: dict = field(default_factory=dict)  # merged over stage4 by the *_noisy variants
    stage4_finetune: dict = field(default_factory=dict)  # the *_ft variants' labels-only fine-tune
    stage4b_scratch: dict = field(default_factory=dict)
    stage4b_finetune: dict = field(default_factory=dict)
    pseudo_label: dict = field(default_factory=dict)
    pseudo_label_lm: dict = field(default_factory=dict)  # extra pseudo_label.py flags for LM-decoded PLs
    pl_filter: dict = field(default_factory=lambda: {"top_percent": 75})
    pl_agreement: dict = field(default_factory=lambda: {"max_disagreement": "auto"})  # select_pseudo_labels.py
    variants: list[str] = field(default_factory=lambda: ["stage4a", "labels_only", "oracle"])
    # Labeled data of the stage-4 runs: "all" languages (the paper) or only the "low_resource" targets
    # (a small model's updates then all go to the languages the PLs are for).
    stage4_labels: str = "all"
    lm: dict = field(default_factory=lambda: {"order": 3})
    tune_lm: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)
    threads: int = 2  # cores the recipe may use
    jobs: int | None = None  # steps run side by side (default: threads); each gets threads // jobs

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
        """Cross-field checks and every training block parsed by train.py's own arguments (also after
        command-line overrides such as --variants)."""
        bad = sorted(set(self.variants) - set(VARIANTS))
        if bad:
            raise RecipeError(f"{path}: unknown variant(s) {bad}; choose from {sorted(VARIANTS)}")
        for i, name in enumerate(self.variants):
            for need in VARIANTS[name].needs():
                if need not in self.variants[:i]:
                    raise RecipeError(f"{path}: variant {name} needs {need} listed before it")
        if not self.low_resource:
            raise RecipeError(f"{path}: low_resource must name at least one target language")
        if self.stage4_labels not in ("all", "low_resource"):
            raise RecipeError(f"{path}: stage4_labels must be 'all' or 'low_resource', got {self.stage4_labels!r}")
        if self.stage2_mode not in STAGE2_MODES:
            raise RecipeError(f"{path}: stage2_mode must be one of {STAGE2_MODES}, got {self.stage2_mode!r}")
        if self.stage2_mode == "semi_supervised":
            # slimIPL's theta' continues the supervised theta' from its last checkpoint (Recipe.train_stage2).
            supervised = {**self.train_common, **self.stage2}.get("max_steps")
            if supervised != self.pl_start_step:
                raise RecipeError(f"{path}: stage2_semi's pl_start_step ({self.pl_start_step}) must equal stage2's "
                                  f"max_steps ({supervised}): the semi-supervised theta' continues the supervised one "
                                  "from its last update")  # fmt: skip
            semi_steps = {**self.train_common, **self.stage2, **self.stage2_semi}.get("max_steps")
            if semi_steps is None or semi_steps <= self.pl_start_step:
                raise RecipeError(f"{path}: stage2_semi's max_steps ({semi_steps}) must exceed its pl_start_step "
                                  f"({self.pl_start_step})")  # fmt: skip
        if self.jobs is not None and self.jobs < 1:
            raise RecipeError(f"{path}: jobs must be >= 1, got {self.jobs}")
        self.validate_teacher(path)
        for block in TRAINING_BLOCKS:
            check_training_block(f"{path}: {block}", {**self.train_common, **getattr(self, block)})
        for block, (command, added) in COMMAND_BLOCKS.items():
            check_command_block(f"{path}: {block}", command, getattr(self, block), added)

    @property
    def pl_start_step(self) -> int | None:
        return {**self.train_common, **self.stage2, **self.stage2_semi}.get("pl_start_step")

    def validate_teacher(self, path: str = "config") -> None:
        """The stage-3 teacher block: a local folder must hold a checkpoint of a kind the labeler takes (read
        from its config.json, nothing loaded); anything else must at least be a well-formed Hub id (checked
        offline: it downloads at stage 3)."""
        from ..text import PL_TEXT_RULES

        if self.pl_text_rule is not None and self.pl_text_rule not in PL_TEXT_RULES:
            raise RecipeError(f"{path}: pl_text_rule must be one of {sorted(PL_TEXT_RULES)}, got {self.pl_text_rule!r}")
        if self.teacher is None:
            for key in ("teacher_revision", "teacher_language"):
                if getattr(self, key) is not None:
                    raise RecipeError(f"{path}: {key} is set but `teacher:` is not (the stage-2 teacher is an mlpl "
                                      "model of this recipe)")  # fmt: skip
            return
        if not isinstance(self.teacher, str) or not self.teacher.strip():
            raise RecipeError(f"{path}: teacher must be a model folder or Hub id, got {self.teacher!r}")
        if os.path.exists(self.teacher):
            from ..pseudo_labeling.teachers import TeacherError, read_checkpoint_config, teacher_kind

            try:
                teacher_kind(read_checkpoint_config(self.teacher))
            except TeacherError as err:
                raise RecipeError(f"{path}: teacher: {err}") from None
        else:
            from ..evaluation.inference import is_hub_id

            if not is_hub_id(self.teacher):
                raise RecipeError(f"{path}: teacher {self.teacher!r} is neither an existing model folder nor a Hub "
                                  "id (owner/name)")  # fmt: skip
        if isinstance(self.teacher_language, dict):
            unknown = sorted(set(self.teacher_language) - set(self.low_resource))
            if unknown:
                raise RecipeError(f"{path}: teacher_language maps {unknown}, which are not low_resource targets "
                                  f"{self.low_resource}")  # fmt: skip
            bad = {k: v for k, v in self.teacher_language.items() if not isinstance(v, str) or not v}
            if bad:
                raise RecipeError(f"{path}: teacher_language values must be the teacher's codes (strings), got {bad}")
        elif self.teacher_language is not None and not isinstance(self.teacher_language, str):
            raise RecipeError(f"{path}: teacher_language must be a code or a map {{our code: teacher's code}}, "
                              f"got {self.teacher_language!r}")  # fmt: skip
        # These PL sets are decoded or routed by mlpl models (LM fusion, the LID head): no external teacher makes them.
        needs_mlpl = [v for v in self.variants
                      if VARIANTS[v].pl_source and PL_SOURCES[VARIANTS[v].pl_source].kind in MLPL_ONLY_PL_KINDS]
        if needs_mlpl:
            raise RecipeError(f"{path}: variant(s) {needs_mlpl} need PLs of the stage-2 mlpl teacher (LM-decoded or "
                              "LID-routed): drop them or `teacher:`")  # fmt: skip

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.high_resource) | set(self.low_resource))


def check_training_block(where: str, options: dict) -> None:
    """Parse `options` with train.py's argument dataclasses, in process: a misspelt key or a bad value
    fails when the config is loaded, not 20 minutes later when its step starts."""
    from transformers import HfArgumentParser

    from ..training.arguments import TRAIN_ARGUMENT_CLASSES

    parser = HfArgumentParser(TRAIN_ARGUMENT_CLASSES, allow_abbrev=False)
    _check_block(where, "train", parser, options, ["--output_dir", "unused"],
                 lambda argv: parser.parse_args_into_dataclasses(args=argv))  # fmt: skip


def check_command_block(where: str, command: str, options: dict, added: list[str]) -> None:
    """Parse `options` (with the recipe's own `added` arguments) by `command`'s parser, in process: a typo
    in an `lm:` or `pseudo_label:` block fails at load (and `--list`), as training blocks do."""
    import importlib

    parser = importlib.import_module(f"{COMMANDS}.{command}").build_parser()
    _check_block(where, command, parser, options, added, parser.parse_args)


def _check_block(where: str, command: str, parser, options: dict, added: list[str], parse) -> None:
    """Unknown keys (either spelling, ``foo_bar`` or ``foo-bar``), then values, as `command` would see them."""
    flags = parser._option_string_actions
    unknown = sorted(k for k in options
                     if not {f"--{k}", f"--{k.replace('-', '_')}", f"--{k.replace('_', '-')}"} & set(flags))  # fmt: skip
    if unknown:
        raise RecipeError(f"{where}: unknown {command}.py option(s) {unknown} (see run_scripts/{command}.py --help)")
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parse(mapping_to_argv(options) + added)
    except SystemExit:
        message = errors.getvalue().strip().splitlines()[-1:] or ["invalid value"]
        raise RecipeError(f"{where}: {message[0]}") from None


class Recipe:
    """Plans and runs the steps of one seed of a RecipeConfig."""

    def __init__(self, config: RecipeConfig, seed: int = 0, threads: int | None = None, jobs: int | None = None,
                 runner: str | None = None):  # fmt: skip
        self.config = config
        self.runner = runner  # how scripts are started (script_runner.RUNNERS); None: the default (fork)
        self.seed = seed
        self.threads = threads or config.threads
        self.jobs = jobs or config.jobs or self.threads
        self.exp = os.path.join(config.exp_dir, f"seed{seed}")
        corpus = config.corpus
        self.corpus_dir = corpus.get("dir")
        self.cv_root = corpus.get("cv_root") or (self.corpus_dir and os.path.join(self.corpus_dir, "cv"))
        self.vp_root = corpus.get("voxpopuli_root") or (self.corpus_dir and os.path.join(self.corpus_dir, "voxpopuli"))
        self.text_dir = corpus.get("text_dir") or (self.corpus_dir and os.path.join(self.corpus_dir, "text"))
        if not self.cv_root or not self.vp_root:
            raise RecipeError("corpus needs `dir` (synthetic corpus) or both `cv_root` and `voxpopuli_root`")
        # Log-mel frames shared by every training run on this corpus (modeling_mlpl.feature_cache), next to
        # the corpus: its runs (and other experiments on it) read each utterance's features from there.
        corpus_root = self.corpus_dir or self.cv_root
        self.feature_cache_dir = corpus.get("feature_cache_dir") or f"{corpus_root.rstrip(os.sep)}.feature_cache"

    # -- paths
    def path(self, *parts: str) -> str:
        return os.path.join(self.exp, *parts)

    def model_dir(self, name: str) -> str:
        return self.path("models", name)

    def pl_dir(self, source: str, lang: str) -> str:
        return self.path("pl", f"{source}-{lang}")

    def pl_dataset(self, source: str, lang: str) -> str:
        return os.path.join(self.pl_dir(source, lang), "merged", "dataset")

    def teacher(self, lang: str) -> str:
        """theta'_L, the stage-2 mlpl teacher: the semi-supervised one when the config asks for it. It makes L's
        PLs unless the config names an external `teacher:`; it always makes the oracle's alignments, and its
        alpha/beta go into the LM processor."""
        return f"stage2ssl-{lang}" if self.config.stage2_mode == "semi_supervised" else f"stage2-{lang}"

    @property
    def external_teacher(self) -> str | None:
        """The config's `teacher:` (folder or Hub id) when stage 3 distils from it instead of theta'_L."""
        return self.config.teacher

    def teacher_argv(self, source: str, lang: str, model: str | None = None) -> list[str]:
        """pseudo_label.py flags that choose the teacher of L's PL set `source` and how its text meets the
        student: `model` when given (round 2), the external `teacher:` for the greedy set "pl", else theta'_L
        (always for the oracle: forced alignment of the truth is an mlpl model's)."""
        c = self.config
        rule = ["--text_rule", c.pl_text_rule] if c.pl_text_rule else []
        if model is not None or source != "pl" or not self.external_teacher:
            return ["--model", model or self.model_dir(self.teacher(lang)), *rule]
        revision = ["--revision", c.teacher_revision] if c.teacher_revision else []
        language = c.teacher_language.get(lang) if isinstance(c.teacher_language, dict) else c.teacher_language
        return ["--model", self.external_teacher, *revision, *rule, *(["--teacher_language", language] if language else [])]

    def student_vocab_argv(self) -> list[str]:
        """Merges of PLs from an external teacher keep only rows theta's tokenizer can write (the student's
        vocabulary is stage 1's), and count the characters dropped (stats.json unwritable_chars)."""
        return ["--student_vocab_from", self.model_dir("stage1")] if self.external_teacher else []

    # -- running
    def _env(self) -> dict:
        env = dict(os.environ)
        # Oversubscribed torch threads wait on each other: each step gets the threads the scheduler gave it.
        env.update(OMP_NUM_THREADS=str(self.step_threads),
                   PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")  # fmt: skip
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        return env

    @property
    def step_threads(self) -> int:
        """Threads of the step running in this thread (the recipe's own when called outside the scheduler)."""
        return current().threads if current().name else self.threads

    def script(self, name: str, *argv: str) -> None:
        """Run the command `name` (e.g. "train.py": modeling_mlpl.commands.train, as run_scripts/train.py runs it)."""
        module = f"{COMMANDS}.{name.removesuffix('.py')}"
        cmd = [sys.executable, "-m", module, *argv]
        log_path = current().log_path
        logger.info("$ %s", " ".join(cmd))
        if log_path is not None:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"$ {' '.join(cmd)}\n")
        code = run_script(module, argv, self._env(), log_path, runner=self.runner)
        if code != 0:
            where = f"; log: {log_path}" if log_path else ""
            raise RecipeError(f"{name} exited with code {code}{where}; command: {' '.join(cmd)}")

    def cv_data(self, pl_sets: Sequence[str] = ()) -> list[str]:
        """train.py's data flags: Common Voice's train split (then the saved PL sets) to train on, its dev
        split to evaluate."""
        train = [f"cv:{self.cv_root}@train", *(f"disk:{path}" for path in pl_sets)]
        return ["--train_data", *train, "--eval_data", f"cv:{self.cv_root}@dev"]

    def train(self, output: str, *argv: str, block: dict) -> None:
        options = {"feature_cache_dir": self.feature_cache_dir, **self.config.train_common, **block, "seed": self.seed,
                   "num_threads": self.step_threads}  # fmt: skip
        self.script("train.py", *argv, *mapping_to_argv(options), "--output_dir", output, "--resume", "true")

    # -- the plan
    def steps(self) -> list[Step]:
        c = self.config
        m = self.model_dir
        steps = [Step(0, "corpus", self.make_corpus, "embedded espeak-ng corpus", outputs=self._corpus_outputs())]
        steps.append(Step(1, "stage1", lambda: self.train(
            m("stage1"), *self.cv_data(), "--cv_languages", *c.languages, block=c.stage1),
            "multilingual theta (CTC + gamma LID)", ("corpus",), (m("stage1"),)))
        for lang in c.low_resource:
            steps.append(Step(2, f"stage2-{lang}", lambda lang=lang: self.train_stage2(lang, semi=False),
                              f"theta' for {lang} (supervised)", ("stage1",), (m(f"stage2-{lang}"),)))
            if c.stage2_mode == "semi_supervised":
                steps.append(Step(2, f"stage2ssl-{lang}", lambda lang=lang: self.train_stage2(lang, semi=True),
                                  f"theta' for {lang} continued semi-supervised (slimIPL)", (f"stage2-{lang}",),
                                  (m(f"stage2ssl-{lang}"),)))  # fmt: skip
        sources = self.pl_sources()
        if "pl_lm" in sources or "pl_agree" in sources:  # LM-decoded PLs use the teacher's tuned alpha/beta
            steps += self._lm_steps(stage=3)
        for source in sources:
            if PL_SOURCES[source].kind != "round2":  # round 2 needs stage 4's A: planned with its variant
                steps += self._pl_steps(source)
        for name in c.variants:
            steps += self._variant_steps(name)
        if not any(s.name == "lm" for s in steps):
            steps += self._lm_steps(stage=5)
        tuned_with_processor = dict(self.lm_processor_models())
        for name, langs in self.evaluated_models():
            tune = "tune-lm" if name in tuned_with_processor else f"tune-{name}"
            if name not in tuned_with_processor:
                steps.append(Step(5, tune, lambda n=name, ls=langs: self.tune_model(n, ls),
                                  f"alpha/beta on dev for {name}", ("tune-lm", name),
                                  (self.path("lm", f"dev-{name}.npz"), self.path("lm", f"dev-eval-{name}"),
                                   self.lm_params_path(name))))  # fmt: skip
            steps.append(Step(5, f"eval-{name}", lambda n=name, ls=langs: self.evaluate(n, ls),
                              f"test CER/WER of {name}", (tune,), (self.path("eval", name),)))
        steps.append(Step(6, "report", self.report, "tables and plot",
                          tuple(s.name for s in steps if s.name.startswith("eval-")), (self.path("report"),)))
        return steps

    def _corpus_outputs(self) -> tuple[str, ...]:
        return (self.corpus_dir,) if "preset" in self.config.corpus else ()

    def _lm_steps(self, stage: int) -> list[Step]:
        processor_models = self.lm_processor_models()
        tuned_files = []
        for name, _ in processor_models:
            tuned_files += [self.path("lm", f"dev-{name}.npz"), self.path("lm", f"dev-eval-{name}"),
                            self.lm_params_path(name)]  # fmt: skip
        return [
            Step(stage, "lm", self.build_lm, "n-gram LMs per language", ("stage1",),
                 (self.path("lm", "processor"), self.path("lm", "ngram"))),
            Step(stage, "tune-lm", self.tune_lm, "alpha/beta on dev with theta and the teachers",
                 ("lm", *(name for name, _ in processor_models)), tuple(tuned_files)),
        ]  # fmt: skip

    def pl_sources(self) -> list[str]:
        """PL sets the listed variants train on (and those the sets are made from), in plan order."""
        wanted = {VARIANTS[v].pl_source for v in self.config.variants} - {None}
        if "pl_filtered" in wanted or "pl_agree" in wanted:
            wanted.add("pl")
        if "pl_agree" in wanted:
            wanted.add("pl_lm")
        if any(PL_SOURCES[s].kind == "mix" for s in wanted):
            wanted |= {"pl", "oracle"}
        return [s for s in PL_SOURCES if s in wanted]

    def _pl_steps(self, source: str) -> list[Step]:
        kind = PL_SOURCES[source].kind
        low = self.config.low_resource
        if kind == "auto":
            out = self.path("pl", "pl_auto")
            return [Step(3, "pl-auto", self.pseudo_label_auto, PL_SOURCES[source].description,
                         ("stage1", *(self.teacher(lang) for lang in low)), (out,))]  # fmt: skip
        steps = []
        for lang in low:
            name = f"{source}-{lang}"
            teacher = self.teacher(lang)
            description = f"{PL_SOURCES[source].description}, {lang}"
            needs: tuple[str, ...]
            if kind == "greedy" and self.external_teacher:  # no theta' needed: stage 1 gives the student's vocabulary
                run, needs = (lambda lang=lang: self.pseudo_label("pl", lang)), ("stage1",)
                description = f"greedy PLs of the external teacher {self.external_teacher}, {lang}"
            elif kind == "greedy":
                run, needs = (lambda lang=lang: self.pseudo_label("pl", lang)), (teacher,)
            elif kind == "oracle":  # forced alignment of the truth: always theta'_L's, an mlpl model
                run, needs = (lambda lang=lang: self.pseudo_label("oracle", lang)), (teacher,)
                if self.external_teacher:
                    description = f"true transcripts of the same audio, force-aligned by theta' ({teacher}), {lang}"
            elif kind == "lm":
                run, needs = (lambda lang=lang: self.pseudo_label("pl_lm", lang)), (teacher, "tune-lm")
            elif kind == "filtered":
                run, needs = (lambda lang=lang: self.filter_pl(lang)), (f"pl-{lang}",)
            elif kind == "round2":
                run, needs = (lambda lang=lang: self.pseudo_label(
                    "pl_round2", lang, model=self.model_dir("stage4a-avg"))), ("teacher-round2",)
            elif kind == "agreement":
                run, needs = (lambda lang=lang: self.select_by_agreement(lang)), (f"pl-{lang}", f"pl_lm-{lang}")
            elif kind == "mix":
                run, needs = (lambda s=source, lang=lang: self.mix_pl(s, lang)), (f"pl-{lang}", f"oracle-{lang}")
            else:  # pragma: no cover - a PL_SOURCES entry without a maker
                raise RecipeError(f"PL source {source!r} has unknown kind {kind!r}")
            if kind == "round2" and not steps:
                steps.append(Step(4, "teacher-round2", self.average_teacher, "average stage4a's last checkpoints",
                                  ("stage4a",), (self.model_dir("stage4a-avg"),)))  # fmt: skip
            stage = 4 if kind == "round2" else 3
            steps.append(Step(stage, name, run, description, needs, (self.pl_dir(source, lang),)))
        return steps

    def _pl_steps_for(self, source: str | None) -> tuple[str, ...]:
        if source is None:
            return ()
        if source == "pl_auto":
            return ("pl-auto",)
        return tuple(f"{source}-{lang}" for lang in self.config.low_resource)

    def _variant_steps(self, name: str) -> list[Step]:
        variant = VARIANTS[name]
        c = self.config
        pl_steps = self._pl_steps_for(variant.pl_source)
        if variant.base is not None:  # labels-only fine-tune per target of the base variant's model
            return [Step(4, f"{name}-{lang}", lambda lang=lang: self.finetune(variant.base, f"{name}-{lang}", lang),
                         f"{variant.label}, {lang}", (variant.base,), (self.model_dir(f"{name}-{lang}"),))
                    for lang in c.low_resource]  # fmt: skip
        steps = self._pl_steps(variant.pl_source) if variant.pl_source == "pl_round2" else []
        if variant.strategy == "B":
            steps += [Step(4, f"{name}-scratch", lambda: self.train_4b_scratch(name), variant.label,
                          ("stage1", *pl_steps), (self.model_dir(f"{name}-scratch"),))]  # fmt: skip
            for lang in c.low_resource:
                steps.append(Step(4, f"{name}-{lang}", lambda lang=lang: self.train(
                    self.model_dir(f"{name}-{lang}"), "--init_from", self.model_dir(f"{name}-scratch"),
                    *self.cv_data(), "--cv_languages", lang, block=c.stage4b_finetune),
                    f"strategy B fine-tune, {lang}", (f"{name}-scratch",), (self.model_dir(f"{name}-{lang}"),)))
            return steps
        return steps + [Step(4, name, lambda: self.train_stage4(name), variant.label, ("stage1", *pl_steps),
                             (self.model_dir(name),))]

    def variant_models(self, name: str) -> dict[str, str]:
        """language -> model evaluated for the row of variant `name` ("*" = one model for all languages)."""
        variant = VARIANTS[name]
        if variant.per_language:
            return {lang: f"{name}-{lang}" for lang in self.config.low_resource}
        return {"*": name}

    def row_models(self) -> list[tuple[str, dict[str, str]]]:
        """Report rows in order: (row, language -> model) for theta, theta', the variants."""
        c = self.config
        rows = [("stage1", {"*": "stage1"}), ("theta_prime", {lang: f"stage2-{lang}" for lang in c.low_resource})]
        if c.stage2_mode == "semi_supervised":
            rows.append(("theta_prime_ssl", {lang: f"stage2ssl-{lang}" for lang in c.low_resource}))
        return rows + [(name, self.variant_models(name)) for name in c.variants]

    def evaluated_models(self) -> list[tuple[str, list[str]]]:
        """(model name, languages it is evaluated on): each model on the languages it was trained for."""
        c = self.config
        models = []
        for row, per_lang in self.row_models():
            if "*" in per_lang:
                models.append((per_lang["*"], c.languages if row == "stage1" else self.stage4_label_languages))
            else:
                models += [(model, [lang]) for lang, model in per_lang.items()]
        return models

    def run(self, stage: int = 0, stop_stage: int = 6, force: bool = False) -> None:
        steps = self.steps()
        try:
            run_steps(steps, self.path(".done"), jobs=self.jobs, cores=self.threads, force=force,
                      log_dir=self.path("logs"), selected=lambda s: stage <= s.stage <= stop_stage)  # fmt: skip
        except SchedulerError as err:
            raise RecipeError(str(err)) from None
        finally:
            table = render_step_times(step_times(self.path(".done"), steps))
            if table:
                logger.info("step times (seed %d):\n%s", self.seed, table)

    # -- steps
    def make_corpus(self) -> None:
        corpus = self.config.corpus
        if "preset" not in corpus:  # the user's own copies: nothing to make, only check they exist
            for root in (self.cv_root, self.vp_root):
                if not os.path.isdir(root):
                    raise RecipeError(f"corpus directory {root} does not exist")
            return
        argv = ["--preset", corpus["preset"], "--output_dir", self.corpus_dir, "--seed", str(corpus.get("seed", 0)),
                "--languages", *self.config.languages, "--jobs", str(self.step_threads)]
        for key, value in corpus.get("sizes", {}).items():
            argv += ["--set", f"{key}={value}"]
        self.script("make_synthetic_corpus.py", *argv)

    def theta_prime_continuation(self, lang: str) -> str:
        """theta'_L's checkpoint at the slimIPL start: its last one (stage2's max_steps = stage2_semi's
        pl_start_step, checked when the config is loaded), saved whatever its save_steps."""
        from ..training.checkpointing import checkpoint_dir

        return checkpoint_dir(self.model_dir(f"stage2-{lang}"), self.config.pl_start_step)

    def train_stage2(self, lang: str, semi: bool) -> None:
        """theta'_L; with `semi`, slimIPL's theta'_L: theta'_L's run continued from its last checkpoint
        (weights, optimizer, step, data position) on labels + PLs, so no supervised update is computed twice."""
        c = self.config
        if semi:
            self.train(self.model_dir(f"stage2ssl-{lang}"), "--init_from", self.model_dir(f"stage2-{lang}"),
                       "--continue_from", self.theta_prime_continuation(lang), *self.cv_data(),
                       "--cv_languages", lang, "--unlabeled_data", f"voxpopuli:{self.vp_root}",
                       block={**c.stage2, **c.stage2_semi})  # fmt: skip
            return
        self.train(self.model_dir(f"stage2-{lang}"), "--init_from", self.model_dir("stage1"), *self.cv_data(),
                   "--cv_languages", lang, block=c.stage2)

    def pseudo_label(self, source: str, lang: str, model: str | None = None) -> None:
        """PLs of `lang`'s unlabeled audio, by the teacher :meth:`teacher_argv` picks."""
        options = dict(self.config.pseudo_label)
        if source == "pl_lm":
            options["lm_dir"] = self.path("lm", "processor")
            options.update(self.config.pseudo_label_lm)
        teacher_argv = self.teacher_argv(source, lang, model)
        model = teacher_argv[1]
        vocab_argv = self.student_vocab_argv() if model == self.external_teacher else []
        out = self.pl_dir(source, lang)
        # pseudo_label.py refuses to resume shards another model wrote: a retrained or another teacher starts afresh.
        run_file = os.path.join(out, "pl_run.json")
        if os.path.exists(run_file) and not (_up_to_date(run_file, os.path.join(model, "model.safetensors"))
                                             and _same_teacher(run_file, model)):  # fmt: skip
            logger.info("%s was made by another teacher than %s, or before it was trained: pseudo-labelling afresh",
                        out, model)  # fmt: skip
            shutil.rmtree(out)
        self.script("pseudo_label.py", *teacher_argv, "--data", f"voxpopuli:{self.vp_root}",
                    "--language", lang, "--output_dir", out, "--resume", "--merge",
                    "--threads", str(self.step_threads), *(["--align_truth"] if source == "oracle" else []),
                    *vocab_argv, *mapping_to_argv(options))  # fmt: skip

    def pseudo_label_auto(self) -> None:
        """All low-resource unlabeled audio, language unknown: theta's LID head routes to theta'_L."""
        out = self.path("pl", "pl_auto")
        self.script("pseudo_label.py", "--model", self.model_dir("stage1"), "--data", f"voxpopuli:{self.vp_root}",
                    "--data_languages", ",".join(self.config.low_resource), "--language", "auto",
                    "--models_per_language", self.model_dir(self.teacher("{lang}")), "--output_dir", out,
                    "--resume", "--merge", "--threads", str(self.step_threads),
                    *mapping_to_argv(self.config.pseudo_label))  # fmt: skip

    def filter_pl(self, lang: str) -> None:
        """Same raw greedy PLs, re-merged with the confidence filter into a second dataset."""
        src, dst = self.pl_dir("pl", lang), self.pl_dir("pl_filtered", lang)
        os.makedirs(dst, exist_ok=True)
        for shard in glob.glob(os.path.join(src, "*.jsonl")):
            shutil.copy(shard, dst)
        self.script("pseudo_label.py", "--merge_only", "--output_dir", dst, *self.student_vocab_argv(),
                    *mapping_to_argv(self.config.pl_filter))

    def mix_pl(self, source: str, lang: str) -> None:
        """The teacher's greedy PLs of L with a share of recordings' true transcripts (the PL-quality sweep)."""
        from ..pseudo_labeling.mixing import mix_with_truth

        dst = self.pl_dir(source, lang)
        counts = mix_with_truth(self.pl_dir("pl", lang), self.pl_dir("oracle", lang), dst,
                                PL_SOURCES[source].truth_share)  # fmt: skip
        logger.info("%s: %d of %d recordings take their true transcript", dst, counts["truth"], counts["recordings"])
        # Merged with the PL set's own filters (the `pseudo_label` block), so a share of 0 is the PL set itself.
        self.script("pseudo_label.py", "--merge_only", "--output_dir", dst, *self.student_vocab_argv(),
                    *mapping_to_argv(self.config.pseudo_label))

    def select_by_agreement(self, lang: str) -> None:
        """Segments of L's recordings on which the teacher's greedy and LM-decoded PLs agree."""
        self.script("select_pseudo_labels.py", "--greedy", self.pl_dataset("pl", lang),
                    "--lm", self.pl_dataset("pl_lm", lang),
                    "--output_dir", os.path.dirname(self.pl_dataset("pl_agree", lang)),  # merged/ as any PL set
                    *(["--truth", self.vp_root] if self._has_truth() else []),  # reported, never used to choose
                    *mapping_to_argv(self.config.pl_agreement))  # fmt: skip

    def _has_truth(self) -> bool:
        """Synthetic corpora ship the true transcripts of their unlabeled audio (for PL CER tables only)."""
        return os.path.isdir(os.path.join(self.vp_root, "unlabelled_truth"))

    def _stage4_datasets(self, name: str) -> list[str]:
        source = VARIANTS[name].pl_source
        if source is None:
            return []
        if source == "pl_auto":
            candidates = [self.path("pl", "pl_auto", "merged", "dataset")]
        else:
            candidates = [self.pl_dataset(source, lang) for lang in self.config.low_resource]
        kept = []
        for path in candidates:
            stats = os.path.join(os.path.dirname(path), "stats.json")
            if os.path.exists(stats) and json.load(open(stats)).get("kept", 1) == 0:
                logger.warning("%s holds no pseudo-label after filtering: not used", path)
            else:
                kept.append(path)
        return kept

    @property
    def stage4_label_languages(self) -> list[str]:
        c = self.config
        return c.languages if c.stage4_labels == "all" else sorted(c.low_resource)

    def train_stage4(self, name: str) -> None:
        variant = VARIANTS[name]
        block = {**self.config.stage4, **(getattr(self.config, variant.overrides) if variant.overrides else {})}
        self.train(self.model_dir(name), "--init_from", self.model_dir("stage1"), *self.cv_data(self._stage4_datasets(name)),
                   "--cv_languages", *self.stage4_label_languages, block=block)

    def finetune(self, base: str, name: str, lang: str) -> None:
        """A labels-only fine-tune of `base`'s model on `lang` (stage-2 style, block stage4_finetune)."""
        self.train(self.model_dir(name), "--init_from", self.model_dir(base), *self.cv_data(),
                   "--cv_languages", lang, block=self.config.stage4_finetune)

    def average_teacher(self) -> None:
        from ..training.checkpointing import average_checkpoints

        averaged = average_checkpoints(self.model_dir("stage4a"), self.model_dir("stage4a-avg"), last=3)
        logger.info("round-2 teacher = mean of %s", ", ".join(os.path.basename(p) for p in averaged))

    def train_4b_scratch(self, name: str = "stage4b") -> None:
        c = self.config
        theta = self.model_dir("stage1")
        with open(os.path.join(theta, "config.json")) as f:
            languages = json.load(f)["languages"]
        self.train(self.model_dir(f"{name}-scratch"), "--tokenizer_dir", theta, "--languages", *languages,
                   *self.cv_data(self._stage4_datasets(name)), "--cv_languages", *self.stage4_label_languages,
                   block=c.stage4b_scratch)

    def build_lm(self) -> None:
        processor_dir = self.path("lm", "processor")
        os.makedirs(processor_dir, exist_ok=True)
        # The LM processor is theta's processor (all models share its vocabulary) + language_model/.
        from transformers import AutoProcessor

        AutoProcessor.from_pretrained(self.model_dir("stage1")).save_pretrained(processor_dir)
        texts = [f"{lang}={os.path.join(self.text_dir, lang + '.txt')}" for lang in self.config.languages]
        argv = [a for t in texts for a in ("--text", t)]
        self.script("build_lm.py", *argv, "--output_dir", self.path("lm", "ngram"), "--processor-dir", processor_dir,
                    *mapping_to_argv(self.config.lm))

    def lm_processor_models(self) -> list[tuple[str, list[str]]]:
        """(model, languages) whose dev-tuned alpha/beta go into the shared LM processor, in this order:
        theta on every language, then the teacher theta'_L on L (so LM-decoded PLs use their teacher's
        weights). Other models, the supervised baseline among them when it is not the teacher, get their own
        tune-<model> step."""
        c = self.config
        return [("stage1", c.languages)] + [(self.teacher(lang), [lang]) for lang in c.low_resource]

    def tune_lm(self) -> None:
        for model, languages in self.lm_processor_models():
            self.tune_model(model, languages, save=True)

    def lm_params_dir(self, model: str) -> str:
        return self.path("lm", "alpha_beta", model)

    def lm_params_path(self, model: str) -> str:
        from ..decoding.tuning import TUNING_FILE

        return os.path.join(self.lm_params_dir(model), TUNING_FILE)

    def tune_model(self, model: str, languages: list[str], save: bool = False) -> None:
        """Dev logits of `model` + the alpha/beta search -> lm/alpha_beta/<model>/tuning.json: every model is
        LM-decoded with weights tuned for it on dev (`save` also writes them into the shared processor)."""
        logits = self.path("lm", f"dev-{model}.npz")
        if not self._dev_logits_current(logits, model, languages):
            out = self.path("lm", f"dev-eval-{model}")
            shutil.rmtree(out, ignore_errors=True)  # resuming it would save logits of the new utterances only
            self.script("evaluate.py", "--model", self.model_dir(model), "--data", f"cv:{self.cv_root}",
                        "--split", "dev", "--languages", *languages, "--no-lm", "--save-logits", logits,
                        "--output_dir", out, *mapping_to_argv({k: v for k, v in self.config.evaluate.items() if k == "device"}))
        self.script("tune_lm.py", "--processor-dir", self.path("lm", "processor"), "--logits", logits,
                    "--languages", *languages, "--output_dir", self.lm_params_dir(model), "--workers", str(self.step_threads),
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
        from ..decoding.tuning import load_logits_meta

        return set(languages) <= set(load_logits_meta(logits)["languages"])

    def evaluate(self, name: str, languages: list[str]) -> None:
        params = self.lm_params_path(name)
        if not os.path.exists(params):  # e.g. an experiment folder from before per-model tuning
            raise RecipeError(f"{params} missing: tune {name} first (re-run stage 5 with --force)")
        out = self.path("eval", name)
        self._drop_if_stale(os.path.join(out, "predictions.jsonl"), self._weights(name), params)
        self.script("evaluate.py", "--model", self.model_dir(name), "--data", f"cv:{self.cv_root}", "--split", "test",
                    "--languages", *languages, "--lm-dir", self.path("lm", "processor"), "--lm-params", params,
                    "--output_dir", out, *mapping_to_argv(self.config.evaluate))

    # -- the results manifest (what report.py renders, without importing this module)
    def manifest(self) -> dict:
        c = self.config
        rows = []
        for row, per_lang in self.row_models():
            variant: Variant | None = VARIANTS.get(row)
            rows.append({
                "row": row,
                "label": variant.label if variant else BASE_ROWS[row],
                "predictions": {lang: self.path("eval", model, "predictions.jsonl") for lang, model in per_lang.items()},
                "pl_row": bool(variant) and is_pl_row(row),
                "pl_set": variant.pl_source if variant else None,
                "control": variant.control if variant and variant.control in c.variants else None,
                "oracle": variant.oracle if variant and variant.oracle in c.variants else None,
            })  # fmt: skip
        pl_sets = [{"set": source, "language": lang, "merged": os.path.dirname(self.pl_dataset(source, lang))}
                   for source in self.pl_sources() if source != "pl_auto" for lang in c.low_resource]  # fmt: skip
        return {
            "name": c.name, "seed": self.seed, "low_resource": c.low_resource, "high_resource": c.high_resource,
            "reference": REFERENCE_ROW, "rows": rows, "pl_sets": pl_sets, "truth_root": self.vp_root,
            "pl_teacher": self.external_teacher or f"theta' ({self.teacher('<L>')})",
            "steps": step_times(self.path(".done"), [s for s in self.steps() if s.name != "report"]),
        }  # fmt: skip

    def report(self) -> None:
        from .report import write_report

        os.makedirs(self.path("report"), exist_ok=True)
        manifest_path = self.path("report", MANIFEST)
        with open(manifest_path, "w") as f:
            json.dump(self.manifest(), f, indent=2)
        write_report(manifest_path)
