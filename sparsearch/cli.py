"""Command-line interface: parses, calls the library, prints. Errors end as one line and exit code 2."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from sparsearch import __version__
from sparsearch.errors import SparsearchError

app = typer.Typer(
    name="sparsearch",
    help="Search and compress conditionally-computed neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sparsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Search and compress conditionally-computed neural networks."""


@app.command("routings")
def routings() -> None:
    """List the registered routing functions."""
    from sparsearch.layers import routing_names

    for name in routing_names():
        typer.echo(name)


@app.command("spaces")
def spaces(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the shipped search spaces."""
    from sparsearch.spaces import get_space, space_names

    rows = [(name, get_space(name).description) for name in space_names()]
    if json_out:
        typer.echo(json.dumps([{"name": n, "description": d} for n, d in rows], indent=2))
        return
    width = max(len(n) for n, _ in rows)
    for name, description in rows:
        typer.echo(f"{name:<{width}}  {description}")


def _parse_sets(pairs: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or not raw:
            raise SparsearchError(f"--set {pair!r}: expected stage.knob=value, e.g. conv3.k=16")
        values[key.strip()] = int(raw) if raw.strip().lstrip("-").isdigit() else raw.strip()
    return values


@app.command("flops")
def flops(
    space: Annotated[str, typer.Argument(help="A shipped space name or a path to a space .yaml file.")],
    sets: Annotated[list[str] | None, typer.Option("--set", help="A knob value, e.g. conv3.k=16 (repeatable).")] = None,
    budget: Annotated[str | None, typer.Option(help="e.g. 50GFLOPs or 25GMACs: say within or over.")] = None,
    verify: Annotated[bool, typer.Option(help="Build the model; compare with FlopCounterMode and thop.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-layer cost of a configuration of SPACE: dense and executed FLOPs and MACs, parameters."""
    from sparsearch.cost import count, parse_budget
    from sparsearch.spaces import get_space

    target_budget = None if budget is None else parse_budget(budget)
    chosen = get_space(space)
    config = chosen.target_config(_parse_sets(sets or []))
    report = count(config)
    result: dict[str, object] = {
        "space": chosen.name,
        "input_size": config.input_size,
        "units": "per example; FLOPs = 2 x MACs",
        "layers": [
            {
                "name": layer.name,
                "kind": layer.kind,
                "dense_flops": 2 * layer.dense_macs,
                "executed_flops": 2 * layer.executed_macs,
                "dense_macs": layer.dense_macs,
                "executed_macs": layer.executed_macs,
                "params": layer.params,
            }
            for layer in report.layers
        ],
        "total": {
            "dense_flops": report.dense_flops,
            "executed_flops": report.executed_flops,
            "dense_macs": report.dense_macs,
            "executed_macs": report.executed_macs,
            "params": report.params,
        },
    }
    if target_budget is not None:
        result["budget"] = {
            "flops": target_budget,
            "within": report.executed_flops <= target_budget,
            "margin_flops": target_budget - report.executed_flops,
        }
    if verify:
        result["verify"] = _verify(config, report.executed_flops)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_flops(result)


def _verify(config: object, analytic: int) -> dict[str, int]:
    import torch

    from sparsearch.cost.verify import flop_counter_flops, thop_macs
    from sparsearch.models import build_model

    model = build_model(config).eval()
    x = torch.randn(1, getattr(config, "in_channels", 3), config.input_size, config.input_size)
    cond_dim = getattr(config, "cond_dim", None)
    inputs = (x,) if cond_dim is None else (x, torch.randn(1, cond_dim))
    return {
        "analytic_flops": analytic,
        "flop_counter_flops": flop_counter_flops(model, *inputs),
        "thop_flops": 2 * thop_macs(model, *inputs),
    }


def _print_flops(result: dict) -> None:
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


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args or ["--help"], prog_name="sparsearch", standalone_mode=False)
    except typer.Exit as stop:
        return stop.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    except TyperException as err:  # usage errors: unknown command or option, bad value
        typer.echo(f"error: {err.format_message()}", err=True)
        return 2
    except (SparsearchError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
