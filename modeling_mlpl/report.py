"""The recipe's report: every number is recomputed from the saved per-utterance predictions.

Comparisons are like with like: each row's low-resource CER is set against theta' (the best model
without PLs) decoded the same way (greedy vs greedy, LM vs LM). PL efficiency = PL gain / oracle gain.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

from .evaluation import report_from_predictions
from .metrics import cer

if TYPE_CHECKING:
    from .recipe import Recipe

DECODERS = {"prediction": "greedy", "prediction_lm": "LM"}
# Rows trained on pseudo-labels: the only ones whose gain is a PL gain (PL efficiency).
PL_ROWS = ("stage4a", "pl_lm", "pl_filtered", "pl_auto", "pl_round2", "stage4b")

# Report rows: name -> (label, how its per-language results are assembled).
ROWS = [
    ("stage1", "theta: multilingual (stage 1)"),
    ("theta_prime", "theta': fine-tuned per language, no PLs (stage 2)"),
    ("labels_only", "control: labels only, same updates as A"),
    ("stage4a", "A: continue theta on labels + greedy PLs (paper)"),
    ("pl_lm", "A with LM-decoded PLs"),
    ("pl_filtered", "A with confidence-filtered PLs"),
    ("pl_auto", "A with --language auto PLs (LID routing)"),
    ("pl_round2", "A with round-2 PLs (teacher = average of A's last checkpoints)"),
    ("stage4b", "B: scratch on labels + PLs, then fine-tune"),
    ("oracle", "oracle: true transcripts of the unlabeled audio"),
]


def collect_results(recipe: "Recipe") -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """row -> language -> decoder -> {cer, wer}, from each model's predictions.jsonl."""
    per_model: dict[str, dict] = {}
    for name, _ in recipe.evaluated_models():
        predictions = recipe.path("eval", name, "predictions.jsonl")
        if os.path.exists(predictions):
            per_model[name] = report_from_predictions(predictions)["per_group"]
    results: dict[str, dict] = {}
    for row, _ in ROWS:
        if row in ("theta_prime", "stage4b"):
            prefix = "stage2" if row == "theta_prime" else "stage4b"
            langs = {lang: per_model[f"{prefix}-{lang}"][lang] for lang in recipe.config.low_resource
                     if f"{prefix}-{lang}" in per_model and lang in per_model[f"{prefix}-{lang}"]}  # fmt: skip
        elif row in per_model:
            langs = {lang: v for lang, v in per_model[row].items() if lang != "all"}
        else:
            continue
        if langs:
            results[row] = {lang: {DECODERS[k]: {"cer": m["cer"], "wer": m["wer"]} for k, m in v.items()
                                   if k in DECODERS} for lang, v in langs.items()}  # fmt: skip
    return results


def pl_statistics(recipe: "Recipe") -> dict[str, dict]:
    """Per PL set and language: hours in/kept, empty outputs, and the PL CER against the synthetic truth."""
    from datasets import load_from_disk

    from .data import load_unlabelled_truth

    stats: dict[str, dict] = {}
    for variant in ("pl", "pl_lm", "pl_filtered", "pl_round2"):
        for lang in recipe.config.low_resource:
            merged = recipe.path("pl", f"{variant}-{lang}", "merged")
            if not os.path.isdir(os.path.join(merged, "dataset")):
                continue
            with open(os.path.join(merged, "stats.json")) as f:
                merge_stats = json.load(f)
            entry = {k: merge_stats[k] for k in ("records", "hours_in", "kept", "hours_kept", "empty_outputs", "failures")}
            try:
                truth = load_unlabelled_truth(recipe.vp_root, [lang])
                data = load_from_disk(os.path.join(merged, "dataset"))
                refs = [truth[i] for i in data["id"]]
                entry["pl_cer"] = cer(refs, list(data["text"])) if refs else None
            except Exception as err:  # real corpora have no truth: the PL CER is simply unknown
                entry["pl_cer"] = None
                entry["pl_cer_note"] = str(err)
            stats.setdefault(variant, {})[lang] = entry
    return stats


def summarise(results: dict, low: list[str], high: list[str]) -> dict:
    """Low/high-resource means, relative reductions vs theta' and PL efficiency, per decoder."""
    summary: dict[str, dict] = {}
    ref = results.get("theta_prime", {})
    oracle = results.get("oracle", {})
    control = results.get("labels_only", {})
    for row, per_lang in results.items():
        entry: dict[str, dict] = {}
        for decoder in ("greedy", "LM"):
            langs = [lang for lang in low if decoder in per_lang.get(lang, {})]
            if not langs:
                continue
            low_cer = float(np.mean([per_lang[lang][decoder]["cer"] for lang in langs]))
            e = {"low_cer": low_cer, "low_wer": float(np.mean([per_lang[lang][decoder]["wer"] for lang in langs]))}
            his = [lang for lang in high if decoder in per_lang.get(lang, {})]
            if his:
                e["high_cer"] = float(np.mean([per_lang[lang][decoder]["cer"] for lang in his]))
            if all(decoder in ref.get(lang, {}) for lang in langs):
                ref_cer = float(np.mean([ref[lang][decoder]["cer"] for lang in langs]))
                e["rel_vs_theta_prime"] = (ref_cer - low_cer) / ref_cer
                e["beats_theta_prime_every_language"] = all(
                    per_lang[lang][decoder]["cer"] < ref[lang][decoder]["cer"] for lang in langs
                )
                if row in PL_ROWS and all(decoder in oracle.get(lang, {}) for lang in langs):
                    oracle_cer = float(np.mean([oracle[lang][decoder]["cer"] for lang in langs]))
                    gain = ref_cer - oracle_cer
                    e["pl_efficiency"] = (ref_cer - low_cer) / gain if gain > 0 else None
            if all(decoder in control.get(lang, {}) for lang in langs):
                e["beats_labels_only_every_language"] = all(
                    per_lang[lang][decoder]["cer"] < control[lang][decoder]["cer"] for lang in langs
                )
            entry[decoder] = e
        summary[row] = entry
    if "stage4a" in results and "theta_prime" in results:
        # The "system" comparison (greedy theta' vs A + LM) mixes the LM's gain with the PLs': shown apart.
        try:
            g = summary["theta_prime"]["greedy"]["low_cer"]
            lm = summary["stage4a"]["LM"]["low_cer"]
            summary["system_theta_prime_greedy_vs_stage4a_lm"] = {"from": g, "to": lm, "rel": (g - lm) / g}
        except KeyError:
            pass
    return summary


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _flag(x) -> str:
    return "–" if x is None else ("yes" if x else "no")


def render_markdown(name: str, seed: int, results: dict, summary: dict, pl_stats: dict, low, high) -> str:
    labels = dict(ROWS)
    lines = [f"# mlpl recipe report: {name}, seed {seed}", "",
             f"Low-resource targets: {', '.join(low)}; high-resource: {', '.join(high) or 'none'}. "
             "CER/WER in %, test sets. Relative reductions are against theta' decoded the same way; "
             "LM columns: every model with its own alpha/beta, tuned on dev. "
             "PL efficiency = (theta' - row) / (theta' - oracle).", "",
             "## Ablation (low-resource mean)", "",
             "| model | CER greedy | rel. vs theta' | CER LM | rel. vs theta' | PL eff. greedy | PL eff. LM | "
             "beats theta' & control in every language (greedy / LM) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row, _ in ROWS:
        if row not in summary:
            continue
        g, lm = summary[row].get("greedy", {}), summary[row].get("LM", {})
        wins = " / ".join(
            _flag(d.get("beats_theta_prime_every_language") and d.get("beats_labels_only_every_language"))
            if "beats_labels_only_every_language" in d else "–" for d in (g, lm)
        )
        lines.append(f"| {labels[row]} | {_pct(g.get('low_cer'))} | {_pct(g.get('rel_vs_theta_prime'))} | "
                     f"{_pct(lm.get('low_cer'))} | {_pct(lm.get('rel_vs_theta_prime'))} | "
                     f"{_pct(g.get('pl_efficiency'))} | {_pct(lm.get('pl_efficiency'))} | {wins} |")
    system = summary.get("system_theta_prime_greedy_vs_stage4a_lm")
    if system:
        lines += ["", f"System comparison (mixes the LM's gain with the PLs', not a PL result): theta' greedy "
                      f"{_pct(system['from'])} -> A + LM {_pct(system['to'])} ({_pct(system['rel'])} % relative)."]
    languages = sorted({lang for per_lang in results.values() for lang in per_lang})
    lines += ["", "## Per language (CER % greedy / LM)", "",
              "| model | " + " | ".join(languages) + " | low mean | high mean |",
              "|---|" + "---|" * (len(languages) + 2)]
    for row, label in ROWS:
        if row not in results:
            continue
        cells = []
        for lang in languages:
            v = results[row].get(lang)
            cells.append("–" if v is None else f"{_pct(v.get('greedy', {}).get('cer'))} / {_pct(v.get('LM', {}).get('cer'))}")
        s = summary.get(row, {})
        mean = lambda key: f"{_pct(s.get('greedy', {}).get(key))} / {_pct(s.get('LM', {}).get(key))}"  # noqa: E731
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean('low_cer')} | {mean('high_cer')} |")
    if pl_stats:
        lines += ["", "## Pseudo-labels", "", "| PL set | language | recordings | hours in | hours kept | empty | "
                  "failed | PL CER vs truth |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for variant, per_lang in pl_stats.items():
            for lang, s in per_lang.items():
                lines.append(f"| {variant} | {lang} | {s['records']} | {s['hours_in']:.2f} | {s['hours_kept']:.2f} | "
                             f"{s['empty_outputs']} | {s['failures']} | {_pct(s.get('pl_cer'))} |")
    lines += ["", "![CER per language per model](cer_per_language.png)", ""]
    return "\n".join(lines)


def plot_cer(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dict(ROWS)
    languages = sorted({lang for per_lang in results.values() for lang in per_lang})
    rows = [r for r, _ in ROWS if r in results]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(languages) * 2), 4.5), sharey=True)
    width = 0.8 / max(len(rows), 1)
    for ax, decoder in zip(axes, ("greedy", "LM")):
        for i, row in enumerate(rows):
            values = [100 * results[row].get(lang, {}).get(decoder, {}).get("cer", np.nan) for lang in languages]
            ax.bar(np.arange(len(languages)) + i * width, values, width, label=labels[row])
        ax.set_xticks(np.arange(len(languages)) + 0.4 - width / 2, languages)
        ax.set_title(f"test CER, {decoder} decoding")
        ax.set_ylabel("CER %")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(recipe: "Recipe") -> dict:
    """Write report.md, report.json and cer_per_language.png into the seed's experiment directory."""
    c = recipe.config
    results = collect_results(recipe)
    summary = summarise(results, c.low_resource, c.high_resource)
    pl_stats = pl_statistics(recipe)
    report = {"name": c.name, "seed": recipe.seed, "results": results, "summary": summary, "pl_stats": pl_stats}
    out = recipe.path("report")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(render_markdown(c.name, recipe.seed, results, summary, pl_stats, c.low_resource, c.high_resource))
    if results:
        plot_cer(results, os.path.join(out, "cer_per_language.png"))
    return report


def aggregate_seeds(exp_dir: str, seeds: list[int]) -> str:
    """Mean ± spread over seeds of the ablation numbers; writes <exp_dir>/report.md and .json."""
    reports = []
    for seed in seeds:
        path = os.path.join(exp_dir, f"seed{seed}", "report", "report.json")
        if os.path.exists(path):
            with open(path) as f:
                reports.append(json.load(f))
    if not reports:
        raise FileNotFoundError(f"no seed reports under {exp_dir}")
    labels = dict(ROWS)
    keys = ("low_cer", "rel_vs_theta_prime", "pl_efficiency")
    agg: dict = {}
    for row, _ in ROWS:
        for decoder in ("greedy", "LM"):
            for key in keys:
                values = [r["summary"].get(row, {}).get(decoder, {}).get(key) for r in reports]
                values = [v for v in values if v is not None]
                if values:
                    agg.setdefault(row, {}).setdefault(decoder, {})[key] = {
                        "mean": float(np.mean(values)), "spread": float(np.std(values)), "n": len(values)}
            wins = [r["summary"].get(row, {}).get(decoder, {}) for r in reports]
            if all("beats_labels_only_every_language" in w for w in wins) and wins:
                agg.setdefault(row, {}).setdefault(decoder, {})["wins_every_seed"] = all(
                    w.get("beats_theta_prime_every_language") and w.get("beats_labels_only_every_language")
                    for w in wins)
    lines = [f"# mlpl recipe: {reports[0]['name']}, {len(reports)} seed(s) ({', '.join(str(r['seed']) for r in reports)})",
             "", "Low-resource mean CER %, mean ± std over seeds; relative reduction vs theta' decoded the same way.",
             "", "| model | CER greedy | rel. | CER LM | rel. | PL eff. greedy | PL eff. LM | wins in every language & seed (greedy / LM) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def cell(row, decoder, key):
        v = agg.get(row, {}).get(decoder, {}).get(key)
        return "–" if v is None else f"{100 * v['mean']:.1f} ± {100 * v['spread']:.1f}"

    for row, _ in ROWS:
        if row not in agg:
            continue
        wins = " / ".join(_flag(agg[row].get(d, {}).get("wins_every_seed")) for d in ("greedy", "LM"))
        lines.append(f"| {labels[row]} | {cell(row, 'greedy', 'low_cer')} | {cell(row, 'greedy', 'rel_vs_theta_prime')} | "
                     f"{cell(row, 'LM', 'low_cer')} | {cell(row, 'LM', 'rel_vs_theta_prime')} | "
                     f"{cell(row, 'greedy', 'pl_efficiency')} | {cell(row, 'LM', 'pl_efficiency')} | {wins} |")
    markdown = "\n".join(lines) + "\n"
    with open(os.path.join(exp_dir, "report.md"), "w") as f:
        f.write(markdown)
    with open(os.path.join(exp_dir, "report.json"), "w") as f:
        json.dump({"seeds": [r["seed"] for r in reports], "aggregate": agg}, f, indent=2)
    return markdown
