"""The recipe's report: every number is recomputed from the saved per-utterance predictions.

Input: the results manifest the recipe writes (``report/manifest.json``: rows, their models' prediction
files, each row's control and oracle, PL sets, step times), so this module needs nothing of the recipe.
Comparisons are like with like: each row's low-resource CER is set against theta' (the supervised baseline)
decoded the same way (greedy vs greedy, LM vs LM), and against its own equal-update control. PL efficiency
= PL gain / oracle gain, with the oracle trained the same way as the row.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..evaluation.test_sets import report_from_predictions
from ..evaluation.metrics import cer
from .scheduler import render_step_times

DECODERS = {"prediction": "greedy", "prediction_lm": "LM"}


def collect_results(manifest: dict) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """row -> language -> decoder -> {cer, wer}, from each row's predictions.jsonl files."""
    cache: dict[str, dict] = {}
    results: dict[str, dict] = {}
    for row in manifest["rows"]:
        langs: dict[str, dict] = {}
        for lang, path in row["predictions"].items():
            if not os.path.exists(path):
                continue
            if path not in cache:
                cache[path] = report_from_predictions(path)["per_group"]
            per_group = cache[path]
            for group, metrics in per_group.items():
                if group != "all" and (lang == "*" or group == lang):
                    langs[group] = metrics
        if langs:
            results[row["row"]] = {lang: {DECODERS[k]: {"cer": m["cer"], "wer": m["wer"]} for k, m in v.items()
                                          if k in DECODERS} for lang, v in langs.items()}  # fmt: skip
    return results


def pl_statistics(manifest: dict) -> dict[str, dict]:
    """Per PL set and language: hours in/kept, empty outputs, and the PL CER against the synthetic truth."""
    from datasets import load_from_disk

    from ..data import load_unlabelled_truth

    stats: dict[str, dict] = {}
    for entry in manifest["pl_sets"]:
        merged, lang = entry["merged"], entry["language"]
        if not os.path.isdir(os.path.join(merged, "dataset")):
            continue
        with open(os.path.join(merged, "stats.json")) as f:
            merge_stats = json.load(f)
        keys = ("records", "hours_in", "kept", "hours_kept", "empty_outputs", "failures")
        line = {k: merge_stats.get(k) for k in keys}
        line["teachers"] = merge_stats.get("teachers", {})  # "kind:name_or_path" -> rows: who made the set
        try:
            truth = load_unlabelled_truth(manifest["truth_root"], [lang])
            data = load_from_disk(os.path.join(merged, "dataset"))
            ids = list(data["id"])
            if any("#" in i for i in ids):  # segments: the selection aligned the truth to them itself
                line["pl_cer"] = merge_stats.get("languages", {}).get(lang, {}).get("true_cer_kept")
            else:
                line["pl_cer"] = cer([truth[i] for i in ids], list(data["text"])) if ids else None
        except Exception as err:  # real corpora have no truth: the PL CER is simply unknown
            line["pl_cer"] = None
            line["pl_cer_note"] = str(err)
        stats.setdefault(entry["set"], {})[lang] = line
    return stats


def summarise(results: dict, manifest: dict) -> dict:
    """Low/high-resource means, relative reductions vs theta', wins over the row's own control and PL
    efficiency against the row's own oracle, per decoder."""
    low, high = manifest["low_resource"], manifest["high_resource"]
    ref = results.get(manifest["reference"], {})
    summary: dict[str, dict] = {}
    for row in manifest["rows"]:
        name = row["row"]
        per_lang = results.get(name)
        if per_lang is None:
            continue
        oracle = results.get(row.get("oracle") or "", {})
        control = results.get(row.get("control") or "", {})
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
                e["rel_vs_theta_prime"] = (ref_cer - low_cer) / ref_cer if ref_cer else None
                e["beats_theta_prime_every_language"] = all(
                    per_lang[lang][decoder]["cer"] < ref[lang][decoder]["cer"] for lang in langs
                )
                if row.get("pl_row") and all(decoder in oracle.get(lang, {}) for lang in langs):
                    oracle_cer = float(np.mean([oracle[lang][decoder]["cer"] for lang in langs]))
                    gain = ref_cer - oracle_cer
                    e["pl_efficiency"] = (ref_cer - low_cer) / gain if gain > 0 else None
            if all(decoder in control.get(lang, {}) for lang in langs):
                e["beats_control_every_language"] = all(
                    per_lang[lang][decoder]["cer"] < control[lang][decoder]["cer"] for lang in langs
                )
            entry[decoder] = e
        summary[name] = entry
    if "stage4a" in results and manifest["reference"] in results:
        # The "system" comparison (greedy theta' vs A + LM) mixes the LM's gain with the PLs': shown apart.
        try:
            g = summary[manifest["reference"]]["greedy"]["low_cer"]
            lm = summary["stage4a"]["LM"]["low_cer"]
            summary["system_theta_prime_greedy_vs_stage4a_lm"] = {"from": g, "to": lm, "rel": (g - lm) / g}
        except KeyError:
            pass
    return summary


def pl_quality_rows(manifest: dict, summary: dict, pl_stats: dict) -> list[dict]:
    """Rows trained on a PL set whose CER against the truth is known (synthetic corpora), with the set's
    mean PL CER over the low-resource languages and the row's gains, cleanest PLs last: the PL-quality sweep's
    curve (teacher PLs -> mixed with the truth -> oracle)."""
    out = []
    for row in manifest["rows"]:
        per_lang = pl_stats.get(row.get("pl_set") or "", {})
        cers = [per_lang.get(lang, {}).get("pl_cer") for lang in manifest["low_resource"]]
        if row["row"] not in summary or not cers or any(c is None for c in cers):
            continue
        s = summary[row["row"]]
        out.append({"row": row["row"], "pl_set": row["pl_set"], "pl_cer": float(np.mean(cers)),
                    "rel_greedy": s.get("greedy", {}).get("rel_vs_theta_prime"),
                    "rel_lm": s.get("LM", {}).get("rel_vs_theta_prime")})  # fmt: skip
    return sorted(out, key=lambda q: -q["pl_cer"])


def teacher_label(teachers: dict[str, int]) -> str:
    """The teachers of a PL set as the report names them: kind and name (a local folder by its last two path
    parts, a Hub id whole), with row counts when the set mixes several (the PL-quality sweep, the oracle)."""
    names = []
    for key, rows in teachers.items():
        kind, _, name = key.partition(":")
        if os.path.isabs(name.split(" (")[0]):
            path, _, rest = name.partition(" (")
            name = os.path.join(*path.rstrip(os.sep).split(os.sep)[-2:]) + (f" ({rest}" if rest else "")
        names.append(f"{kind} {name}" + (f" ({rows} rows)" if len(teachers) > 1 else ""))
    return ", ".join(names) or "–"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _flag(x) -> str:
    return "–" if x is None else ("yes" if x else "no")


def _wins(d: dict) -> str:
    if "beats_control_every_language" not in d:
        return "–"
    return _flag(d.get("beats_theta_prime_every_language") and d.get("beats_control_every_language"))


def render_markdown(manifest: dict, results: dict, summary: dict, pl_stats: dict, quality: list[dict]) -> str:
    low, high = manifest["low_resource"], manifest["high_resource"]
    labels = {row["row"]: row["label"] for row in manifest["rows"]}
    order = [row["row"] for row in manifest["rows"]]
    lines = [f"# mlpl recipe report: {manifest['name']}, seed {manifest['seed']}", "",
             f"Low-resource targets: {', '.join(low)}; high-resource: {', '.join(high) or 'none'}. "
             "CER/WER in %, test sets. Relative reductions are against theta' (supervised) decoded the same way; "
             "LM columns: every model with its own alpha/beta, tuned on dev. "
             "PL efficiency = (theta' - row) / (theta' - the row's oracle). \"Wins\": lower CER than theta' and "
             "than the row's own equal-update control in every language.", "",
             "## Ablation (low-resource mean)", "",
             "| model | CER greedy | rel. vs theta' | CER LM | rel. vs theta' | PL eff. greedy | PL eff. LM | "
             "wins in every language (greedy / LM) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in order:
        if row not in summary:
            continue
        g, lm = summary[row].get("greedy", {}), summary[row].get("LM", {})
        lines.append(f"| {labels[row]} | {_pct(g.get('low_cer'))} | {_pct(g.get('rel_vs_theta_prime'))} | "
                     f"{_pct(lm.get('low_cer'))} | {_pct(lm.get('rel_vs_theta_prime'))} | "
                     f"{_pct(g.get('pl_efficiency'))} | {_pct(lm.get('pl_efficiency'))} | {_wins(g)} / {_wins(lm)} |")
    system = summary.get("system_theta_prime_greedy_vs_stage4a_lm")
    if system:
        lines += ["", f"System comparison (mixes the LM's gain with the PLs', not a PL result): theta' greedy "
                      f"{_pct(system['from'])} -> A + LM {_pct(system['to'])} ({_pct(system['rel'])} % relative)."]
    languages = sorted({lang for per_lang in results.values() for lang in per_lang})
    lines += ["", "## Per language (CER % greedy / LM)", "",
              "| model | " + " | ".join(languages) + " | low mean | high mean |",
              "|---|" + "---|" * (len(languages) + 2)]
    for row in order:
        if row not in results:
            continue
        cells = []
        for lang in languages:
            v = results[row].get(lang)
            cells.append("–" if v is None else f"{_pct(v.get('greedy', {}).get('cer'))} / {_pct(v.get('LM', {}).get('cer'))}")
        s = summary.get(row, {})
        mean = lambda key: f"{_pct(s.get('greedy', {}).get(key))} / {_pct(s.get('LM', {}).get(key))}"  # noqa: E731
        lines.append(f"| {labels[row]} | " + " | ".join(cells) + f" | {mean('low_cer')} | {mean('high_cer')} |")
    if pl_stats:
        lines += ["", "## Pseudo-labels", "", f"Stage-3 teacher: {manifest.get('pl_teacher', 'theta_prime')}.", "",
                  "| PL set | language | teacher | recordings | hours in | hours kept | empty | failed | "
                  "PL CER vs truth |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for source, per_lang in pl_stats.items():
            for lang, st in per_lang.items():
                lines.append(f"| {source} | {lang} | {teacher_label(st.get('teachers') or {})} | {st['records']} | "
                             f"{st['hours_in']:.2f} | {st['hours_kept']:.2f} | {st['empty_outputs']} | {st['failures']} | "
                             f"{_pct(st.get('pl_cer'))} |")
    if len(quality) > 1:
        lines += ["", "## Gain against PL quality (rows trained on a PL set, by the set's mean PL CER)", "",
                  "| model | PL set | PL CER vs truth | rel. vs theta' greedy | rel. vs theta' LM |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for q in quality:
            lines.append(f"| {labels[q['row']]} | {q['pl_set']} | {_pct(q['pl_cer'])} | {_pct(q['rel_greedy'])} | "
                         f"{_pct(q['rel_lm'])} |")
    steps = manifest.get("steps") or []
    if steps:
        lines += ["", "## Step times (wall seconds; steps may run side by side)", "", render_step_times(steps)]
    lines += ["", "![CER per language per model](cer_per_language.png)", ""]
    return "\n".join(lines)


def plot_cer(results: dict, labels: dict[str, str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = sorted({lang for per_lang in results.values() for lang in per_lang})
    rows = [r for r in labels if r in results]
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


def write_report(manifest_path: str) -> dict:
    """Write report.md, report.json and cer_per_language.png next to the results manifest."""
    with open(manifest_path) as f:
        manifest = json.load(f)
    results = collect_results(manifest)
    summary = summarise(results, manifest)
    pl_stats = pl_statistics(manifest)
    quality = pl_quality_rows(manifest, summary, pl_stats)
    labels = {row["row"]: row["label"] for row in manifest["rows"]}
    report = {"name": manifest["name"], "seed": manifest["seed"], "rows": labels, "results": results,
              "summary": summary, "pl_stats": pl_stats, "pl_quality": quality, "steps": manifest.get("steps", [])}  # fmt: skip
    out = os.path.dirname(os.path.abspath(manifest_path))
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(render_markdown(manifest, results, summary, pl_stats, quality))
    if results:
        plot_cer(results, labels, os.path.join(out, "cer_per_language.png"))
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
    labels: dict[str, str] = {}
    for r in reports:
        labels.update(r["rows"])
    keys = ("low_cer", "rel_vs_theta_prime", "pl_efficiency")
    agg: dict = {}
    for row in labels:
        for decoder in ("greedy", "LM"):
            for key in keys:
                values = [r["summary"].get(row, {}).get(decoder, {}).get(key) for r in reports]
                values = [v for v in values if v is not None]
                if values:
                    agg.setdefault(row, {}).setdefault(decoder, {})[key] = {
                        "mean": float(np.mean(values)), "spread": float(np.std(values)), "n": len(values),
                        "per_seed": [float(v) for v in values]}
            wins = [r["summary"].get(row, {}).get(decoder, {}) for r in reports]
            if all("beats_control_every_language" in w for w in wins) and wins:
                agg.setdefault(row, {}).setdefault(decoder, {})["wins_every_seed"] = all(
                    w.get("beats_theta_prime_every_language") and w.get("beats_control_every_language")
                    for w in wins)
    lines = [f"# mlpl recipe: {reports[0]['name']}, {len(reports)} seed(s) ({', '.join(str(r['seed']) for r in reports)})",
             "", "Low-resource mean CER %, mean ± std over seeds (per seed in brackets); relative reduction vs theta' "
             "decoded the same way.",
             "", "| model | CER greedy | rel. | CER LM | rel. | PL eff. greedy | PL eff. LM | wins in every language & seed (greedy / LM) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def cell(row, decoder, key):
        v = agg.get(row, {}).get(decoder, {}).get(key)
        if v is None:
            return "–"
        if v["n"] == 1 and len(reports) > 1:  # a row only one seed ran has no spread to show
            return f"{100 * v['mean']:.1f} (1 seed)"
        seeds = f" ({', '.join(f'{100 * x:.1f}' for x in v['per_seed'])})" if v["n"] > 1 else ""
        return f"{100 * v['mean']:.1f} ± {100 * v['spread']:.1f}{seeds}"

    for row in labels:
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
