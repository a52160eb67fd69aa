"""The study's report: one table per question (mean +/- std over seeds and the paired difference
to the reference with a 95% t-interval), the claims' verdicts, figures, commands and versions.

Written under the study directory: report.md, tables/{runs,summary,claims}.csv, figures/*.png.
"""

import csv
import json
import math
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from matplotlib.figure import Figure
from omegaconf import OmegaConf

from lfm.project import CONF_DIR
from lfm.study.spec import ATTACK, TRAIN, TUNED, Step, StudySpec, study_steps, tuning_steps
from lfm.study.stats import Difference, paired_difference, seeds_needed, summarize
from lfm.study.tuning import SCORE, Choice, choose_strengths, same_as_paper

METRICS = ("mAP", "rank1")
ALL_ATTACKS = "mean over attacks"  # the robustness setting the claims use: mAP averaged over every attack and eps
CONTROL = "noise"  # the random-noise control: reported beside the attacks, not averaged with them
PRECISION = 0.03  # the half-width of the 95% interval each claim aims for (mAP)


def attack_label(row: dict) -> str:
    return f"{row['method']}/{row['loss']} eps{row['eps']:g}"


def finished_steps(steps: list[Step], runs_dir: Path, kind: str | None = None) -> list[Step]:
    """The steps whose run wrote its metrics.json (only those of one kind when kind is given)."""
    return [
        step
        for step in steps
        if (kind is None or step.kind == kind) and (runs_dir / step.key / "metrics.json").is_file()
    ]


def collect_results(steps: list[Step], runs_dir: Path) -> list[dict]:
    """One row per (question, setting, method, seed, metric) from the finished steps' files."""
    rows = []

    def add(question: str, setting: str, step, values: dict) -> None:
        for metric in METRICS:
            rows.append(
                {
                    "question": question,
                    "setting": setting,
                    "method": step.method,
                    "seed": step.seed,
                    "metric": metric,
                    "value": values[metric],
                }
            )

    for step in finished_steps(steps, runs_dir):
        run_dir = runs_dir / step.key
        if step.kind == ATTACK:
            table = json.loads((run_dir / "robustness.json").read_text())["rows"]
            attacked = [row for row in table if row["method"] not in ("clean", CONTROL) and row["eps"] > 0]
            for row in attacked:
                add("robustness", f"{step.domain}: {attack_label(row)}", step, row)
            add(
                "robustness",
                f"{step.domain}: {ALL_ATTACKS}",
                step,
                {metric: sum(row[metric] for row in attacked) / len(attacked) for metric in METRICS},
            )
            continue
        metrics = json.loads((run_dir / "metrics.json").read_text())
        values = {metric: metrics[f"test/{metric}"] for metric in METRICS}
        if step.kind == TRAIN:
            add("in_domain", step.domain, step, values)
        else:
            add("cross_domain", f"{step.domain} -> {step.target}", step, values)
    return rows


def by_seed(rows: list[dict]) -> dict[tuple, dict[int, float]]:
    """(question, setting, method, metric) -> {seed: value}."""
    table: dict[tuple, dict[int, float]] = defaultdict(dict)
    for row in rows:
        table[(row["question"], row["setting"], row["method"], row["metric"])][row["seed"]] = row["value"]
    return table


def summary_rows(spec: StudySpec, rows: list[dict]) -> list[dict]:
    """Per (question, setting, method, metric): mean, std, seeds, and the difference to the baseline."""
    values = by_seed(rows)
    summary = []
    for (question, setting, method, metric), seeds in values.items():
        stats = summarize(list(seeds.values()))
        difference = paired_difference(seeds, values.get((question, setting, spec.baseline, metric), {}))
        summary.append(
            {
                "question": question,
                "setting": setting,
                "method": method,
                "metric": metric,
                "mean": stats.mean,
                "std": stats.std,
                "seeds": stats.n,
                "diff_to_baseline": difference.mean,
                "diff_low": difference.low,
                "diff_high": difference.high,
            }
        )
    return summary


def claim_rows(spec: StudySpec, rows: list[dict], same: frozenset[str] = frozenset()) -> list[dict]:
    """Each claim's verdict on mAP, for every setting of its question (robustness: the mean over attacks).
    A tuned method in `same` (its own strength won the tuning) is read from the method's runs."""
    values = by_seed(rows)
    verdicts = []
    for claim in spec.claims:
        method, reference = (
            name.removesuffix(TUNED) if name in same else name for name in (claim.method, claim.reference)
        )
        settings = sorted(
            {
                setting
                for question, setting, _, _ in values
                if question == claim.question and (claim.question != "robustness" or setting.endswith(ALL_ATTACKS))
            }
        )
        for setting in settings:
            difference = paired_difference(
                values.get((claim.question, setting, method, "mAP"), {}),
                values.get((claim.question, setting, reference, "mAP"), {}),
            )
            if not trained_on(spec, setting, {method, reference}):
                continue
            verdicts.append(
                {
                    "claim": claim.text,
                    "question": claim.question,
                    "setting": setting,
                    "method": method,
                    "reference": reference,
                    "metric": "mAP",
                    "difference": difference.mean,
                    "low": difference.low,
                    "high": difference.high,
                    "half_width": difference.half_width,
                    "detectable": difference.detectable,
                    "seeds": difference.n,
                    "seeds_for_precision": seeds_needed(difference, PRECISION),
                    "verdict": difference.verdict,
                }
            )
    return verdicts


def trained_on(spec: StudySpec, setting: str, methods: set[str]) -> bool:
    """Whether the study trains (and, for a robustness setting, attacks) all `methods` on the setting's domain."""
    domain = next(d for d in spec.domains if setting.split(" ")[0].rstrip(":") == d.train)
    return methods <= set(domain.attacked if setting.endswith(ALL_ATTACKS) else domain.methods)


def plain_answer(claims: list[dict]) -> list[str]:
    """One sentence per verdict: which claims held on this data and which did not."""
    sentences = {
        "held": "Held on this data",
        "contradicted": "Contradicted (the reference did better)",
        "not shown": "Not shown (the difference is within seed-to-seed noise)",
        "untested (one seed)": "Untested (one seed gives no interval)",
    }
    lines = []
    for verdict, sentence in sentences.items():
        chosen = [
            f"{c['claim']} ({c['setting']}{detectable_note(c) if verdict == 'not shown' else ''})"
            for c in claims
            if c["verdict"] == verdict
        ]
        if chosen:
            lines.append(f"- {sentence}: " + "; ".join(chosen) + ".")
    return lines


def detectable_note(claim: dict) -> str:
    """', any effect is smaller than X' for a claim not shown: what the seeds could have detected."""
    detectable = float(claim["detectable"])
    return (
        "" if math.isnan(detectable) else f"; a true difference of ±{detectable:.4f} would be detected 80% of the time"
    )


def mean_std(mean: float, std: float) -> str:
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def signed_interval(difference: Difference) -> str:
    if math.isnan(difference.mean):
        return "–"
    if math.isnan(difference.low):
        return f"{difference.mean:+.4f}"
    return f"{difference.mean:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}]"


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(line) + " |" for line in lines]
    )


def comparison_table(spec: StudySpec, summary: list[dict], question: str, setting: str) -> str:
    """Methods as rows: each metric's mean ± std and its difference to the baseline."""
    cells = {
        (row["method"], row["metric"]): row
        for row in summary
        if row["question"] == question and row["setting"] == setting
    }
    header = ["method", "seeds", *METRICS, *(f"Δ{metric} vs {spec.baseline} (95% CI)" for metric in METRICS)]
    lines = []
    for method in spec.methods:
        if (method, METRICS[0]) not in cells:
            continue
        rows = [cells[(method, metric)] for metric in METRICS]
        differences = [
            "(reference)"
            if method == spec.baseline
            else signed_interval(Difference(r["diff_to_baseline"], r["diff_low"], r["diff_high"], r["seeds"]))
            for r in rows
        ]
        lines.append([method, str(rows[0]["seeds"]), *(mean_std(r["mean"], r["std"]) for r in rows), *differences])
    return markdown_table(header, lines)


def settings_of(summary: list[dict], question: str) -> list[str]:
    return sorted({row["setting"] for row in summary if row["question"] == question})


def plot_bars(spec: StudySpec, summary: list[dict], question: str, path: Path) -> None:
    """Bars of each metric per method (mean, std error bars), one panel per setting and metric."""
    settings = settings_of(summary, question)
    figure = Figure(figsize=(5 * len(METRICS), 3.2 * len(settings)))
    axes = figure.subplots(len(settings), len(METRICS), squeeze=False)
    for axes_row, setting in zip(axes, settings):
        for axis, metric in zip(axes_row, METRICS):
            cells = {
                row["method"]: row
                for row in summary
                if row["question"] == question and row["setting"] == setting and row["metric"] == metric
            }
            methods = [method for method in spec.methods if method in cells]
            means = [cells[m]["mean"] for m in methods]
            errors = [0.0 if math.isnan(cells[m]["std"]) else cells[m]["std"] for m in methods]
            colours = ["0.55" if m == spec.baseline else f"C{i}" for i, m in enumerate(methods)]
            axis.bar(range(len(methods)), means, yerr=errors, capsize=3, color=colours)
            axis.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
            axis.set_ylabel(metric)
            axis.set_title(setting, fontsize=9)
            axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_attack_curves(spec: StudySpec, steps: list[Step], runs_dir: Path, path: Path) -> bool:
    """mAP against eps per attack, one line per method (mean over seeds, std band); False if no attack ran."""
    curves: dict[tuple, dict[str, dict[float, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for step in finished_steps(steps, runs_dir, ATTACK):
        table = json.loads((runs_dir / step.key / "robustness.json").read_text())["rows"]
        clean = next(row for row in table if row["method"] == "clean")
        for row in table:
            if row["method"] != "clean":
                points = curves[(step.domain, row["method"], row["loss"])][step.method]
                points[row["eps"]].append(row["mAP"])
                if 0.0 not in points or len(points[0.0]) < len(points[row["eps"]]):
                    points[0.0].append(clean["mAP"])
    if not curves:
        return False
    figure = Figure(figsize=(4.5 * len(curves), 3.6))
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    for axis, ((domain, method, loss), per_method) in zip(axes, sorted(curves.items())):
        for index, name in enumerate(m for m in spec.methods if m in per_method):
            eps = sorted(per_method[name])
            stats = [summarize(per_method[name][e]) for e in eps]
            means = [s.mean for s in stats]
            spread = [0.0 if math.isnan(s.std) else s.std for s in stats]
            colour = "0.4" if name == spec.baseline else f"C{index}"
            axis.plot(eps, means, marker="o", label=name, color=colour)
            axis.fill_between(
                eps,
                [m - s for m, s in zip(means, spread)],
                [m + s for m, s in zip(means, spread)],
                color=colour,
                alpha=0.15,
            )
        axis.set_title(f"{domain}: {method} / {loss}", fontsize=9)
        axis.set_xlabel("eps (x 1/255)")
        axis.set_ylabel("mAP")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return True


def tuning_lines(spec: StudySpec, choices: dict[str, Choice]) -> list[str]:
    """The tuning table (each candidate's validation mAP) and which strength each method takes."""
    if not choices:
        return []
    lines = [
        f"## Tuning (validation identities of {spec.domains[0].train}, seed {spec.tuning.seed})",
        "",
        "Each tuned method trains once per candidate strength with the same budget "
        f"(`{' '.join(spec.tuning.train_overrides)}`) and is scored by its best validation mAP; the test split "
        f"is never used. The winner is the method `<method>{TUNED}` below; when the method's own (paper) strength "
        "wins, the tuned comparison is the paper comparison.",
        "",
    ]
    table = []
    for method, choice in choices.items():
        for index, (overrides, score) in enumerate(zip(choice.candidates, choice.scores)):
            strength = " ".join(overrides) if index else "own (paper) strength"
            won = "**chosen**" if choice.complete and index == choice.winner else ""
            table.append(
                [method, f"`{strength}`" if index else strength, "–" if score is None else f"{score:.4f}", won]
            )
    lines += [markdown_table(["method", "strength", SCORE, ""], table), ""]
    for method, choice in choices.items():
        if not choice.complete:
            lines.append(f"- {method}: tuning not finished.")
        elif choice.winner == 0:
            lines.append(f"- {method}: its own (paper) strength won; `{method}{TUNED}` is the same runs as `{method}`.")
        else:
            lines.append(f"- {method}: `{' '.join(choice.overrides)}` won; `{method}{TUNED}` trains with it.")
    return [*lines, ""]


def read_curve(csv_path: Path, column: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one logged column of a run's csv/metrics.csv (the mean per epoch)."""
    per_epoch: dict[int, list[float]] = defaultdict(list)
    with csv_path.open() as handle:
        for row in csv.DictReader(handle):
            if row.get(column) and row.get("epoch"):
                per_epoch[int(row["epoch"])].append(float(row[column]))
    epochs = sorted(per_epoch)
    return epochs, [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs]


def plot_learning_curves(spec: StudySpec, runs_dir: Path, path: Path) -> bool:
    """Validation mAP and training loss per epoch of one seed (the first) per method and domain."""
    columns = ("val/mAP", "train/loss")
    figure = Figure(figsize=(5 * len(columns), 3.4 * len(spec.domains)))
    axes = figure.subplots(len(spec.domains), len(columns), squeeze=False)
    drawn = False
    for axes_row, domain in zip(axes, spec.domains):
        for index, method in enumerate(domain.methods):
            seed = spec.method_seeds[method][0]
            csv_path = runs_dir / domain.train / method / f"seed{seed}" / TRAIN / "csv" / "metrics.csv"
            if not csv_path.is_file():
                continue
            for axis, column in zip(axes_row, columns):
                epochs, values = read_curve(csv_path, column)
                colour = "0.4" if method == spec.baseline else f"C{index}"
                axis.plot(epochs, values, marker=".", label=method, color=colour)
                axis.set_title(f"{domain.train}: {column} (seed {seed})", fontsize=9)
                axis.set_xlabel("epoch")
                axis.grid(alpha=0.3)
                drawn = True
        if axes_row[0].lines:
            axes_row[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return drawn


def attack_sanity(spec: StudySpec, steps: list[Step], runs_dir: Path) -> list[str]:
    """Per domain: how many attacked mAPs fall below their run's clean mAP (naming the attacks that did not
    always), and what the noise control costs next to the attacks at the largest eps."""
    lines = []
    for domain in spec.domains:
        not_below: dict[str, int] = defaultdict(int)
        below, total, drops = 0, 0, defaultdict(lambda: defaultdict(list))
        for step in finished_steps(steps, runs_dir, ATTACK):
            if step.domain != domain.train:
                continue
            table = json.loads((runs_dir / step.key / "robustness.json").read_text())["rows"]
            clean = next(row["mAP"] for row in table if row["method"] == "clean")
            for row in table:
                if row["method"] == "clean" or row["eps"] == 0:
                    continue
                kind = CONTROL if row["method"] == CONTROL else "attacks"
                drops[kind][row["eps"]].append(clean - row["mAP"])
                if kind == "attacks":
                    total += 1
                    below += row["mAP"] < clean
                    if row["mAP"] >= clean:
                        not_below[attack_label(row)] += 1
        if not total:
            continue
        eps = max(drops["attacks"])
        noise = drops[CONTROL].get(eps)
        attacked = sum(drops["attacks"][eps]) / len(drops["attacks"][eps])
        control = (
            f"; the noise control at eps {eps:g} lowers mAP by {sum(noise) / len(noise):.4f} on average"
            if noise
            else ""
        )
        exceptions = "; ".join(f"{label} in {count} run(s)" for label, count in sorted(not_below.items()))
        lines.append(
            f"- {domain.train}: {below} of {total} attacked mAPs are below their run's clean mAP"
            + (f" (not below: {exceptions})" if exceptions else "")
            + f"{control}, the attacks at eps {eps:g} by {attacked:.4f}."
        )
    return lines


def precision_lines(claims: list[dict]) -> list[str]:
    """The claims whose interval is wider than the target, and how many seeds would reach it."""
    measured = [c for c in claims if not math.isnan(c["half_width"])]
    wide = [c for c in measured if c["half_width"] > PRECISION]
    if not measured:
        return []
    if not wide:
        return [f"Every claim's 95% interval is within ±{PRECISION} mAP.", ""]
    lines = [f"Claims whose 95% interval is wider than ±{PRECISION} mAP, and what would narrow it:", ""]
    lines += [
        f"- {c['claim']} ({c['setting']}): ±{c['half_width']:.4f} with {c['seeds']} seeds; "
        f"about {c['seeds_for_precision']:.0f} seeds at the measured spread."
        for c in wide
    ]
    return [*lines, ""]


def wall_minutes(records: list[dict]) -> float:
    """Minutes from the first step's start to the last step's end (nan when none ran)."""
    times = [(r["started"], r["ended"]) for r in records if r.get("started") and r.get("ended")]
    if not times:
        return math.nan
    start, end = min(t[0] for t in times), max(t[1] for t in times)
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def recipe_lines(spec: StudySpec, steps: list[Step], runs_dir: Path) -> list[str]:
    """What the models were: the baseline's resolved training config (first finished seed)."""
    for step in steps:
        config_path = runs_dir / step.key / "config.yaml"
        if step.kind == TRAIN and step.method == spec.baseline and config_path.is_file():
            config = OmegaConf.load(config_path)
            size = list(config.data.image_size)
            return [
                f"- Backbone {config.model.backbone} (pretrained: {config.model.pretrained}), "
                f"input {size[0]}x{size[1]}, {config.trainer.max_epochs} epochs, batch {config.data.batch_size}, "
                f"{config.model.optimizer.name} lr {config.model.optimizer.lr}, {config.model.scheduler.name} schedule, "
                f"precision {config.trainer.precision}."
            ]
    return []


def provenance(steps: list[Step], runs_dir: Path) -> dict:
    """The run.json (seed, git commit, versions) of the first step that wrote one."""
    for step in steps:
        info_path = runs_dir / step.key / "run.json"
        if info_path.is_file():
            return json.loads(info_path.read_text())
    return {}


def study_argument(spec: StudySpec) -> str:
    """How src/study.py names the study: its name when it is conf/study/<name>.yaml, else its path."""
    path = Path(spec.path).resolve()
    return spec.name if path == (CONF_DIR / "study" / f"{spec.name}.yaml").resolve() else str(spec.path)


def executor_options(records: list[dict]) -> str:
    """--threads-per-job N when every step ran on this machine with N threads: a CPU run's numbers depend on
    its thread count (not on how many steps run at once, --jobs)."""
    threads = {record.get("where", {}).get("threads") for record in records if record.get("where")}
    return f" --threads-per-job {threads.pop()}" if len(threads) == 1 and None not in threads else ""


def write_report(spec: StudySpec, out_dir: Path, state: dict) -> Path:
    """Write report.md, the CSV tables and the figures from every finished step; return report.md's path."""
    runs_dir = out_dir / "runs"
    choices = choose_strengths(spec, runs_dir)
    same = same_as_paper(choices)
    comparison = study_steps(spec, same)
    rows = collect_results(comparison, runs_dir)
    summary = summary_rows(spec, rows)
    claims = claim_rows(spec, rows, same)
    write_csv(out_dir / "tables" / "runs.csv", rows)
    write_csv(out_dir / "tables" / "summary.csv", summary)
    write_csv(out_dir / "tables" / "claims.csv", claims)
    figures = out_dir / "figures"
    figures.mkdir(exist_ok=True)
    steps = [*tuning_steps(spec), *comparison]
    records = [state["steps"].get(step.key, {}) for step in steps]
    finished = sum(
        record.get("status") == "finished" or (runs_dir / step.key / "metrics.json").is_file()
        for step, record in zip(steps, records)
    )
    minutes = sum(record.get("seconds", 0) for record in records) / 60
    lines = [f"# Study `{spec.name}`: do the paper's claims hold?", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    lines += [
        f"{finished} of {len(steps)} steps finished in {wall_minutes(records):.0f} min "
        f"({minutes:.0f} min of step time recorded). "
        f"Seeds {list(spec.seeds)} (per method: see Setup); differences are paired by seed, with a 95% t-interval "
        "over seeds. "
        "A claim *held* when the whole interval is above zero, is *contradicted* when it is below, "
        "and is *not shown* when the interval contains zero. *Detectable* is the smallest true "
        "difference a two-sided paired t-test on these seeds finds 80% of the time, from the measured "
        "spread of the per-seed differences: a claim not shown means any effect is likely smaller than that.",
        "",
    ]
    lines += ["## Verdicts", ""]
    lines += [
        markdown_table(
            [
                "claim",
                "setting",
                "method − reference",
                "ΔmAP (95% CI)",
                f"CI half-width (target ±{PRECISION})",
                "detectable (80% power)",
                "seeds",
                "verdict",
            ],
            [
                [
                    c["claim"],
                    c["setting"],
                    f"{c['method']} − {c['reference']}",
                    signed_interval(Difference(c["difference"], c["low"], c["high"], c["seeds"])),
                    "–" if math.isnan(c["half_width"]) else f"±{c['half_width']:.4f}",
                    "–" if math.isnan(c["detectable"]) else f"±{c['detectable']:.4f}",
                    str(c["seeds"]),
                    f"**{c['verdict']}**",
                ]
                for c in claims
            ],
        ),
        "",
    ]
    lines += [*plain_answer(claims), "", *precision_lines(claims)]
    lines += tuning_lines(spec, choices)
    if plot_learning_curves(spec, runs_dir, figures / "learning_curves.png"):
        lines += [
            "## Learning curves (one seed per method)",
            "",
            "Validation mAP and training loss per epoch; the best validation checkpoint is the one tested.",
            "",
            "![learning curves](figures/learning_curves.png)",
            "",
        ]
    sections = [
        ("in_domain", "In-domain re-ID (test split of the training dataset)"),
        ("cross_domain", "Cross-domain re-ID (trained on one dataset, tested on another)"),
    ]
    for question, title in sections:
        lines += [f"## {title}", ""]
        for setting in settings_of(summary, question):
            lines += [f"### {setting}", "", comparison_table(spec, summary, question, setting), ""]
        if settings_of(summary, question):
            plot_bars(spec, summary, question, figures / f"{question}.png")
            lines += [f"![{question}](figures/{question}.png)", ""]
    lines += ["## Under white-box attack (attacked queries, clean gallery; eps in 1/255)", ""]
    sanity = attack_sanity(spec, comparison, runs_dir)
    if sanity:
        lines += ["Sanity check (clean against attacked):", "", *sanity, ""]
    for setting in settings_of(summary, "robustness"):
        lines += [f"### {setting}", "", comparison_table(spec, summary, "robustness", setting), ""]
    if plot_attack_curves(spec, comparison, runs_dir, figures / "robustness.png"):
        lines += ["![robustness](figures/robustness.png)", ""]
    lines += ["## Setup", "", *recipe_lines(spec, comparison, runs_dir)]
    for method in spec.methods:
        tuned = choices.get(method.removesuffix(TUNED)) if method.endswith(TUNED) else None
        overrides = [*spec.methods[method], *(tuned.overrides if tuned and tuned.complete else ())]
        seeds = list(spec.method_seeds[method])
        pending = " + the strength its tuning chooses" if tuned and not tuned.complete else ""
        lines.append(f"- `{method}` (seeds {seeds}): `{' '.join(overrides)}`{pending}")
    lines += [
        f"- Every training run: `{' '.join(spec.train_overrides)}`" if spec.train_overrides else "",
        f"- Attack evaluation: `{' '.join(spec.attack_overrides)}`" if spec.attack_overrides else "",
        "",
    ]
    info = provenance(comparison, runs_dir)
    lines += [
        "## Reproduce",
        "",
        "```",
        f"python src/study.py {study_argument(spec)}{executor_options(records)}",
        "```",
        "",
        "A CPU step's numbers depend on its seed and thread count, not on how many steps run at once "
        "(`--jobs N`). Each step's exact command is in `study_state.json`; each run directory holds its resolved "
        "config.yaml, run.json (seed, git commit, versions) and metrics.json. Tables: `tables/summary.csv`, "
        "`tables/claims.csv`, `tables/runs.csv`.",
        "",
    ]
    if info:
        versions = ", ".join(f"{name} {value}" for name, value in info.get("versions", {}).items())
        lines += [f"Git commit {info.get('git_commit')}; {versions}.", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
