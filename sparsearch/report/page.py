"""The report's Markdown page, ``index.md``: readable on its own, with the figures beside it."""

from __future__ import annotations

import shlex
from typing import Any

from sparsearch.study.evaluators import evaluator_class
from sparsearch.study.settings import StudySettings, default_study_name, option_flags
from sparsearch.study.storage import default_storage_url
from sparsearch.study.tables import pareto_table, reference_lines

__all__ = ["markdown_page", "reproduce_commands"]

MAKE_STUDY = "sparsearch study --budget 50GFLOPs"  # what `make study` runs


def _factory(data: dict[str, Any]) -> str | None:
    """The model factory of a study on a user's network (a report reads the stored space: it must name it)."""
    return data.get("about", {}).get("target", {}).get("factory")


def reproduce_commands(data: dict[str, Any], settings: StudySettings, out: str) -> list[str]:
    """The ``sparsearch study`` command that makes this study (options that differ from the defaults
    only), the ``sparsearch validate`` command of its validation if it has one, and the
    ``sparsearch report`` command that draws it."""
    defaults = StudySettings(
        settings.space, "", "", settings.budget, dense_flops=settings.dense_flops, latency_table={}
    )
    cmd = ["sparsearch study", f"--budget {settings.budget.text}"]
    shipped = settings.space_source == f"search_spaces/{settings.space}.yaml"
    if not shipped:  # a space file of the user's: the path as it was given
        cmd.append(f"--space {shlex.quote(settings.space_source)}")
    elif settings.space != "default":
        cmd.append(f"--space {settings.space}")
    if settings.n_trials != evaluator_class(settings.eval).default_trials:
        cmd.append(f"--trials {settings.n_trials}")
    options = option_flags()  # each field that a study option sets, with its flag
    for key, flag in options.items():
        value = getattr(settings, key)
        if value != getattr(defaults, key):
            cmd.append(f"{flag} {shlex.quote(str(value))}")
    if settings.target_latency_batches != defaults.target_latency_batches:
        cmd += [f"--target-latency-batch {b}" for b in settings.target_latency_batches]
    name = data["study"]
    if name != default_study_name(settings.space, settings.budget):
        cmd.append(f"--study-name {name}")
    factory = _factory(data)
    report = f"sparsearch{f' --factory {factory}' if factory else ''} report {name} --out {out}"
    if data.get("storage") and data["storage"] != default_storage_url(name):
        report += f" --storage {data['storage']}"
    commands = [" ".join(cmd), report]
    fidelity = data.get("fidelity")
    if fidelity:
        s = fidelity["settings"]
        validate = f"sparsearch validate {name} --configs {s['configs']} --seeds {s['seeds']} --epochs {s['epochs']}"
        if s["tolerance"] != 0.10:
            validate += f" --tolerance {s['tolerance']}"
        if data.get("storage") and data["storage"] != default_storage_url(name):
            validate += f" --storage {data['storage']}"
        commands.insert(1, validate)
    return commands


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _machines(runs: list[dict[str, Any]]) -> str:
    seen = []
    for run in runs:
        m = run.get("machine")
        if m:
            text = f"{m['cpu']} ({m['cores']} cores, {m['threads']} threads, torch {m['torch']}, {m['device']})"
            if text not in seen:
                seen.append(text)
    return "; ".join(seen) if seen else "not recorded"


def _time_line(data: dict[str, Any]) -> str:
    timing, per_minute = data["time"], data["scoring"]["per_minute"]
    parts = [f"{_duration(timing['seconds'])} in {len(timing['runs'])} run(s) of `sparsearch study`"]
    parts.append(f"made on {_machines(timing['runs'])}")
    if timing["supernet_seconds"]:
        trained = ", ".join(f"{s:.0f} s (`{k}`)" for k, s in sorted(timing["supernet_seconds"].items()))
        parts.append(f"supernets trained in {trained}")
    parts.append(f"the trials' own time {_duration(timing['trial_seconds'])}")
    if per_minute:
        parts.append(f"{per_minute:.1f} configurations scored per minute")
    return "; ".join(parts) + f". Created {timing['created']}."


def _figure(f: dict[str, float] | None) -> str:
    return "unmeasured" if f is None else f"{f['value']:+.2f} [{f['low']:+.2f}, {f['high']:+.2f}]"


def _fidelity_section(fidelity: dict[str, Any] | None, study: str) -> list[str]:
    """Whether the study's scores rank configurations as stand-alone training does (``sparsearch validate``)."""
    lines = ["", "## Does the search rank configurations? (validation)", ""]
    if not fidelity:
        return [
            *lines,
            f"Not measured: run `sparsearch validate {study}` to train a sample of the configurations "
            "stand-alone and compare the rankings.",
        ]
    s, r, m = fidelity["settings"], fidelity["resolution"], fidelity["machine"]
    lines += [
        f"{fidelity['configurations']} configurations trained stand-alone with the proxy recipe for "
        f"{s['epochs']} epoch(s), {s['seeds']} seed(s) each, evaluated on the **test** split (which the "
        f"study never saw); chosen to span the FLOPs range, with the Pareto set, the references and "
        f"partners of near-equal cost (±{s['tolerance']:.0%} FLOPs). Made on {m['cpu']} ({m['cores']} cores, "
        f"torch {m['torch']}, {m['device']}), {fidelity['training_seconds']:.0f} s per training (median). "
        "Intervals: 95% bootstrap over configurations and seeds.",
        "",
        "![score vs stand-alone accuracy](fidelity.png)",
        "",
        "| figure | value [95% interval] |",
        "| --- | ---: |",
        f"| Kendall τ, study score vs stand-alone accuracy | {_figure(fidelity['kendall'])} |",
        f"| Spearman ρ, the same | {_figure(fidelity['spearman'])} |",
        f"| Kendall τ, FLOPs alone vs stand-alone accuracy | {_figure(fidelity['flops_kendall'])} |",
        f"| partial τ of score and accuracy given FLOPs | {_figure(fidelity['partial_kendall'])} |",
        f"| τ on the {fidelity['equal_cost_pairs']} equal-cost pairs: the score | "
        f"{_figure(fidelity['equal_cost_kendall'])} |",
        f"| τ on the same pairs: FLOPs | {_figure(fidelity['equal_cost_flops_kendall'])} |",
        f"| the score's advantage over FLOPs on those pairs | {_figure(fidelity['equal_cost_advantage'])} |",
        f"| regret: best stand-alone of the sample minus the recommended trial {fidelity['recommended']}'s | "
        f"{_figure(fidelity['regret'])} |",
    ]
    versus = fidelity.get("pick_vs_uniform")  # validations before it was measured lack it
    if versus and versus["difference"] is not None:
        lines.append(
            f"| the pick (trial {versus['pick']}) minus {versus['uniform_label']} at equal cost, stand-alone | "
            f"{_figure(versus['difference'])} |"
        )
    if r["median_standard_error"] is not None:
        lines += [
            "",
            f"The ground truth's own noise: median standard error of a configuration's mean "
            f"{r['median_standard_error']:.4f} (seed standard deviation {r['median_seed_std']:.4f}), against a "
            f"median difference of {r['median_pair_difference']:.4f} between two configurations."
            + (
                ""
                if r.get("minimum_detectable_difference") is None
                else f" Minimum detectable difference: {r['minimum_detectable_difference']:.4f}."
            ),
        ]
    return [*lines, "", f"**{fidelity['verdict']}**"]


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
        "- **Proxy** (what the accuracy is of): "
        + (
            f"the same family at width ×{proxy['width']:g}" + (f", blocks {proxy['depth']}" if proxy["depth"] else "")
            if not proxy["what"].startswith("your network")
            else "your network" + (" from its weights" if "fine-tuned" in proxy["what"] else " from scratch")
        )
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
        *pareto_table(data["pareto"]),
        "",
        "## References",
        "",
        *reference_lines(data["references"]),
    ]
    lines += _fidelity_section(data.get("fidelity"), data["study"])
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
