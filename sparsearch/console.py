"""What the command line prints: rich tables for people, progress bars on a terminal.

The library never prints; the CLI hands results to these functions.
"""

from __future__ import annotations

import statistics
import sys

import typer


def print_flops(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from sparsearch.cost import format_flops

    table = Table(title=f"space {result['space']}: cost per example at {result['input_size']}x{result['input_size']}")
    for column in ("layer", "kind", "dense", "executed", "executed MACs", "params"):
        table.add_column(column, justify="left" if column in ("layer", "kind") else "right")
    for layer in result["layers"]:
        table.add_row(
            layer["name"],
            layer["kind"],
            format_flops(layer["dense_flops"]),
            format_flops(layer["executed_flops"]),
            format_flops(layer["executed_flops"], "MACs"),
            f"{layer['params']:,}",
        )
    total = result["total"]
    table.add_row(
        "total",
        "",
        format_flops(total["dense_flops"]),
        format_flops(total["executed_flops"]),
        format_flops(total["executed_flops"], "MACs"),
        f"{total['params']:,}",
        style="bold",
    )
    console = Console()
    console.print(table)
    if "budget" in result:
        b = result["budget"]
        verdict = "within" if b["within"] else "OVER"
        console.print(
            f"budget {format_flops(b['flops'])}: executed {format_flops(total['executed_flops'])} is {verdict} "
            f"budget by {format_flops(abs(b['margin_flops']))}"
        )
    if "verify" in result:
        v = result["verify"]
        console.print("verify, FLOPs of one example:")
        for label, key in (
            ("analytic", "analytic_flops"),
            ("FlopCounterMode", "flop_counter_flops"),
            ("thop (2 x MACs)", "thop_flops"),
        ):
            console.print(f"  {label:<16} {v[key]:>20,}")


def print_convert(result: dict) -> None:
    from sparsearch.cost import format_flops

    for block in result["blocks"]:
        diff = "" if block["max_abs_diff"] is None else f" (float64 max |difference| {block['max_abs_diff']:.2g})"
        typer.echo(f"{block['module']}: {block['detail']}{diff}")
    typer.echo(
        f"{result['converted']} grouped bottleneck(s) converted, "
        f"{result['left']} grouped convolution(s) left as they are"
    )
    for routing, diff in result["routings"].items():
        typer.echo(
            f"with a {routing} gate on every block (k = C): model outputs differ by at most {diff:.2g} (float64)"
        )
    cost = result["cost"]
    typer.echo(
        f"at {result['input_size']}x{result['input_size']}: {format_flops(cost['executed_flops'])} per example, "
        f"{cost['params']:,} parameters"
    )


def print_eval(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from sparsearch.cost import format_flops

    console = Console()
    title = f"{result['checkpoint']} on {result['data']} ({result['split']}, {result['examples']} examples)"
    table = Table(title=title)
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in result["per_class"].items():
        table.add_row(
            name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1-score']:.3f}", str(row["support"])
        )
    console.print(table)
    if result.get("per_group"):
        groups = Table(title="accuracy per group of questions")
        for column in ("group", "accuracy", "examples"):
            groups.add_column(column, justify="left" if column == "group" else "right")
        for name, row in result["per_group"].items():
            groups.add_row(name, f"{row['accuracy']:.4f}", str(row["examples"]))
        console.print(groups)
    line = f"accuracy {result['accuracy']:.4f}  loss {result['loss']:.4f}"
    if result["vqa_accuracy"] is not None:
        line += f"  VQA accuracy {result['vqa_accuracy']:.4f}"
    console.print(line)
    console.print(
        f"network {format_flops(result['network_executed_flops'])} executed per example "
        f"({format_flops(result['network_dense_flops'])} dense); whole model {format_flops(result['model_flops'])}"
    )
    lat = result["latency"]
    console.print(f"latency {lat['ms_per_batch']:.2f} ms per batch of {lat['batch']} on {lat['device']}")


def print_prune(report: dict) -> None:
    from sparsearch.cost import format_flops

    b, a = report["costs"]["before"], report["costs"]["after"]
    eq, acc = report["equivalence"], report["accuracy"]
    graph = report.get("graph")
    if graph:
        typer.echo(
            f"connectivity: {graph['nodes']} blocks, {graph['dead']} dead branches ({len(graph['cascade'])} rounds)"
        )
    for r in report["removals"]:
        typer.echo(f"  {r['module']}: {r['summary']}")
    typer.echo(f"parameters {b['params']:,} -> {a['params']:,}")
    typer.echo(
        f"network FLOPs {format_flops(b['network_executed_flops'])} -> {format_flops(a['network_executed_flops'])}"
        f" executed per example; whole model {format_flops(b['model_flops'])} -> {format_flops(a['model_flops'])}"
    )
    for row in report["latency"]:
        typer.echo(
            f"latency batch {row['batch']}: {row['before_ms']:.2f} -> {row['after_ms']:.2f} ms "
            f"({row['speedup']:.2f}x) on {report['device']}"
        )
    typer.echo(
        f"equivalence: max |difference| {eq['max_abs_diff']:.3g} in float64 "
        f"({eq['max_abs_diff_float32']:.3g} in float32) on {eq['on']} "
        f"({'exact' if eq['exact'] else 'usage-based'}, allowed {eq['atol']:g}): "
        f"{'passed' if eq['passed'] else 'FAILED'}"
    )
    final = f", final {acc['final']:.4f}" if "final" in acc else ""
    typer.echo(f"{acc['split']} accuracy {acc['before']:.4f} -> {acc['compacted']:.4f}{final}")
    typer.echo(
        f"wrote {report['out']} (checkpoint, report.md, report.json"
        + (", model.pt2" if "export" in report else "")
        + ")"
    )


class TrainProgress:
    """Rich progress bars on an interactive terminal (stderr); elsewhere (a log file, a cluster's job
    output) one line per step window on stdout, with the result: steps done, loss, accuracy, images/s
    over all processes, the time left. (``--json`` prints neither.)"""

    WINDOW_S = 30.0  # a plain line at most this often (and at the first step and each epoch's end)

    def __init__(self, enabled: bool, stream=None) -> None:
        self.bars = enabled and sys.stderr.isatty()
        self.lines = enabled and not self.bars
        self.stream = stream or sys.stdout  # lines go with the result (stdout); stderr is for the error alone
        self.bar = None
        self.last = None  # when the last line was printed
        self.started: tuple[float, int] | None = None  # (time, step) of the first line: the rate behind the ETA

    def __enter__(self):
        if self.lines:
            return self.on_step_line, self.on_epoch
        if not self.bars:
            return None, None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f} {task.fields[rate]:.0f} images/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.bar.__enter__()
        self.task = None
        return self.on_step, self.on_epoch

    def on_step(self, info) -> None:
        if self.task is None:
            self.task = self.bar.add_task("train", total=info.steps, epoch=info.epoch, loss=0.0, acc=0.0, rate=0.0)
        self.bar.update(
            self.task, completed=info.step, epoch=info.epoch, loss=info.loss, acc=info.accuracy, rate=info.samples_per_s
        )

    def on_step_line(self, info) -> None:
        import time

        now = time.monotonic()
        if self.last is not None and now - self.last < self.WINDOW_S and info.step != info.steps:
            return
        self.last = now
        eta = ""
        if info.steps_total and info.samples_per_s > 0 and self.started is not None:
            per_step = (now - self.started[0]) / max(info.step_global - self.started[1], 1)
            eta = f", {_minutes(per_step * (info.steps_total - info.step_global))} left"
        if self.started is None:
            self.started = (now, info.step_global)
        print(
            f"epoch {info.epoch} step {info.step}/{info.steps}: loss {info.loss:.4f} acc {info.accuracy:.3f}, "
            f"{info.samples_per_s:.0f} images/s{eta}",
            file=self.stream,
            flush=True,
        )

    def on_epoch(self, stats) -> None:
        line = (
            f"epoch {stats.epoch}: train loss {stats.train_loss:.4f} acc {stats.train_accuracy:.4f} | "
            f"val loss {stats.val_loss:.4f} acc {stats.val_accuracy:.4f} | {stats.seconds:.1f} s, "
            f"{stats.samples_per_s:.0f} images/s"
        )
        if self.bar is None:
            print(line, file=self.stream, flush=True)
            return
        self.bar.console.print(line)
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def print_study(summary: dict, report: str) -> None:
    """The Pareto set of a study and where its report is."""
    from rich.console import Console
    from rich.table import Table

    from sparsearch.cost import format_flops
    from sparsearch.study.noise import describe_comparison
    from sparsearch.study.structure import describe

    t = summary["trials"]
    console = Console()
    console.print(
        f"study {summary['study']}: {t['complete']} complete ({t['feasible']} within {summary['budget']}, "
        f"{t['infeasible']} over), {t['pruned']} stopped early, {t['fail']} failed; "
        f"hypervolume {summary['hypervolume']:.4f}"
    )
    table = Table(title=f"Pareto set: proxy accuracy vs target FLOPs (budget {summary['budget']})")
    for column in ("trial", "reference", "target FLOPs", "accuracy", "fine-tuned", "latency ms", "configuration"):
        table.add_column(column, justify="right" if column not in ("reference", "configuration") else "left")
    for row in summary["pareto"]:
        tuned = row.get("finetuned", {}).get("accuracy")
        latency = row.get("latency_ms")
        table.add_row(
            str(row["number"]),
            row["reference"] or "",
            format_flops(row["target"]["executed_flops"]),
            f"{row['accuracy']:.4f}",
            "" if tuned is None else f"{tuned:.4f}",
            "" if latency is None else f"{latency:.1f}",
            describe(row.get("values")),
        )
    console.print(table)
    scoring = summary["scoring"]
    if scoring["per_minute"]:
        console.print(
            f"scored {scoring['configurations_scored']} configurations, {scoring['per_minute']:.1f} per minute"
        )
    for ref in summary["references"]:
        if ref["feasible"]:
            at = "fewer FLOPs" if ref.get("at", "FLOPs") == "FLOPs" else f"lower {ref['at']}"
            line = f"{ref['reference']}: accuracy {ref['accuracy']:.4f}; at equal or {at} "
            line += describe_comparison(ref)
            if "finetuned_accuracy" in ref:
                line += f"; fine-tuned {ref['finetuned_accuracy']:.4f}: {describe_comparison(ref, 'finetuned_')}"
            console.print(line)
        else:
            ms = ref["target"].get("predicted_ms")
            predicted = "" if ms is None else f", {ms:.1f} ms predicted"
            console.print(
                f"{ref['reference']}: over budget ({format_flops(ref['target']['executed_flops'])}{predicted})"
            )
    console.print(f"report: {report}")


def _interval(figure: dict | None) -> str:
    if figure is None:
        return "unmeasured (no equal-cost pair)"
    return f"{figure['value']:+.2f} [{figure['low']:+.2f}, {figure['high']:+.2f}]"


def print_validation(result: dict) -> None:
    """A study's validation: each configuration's score and stand-alone accuracy, then the figures."""
    from rich.console import Console
    from rich.table import Table

    from sparsearch.cost import format_flops

    console = Console()
    s = result["settings"]
    table = Table(title=f"score vs stand-alone test accuracy ({s['seeds']} seed(s), {s['epochs']} epoch(s) each)")
    for column in ("trial", "why", "target FLOPs", "score", "stand-alone"):
        table.add_column(column, justify="left" if column == "why" else "right")
    for row in result["configurations_validated"]:
        seeds = row["standalone"]
        spread = f" ± {statistics.stdev(seeds):.4f}" if len(seeds) > 1 else ""
        table.add_row(
            str(row["trial"]),
            row["why"],
            format_flops(row["flops"]),
            f"{row['score']:.4f}",
            f"{row['standalone_mean']:.4f}{spread}",
        )
    console.print(table)
    console.print(f"Kendall τ, score vs stand-alone:     {_interval(result['kendall'])}")
    console.print(f"Spearman ρ:                          {_interval(result['spearman'])}")
    console.print(f"Kendall τ, FLOPs alone:              {_interval(result['flops_kendall'])}")
    console.print(f"partial τ given FLOPs:               {_interval(result['partial_kendall'])}")
    console.print(
        f"equal-cost pairs ({result['equal_cost_pairs']}, ±{result['tolerance']:.0%} FLOPs): "
        f"score τ {_interval(result['equal_cost_kendall'])}, FLOPs τ {_interval(result['equal_cost_flops_kendall'])}"
    )
    console.print(f"regret of the recommended trial {result['recommended']}: {_interval(result['regret'])}")
    r = result["resolution"]
    if r["median_standard_error"] is not None:
        console.print(
            f"ground truth: median standard error {r['median_standard_error']:.4f} per configuration, "
            f"median difference between two configurations {r['median_pair_difference']:.4f}"
        )
    console.print(result["verdict"])
