"""Command-line interface: parses, calls the library, prints. Errors end as one line and exit code 2."""

from __future__ import annotations

import sys

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
