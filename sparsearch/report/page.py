"""The report's Markdown page, ``index.md``: readable on its own, with the figures beside it."""

from __future__ import annotations

from typing import Any

from sparsearch.cost import format_flops
from sparsearch.study.noise import describe_comparison
from sparsearch.study.settings import DEFAULT_TRIALS, StudySettings, default_study_name
from sparsearch.study.structure import describe

__all__ = ["markdown_page", "reproduce_commands"]

MAKE_STUDY = "sparsearch study --budget 50GFLOPs"  # what `make study` runs


def reproduce_commands(data: dict[str, Any], settings: StudySettings, out: str) -> list[str]:
    """The ``sparsearch study`` command that makes this study (options that differ from the defaults
    only) and the ``sparsearch report`` command that draws it."""
    defaults = StudySettings(settings.space, "", "", settings.budget_flops)
    cmd = ["sparsearch study", f"--budget {data['budget'].replace(' ', '')}"]
    if settings.space != "default":
        cmd.append(f"--space {settings.space}")
    if settings.n_trials != DEFAULT_TRIALS[settings.eval]:
        cmd.append(f"--trials {settings.n_trials}")
    options = {
        "eval": "--eval",
        "sampler": "--sampler",
        "seed": "--seed",
        "epochs": "--epochs",
        "data": "--data",
        "lr": "--lr",
        "supernets": "--supernets",
        "score_examples": "--score-examples",
        "finetune_steps": "--finetune-steps",
        "finetune_top": "--finetune-top",
    }
    for key, flag in options.items():
        value = getattr(settings, key)
        if value != getattr(defaults, key):
            cmd.append(f"{flag} {value}")
    name = data["study"]
    if name != default_study_name(settings.space, settings.budget_flops):
        cmd.append(f"--study-name {name}")
    report = f"sparsearch report {name} --out {out}"
    if data.get("storage") and data["storage"] != f"sqlite:///studies/{name}.db":
        report += f" --storage {data['storage']}"
    return [" ".join(cmd), report]


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _time_line(data: dict[str, Any]) -> str:
    timing, per_minute = data["time"], data["scoring"]["per_minute"]
    parts = [f"{_duration(timing['seconds'])} in {len(timing['runs'])} run(s) of `sparsearch study`"]
    if timing["supernet_seconds"]:
        trained = ", ".join(f"{s:.0f} s (`{k}`)" for k, s in sorted(timing["supernet_seconds"].items()))
        parts.append(f"supernets trained in {trained}")
    parts.append(f"the trials' own time {_duration(timing['trial_seconds'])}")
    if per_minute:
        parts.append(f"{per_minute:.1f} configurations scored per minute")
    return "; ".join(parts) + f". Created {timing['created']}."


def markdown_page(data: dict[str, Any], commands: list[str]) -> str:
    about, t = data["about"], data["trials"]
    target, proxy = about["target"], about["proxy"]
    splits = ", ".join(f"`{s}`" for s in about["accuracy"]["splits"]) or "`val`"
    examples = ", ".join(str(e) for e in about["accuracy"]["examples"])
    lines = [
        f"# Study `{data['study']}`",
        "",
        f"Space `{data['space']}` ({about['space_description']}), searched with the `{data['sampler']}` sampler "
        f"and `{data['eval']}` evaluation, seed {about['settings']['seed']}, under a budget of "
        f"**{data['budget']} per example**.",
        "",
        f"- **Target** (what the FLOPs are of): `{target['model']}` at {target['input_size']}×"
        f"{target['input_size']}, executed FLOPs per example, counted analytically. {about['units']['flops']}; "
        "executed: only the k selected paths of a top-k block count (every GateConnect branch counts until "
        "`sparsearch prune` removes the dead ones).",
        f"- **Proxy** (what the accuracy is of): the same family at width ×{proxy['width']:g}"
        + (f", blocks {proxy['depth']}" if proxy["depth"] else "")
        + f", {proxy['input_size']}×{proxy['input_size']} input, trained {proxy['epochs']} epoch(s) on "
        f"`{proxy['dataset']}`. Accuracy on the validation split {splits} ({examples} examples); the test split "
        "is never used by a study."
        + (f" Fine-tuned accuracy: {about['accuracy']['finetuned']}." if about["accuracy"]["finetuned"] else ""),
        f"- **Size**: {t['requested']} trials requested; {t['complete']} complete ({t['feasible']} within the "
        f"budget, {t['infeasible']} over it and never trained), {t['pruned']} stopped early, {t['fail']} failed.",
        f"- **Time**: {_time_line(data)}",
        f"- **Hypervolume** {data['hypervolume']:.4f}: the share of the box accuracy × (1 − FLOPs / budget) that "
        "the feasible trials dominate (0: nothing, 1: full accuracy at no cost).",
        "",
        "Reproduce" + (" (`make study` runs the first command):" if commands[0] == MAKE_STUDY else ":"),
        "",
        "```",
        *commands,
        "```",
        "",
        "## Pareto front",
        "",
        "![Pareto front](pareto.png)",
        "",
        "Dots: searched configurations; diamonds: the uniform references (k, fan-in K = C, C/2, C/4); "
        "circles joined by the step line: the Pareto front; stars: accuracies after fine-tuning; crosses "
        "along the bottom: configurations over the budget (dashed line), which were never trained. "
        "[Interactive version](report.html) (plotly; hover for each trial's configuration).",
        "",
        "## Pareto trials",
        "",
        "| trial | reference | configuration | target FLOPs | target MACs | target params "
        "| proxy accuracy | fine-tuned | latency (ms) |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in data["pareto"]:
        target_cost = row["target"]
        tuned = row.get("finetuned", {}).get("accuracy")
        latency = row.get("latency_ms")
        shown = "" if latency is None else f"{latency:.1f} (batch {row.get('latency_batch')})"
        lines.append(
            f"| {row['number']} | {row['reference'] or ''} | {describe(row['values'])} "
            f"| {format_flops(target_cost['executed_flops'])} | {format_flops(target_cost['executed_flops'], 'MACs')} "
            f"| {target_cost['params'] / 1e6:.2f} M | {_pct(row['accuracy'])} | {_pct(tuned)} "
            f"| {shown} |"
        )
    lines += ["", "## References", ""]
    for ref in data["references"]:
        if not ref["feasible"]:
            lines.append(
                f"- {ref['reference']}: {format_flops(ref['target']['executed_flops'])}, over the budget (not trained)."
            )
            continue
        text = (
            f"- {ref['reference']} (trial {ref['number']}, {format_flops(ref['flops'])}): accuracy "
            f"{ref['accuracy']:.4f}; of the searched trials at equal or fewer FLOPs, {describe_comparison(ref)}"
        )
        if "finetuned_accuracy" in ref:
            text += (
                f". Fine-tuned {ref['finetuned_accuracy']:.4f}; of the fine-tuned Pareto configurations, "
                f"{describe_comparison(ref, 'finetuned_')}"
            )
        lines.append(text + ".")
    lines += [
        "",
        "## Hypervolume over trials",
        "",
        "![hypervolume over trials](hypervolume.png)",
        "",
        "## Parameter importances",
        "",
    ]
    imp = data["importances"]
    if imp["accuracy"]["values"] or imp["flops"]["values"]:
        lines += [
            "Optuna's default evaluator (PED-ANOVA): for proxy accuracy over the "
            f"{imp['accuracy']['trials']} feasible trials, for target FLOPs over all {imp['flops']['trials']} "
            "completed trials. Normalised to sum to 1 per objective.",
            "",
            "![parameter importances](importances.png)",
            "",
            "| parameter | for accuracy | for FLOPs |",
            "| --- | ---: | ---: |",
        ]
        names = list(dict.fromkeys([*imp["accuracy"]["values"], *imp["flops"]["values"]]))
        for name in names:
            a, f = imp["accuracy"]["values"].get(name), imp["flops"]["values"].get(name)
            lines.append(f"| `{name}` | {'' if a is None else f'{a:.3f}'} | {'' if f is None else f'{f:.3f}'} |")
    else:
        lines.append(f"Not computed: {imp['accuracy'].get('note', 'too few trials')}.")
    conf = data["configurations"]
    if conf["rows"] and conf["columns"]:
        lines += [
            "",
            "## Configurations of the Pareto trials",
            "",
            "Each cell is a layer's value (k, experts or fan-in K) over the largest the space allows, with the "
            "value written in it.",
            "",
            "![Pareto configurations](configurations.png)",
        ]
    lines += [
        "",
        "Numbers: [report.json](report.json) (`sparsearch report --json` prints the same).",
        "",
    ]
    return "\n".join(lines)
