"""The recipe's stage-4 style runs and pseudo-label sets, as data.

A *variant* is one row of the report trained after the PLs exist: strategy A (continue theta on labels +
PLs), strategy B (from scratch, then fine-tune per target), the controls (labels only with equal updates,
the oracle's true transcripts) and the options. A *PL source* is one kind of pseudo-label set per target
language. The recipe (:mod:`modeling_mlpl.recipe.recipe`) plans its steps from these tables and writes a results
manifest that the report (:mod:`modeling_mlpl.recipe.report`) renders, so adding a variant is one entry below
(+ its config block when it trains with other settings) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PLSource:
    """How one PL set per target language is made (the recipe has one method per `kind`)."""

    description: str
    kind: str  # greedy | oracle | lm | filtered | auto | round2 | agreement | mix
    truth_known: bool = True  # synthetic corpora: the report gives its CER against the true transcripts
    truth_share: float | None = None  # kind "mix": the share of recordings that take their true transcript


PL_SOURCES: dict[str, PLSource] = {
    "pl": PLSource("greedy PLs of the teacher theta'_L (paper)", "greedy"),
    "oracle": PLSource("true transcripts of the same audio, force-aligned by the teacher", "oracle"),
    "pl_lm": PLSource("PLs decoded by the teacher with the n-gram LM", "lm"),
    "pl_filtered": PLSource("greedy PLs, the least confident recordings dropped at merge time", "filtered"),
    "pl_auto": PLSource("PLs made with --language auto (theta's LID head routes each recording)", "auto"),
    "pl_round2": PLSource("greedy PLs of a second round, teacher = average of stage4a's last checkpoints", "round2"),
    "pl_agree": PLSource("10 s segments on which the teacher's greedy and LM PLs agree", "agreement"),
}
# The PL-quality sweep (synthetic corpora only: it reads the truth): the teacher's greedy PLs with a share of
# the recordings replaced by their true transcripts, between "pl" (share 0) and "oracle" (share 1).
SWEEP_SHARES = (25, 50, 75)
for _pct in SWEEP_SHARES:
    PL_SOURCES[f"pl_mix{_pct}"] = PLSource(
        f"greedy PLs with {_pct} % of the recordings replaced by their true transcripts (PL-quality sweep)", "mix",
        truth_share=_pct / 100)


@dataclass(frozen=True)
class Variant:
    """One stage-4 style run and its report row.

    strategy "A" continues theta (stage 1) on labels + `pl_source`; "B" trains from scratch with theta's
    vocabulary on labels + PLs (config block `stage4b_scratch`), then fine-tunes per target language on
    labels (`stage4b_finetune`). `base` makes this a labels-only fine-tune per target language of another
    variant's model (block `stage4_finetune`). `overrides` names a config block merged over the variant's
    training block (e.g. SpecAugment for a noisy student). `control` and `oracle` are the rows it is set
    against like with like (same updates, same augmentation, same fine-tune).
    """

    label: str
    pl_source: str | None = None
    strategy: str = "A"
    base: str | None = None
    overrides: str | None = None
    control: str | None = "labels_only"
    oracle: str | None = "oracle"

    def needs(self) -> list[str]:
        """Variants whose models or PLs this one uses (they must be listed before it)."""
        if self.base:
            return [self.base]
        return ["stage4a"] if self.pl_source == "pl_round2" else []

    @property
    def per_language(self) -> bool:
        """One model per target language (B's and every fine-tune's) rather than one for all."""
        return self.strategy == "B" or self.base is not None


VARIANTS: dict[str, Variant] = {
    "stage4a": Variant("A: continue theta on labels + greedy PLs (paper)", "pl"),
    "labels_only": Variant("control: continue theta on labels only, same updates as A", control=None),
    "oracle": Variant("oracle: labels + true transcripts of the unlabeled audio", "oracle", control=None, oracle=None),
    "pl_lm": Variant("A with LM-decoded PLs", "pl_lm"),
    "pl_filtered": Variant("A with confidence-filtered PLs", "pl_filtered"),
    "pl_auto": Variant("A with --language auto PLs (LID routing)", "pl_auto"),
    "pl_round2": Variant("A with round-2 PLs (teacher = average of A's last checkpoints)", "pl_round2"),
    "pl_agree": Variant("A on segments where greedy and LM PLs agree", "pl_agree"),
    "stage4b": Variant("B: scratch on labels + greedy PLs, then fine-tune per language", "pl", strategy="B",
                       control="labels_only_ft", oracle="oracle_ft"),  # fmt: skip
    # The published checkpoint's card: "After training on Common Voice and VoxPopuli, the model is trained on
    # Common Voice only": strategy A followed by a labels-only fine-tune per target language.
    "stage4a_ft": Variant("A + final labels-only fine-tune per language", "pl", base="stage4a",
                          control="labels_only_ft", oracle="oracle_ft"),  # fmt: skip
    "pl_lm_ft": Variant("A with LM-decoded PLs + the same final fine-tune", "pl_lm", base="pl_lm",
                        control="labels_only_ft", oracle="oracle_ft"),  # fmt: skip
    "labels_only_ft": Variant("control + the same final fine-tune", base="labels_only", control=None,
                              oracle="oracle_ft"),  # fmt: skip
    "oracle_ft": Variant("oracle + the same final fine-tune", "oracle", base="oracle", control=None, oracle=None),
    # Noisy student: SpecAugment on the student from update 0 (block `stage4_noisy`); its control gets it too.
    "stage4a_noisy": Variant("A, noisy student (SpecAugment on stage 4)", "pl", overrides="stage4_noisy",
                             control="labels_only_noisy"),  # fmt: skip
    "labels_only_noisy": Variant("control with the same SpecAugment", overrides="stage4_noisy", control=None),
}
# The PL-quality sweep's rows (analysis, not a method: they use the truth), each as A and as A + fine-tune, set
# against the claim's controls: how the gain grows as PLs get cleaner, everything else held fixed.
for _pct in SWEEP_SHARES:
    VARIANTS[f"pl_mix{_pct}"] = Variant(f"A on PLs with {_pct} % true transcripts (sweep; uses the truth)",
                                        f"pl_mix{_pct}")
    VARIANTS[f"pl_mix{_pct}_ft"] = Variant(f"A on PLs with {_pct} % true transcripts + fine-tune (sweep)",
                                           f"pl_mix{_pct}", base=f"pl_mix{_pct}", control="labels_only_ft",
                                           oracle="oracle_ft")
del _pct

# Report rows before the variants: the models every run has.
BASE_ROWS = {
    "stage1": "theta: multilingual (stage 1)",
    "theta_prime": "theta': fine-tuned per language, supervised, no unlabeled audio (baseline)",
    "theta_prime_ssl": "theta' semi-supervised (slimIPL on the target's unlabeled audio)",
}
REFERENCE_ROW = "theta_prime"


def is_pl_row(name: str) -> bool:
    """Rows whose gain over theta' is a PL gain (PL efficiency is reported for them)."""
    source = VARIANTS[name].pl_source
    return source is not None and source != "oracle"


__all__ = ["PLSource", "PL_SOURCES", "SWEEP_SHARES", "Variant", "VARIANTS", "BASE_ROWS", "REFERENCE_ROW", "is_pl_row"]
