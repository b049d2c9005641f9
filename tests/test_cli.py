from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import sparsearch
from sparsearch.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparsearch", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help_through_the_installed_entry_point() -> None:
    done = _run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"sparsearch {sparsearch.__version__}"
    assert sparsearch.__version__ == "0.1.0"
    done = _run("--help")
    assert done.returncode == 0
    assert "Usage: sparsearch" in done.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [(["bogus"], "error: No such command 'bogus'."), (["--bogus"], "error: No such option: --bogus")],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert done.stderr.strip() == line
    assert "Traceback" not in done.stderr


CHOICES = {
    ("study", "--sampler"): "<tpe|nsga2|gp|random>",
    ("study", "--eval"): "<supernet|train>",
    ("study", "--objective"): "<flops|latency>",
    ("study", "--sampling"): "<sandwich|uniform>",
    ("train", "--optimizer"): "<sgd|adamax|adamw>",
    ("train", "--network"): "<proxy|target>",
    ("train", "--connectivity"): "<learned|fixed_full|fixed_random>",
    ("eval", "--split"): "<test|val>",
    ("prune", "--importance"): "<l1|l2|random>",
    ("export", "--format"): "<pt2|onnx>",
}


@pytest.mark.parametrize(("command", "option"), list(CHOICES), ids=[" ".join(k) for k in CHOICES])
def test_choices_are_listed_in_help_and_anything_else_is_refused(command: str, option: str, capsys) -> None:
    assert main([command, "--help"]) == 0
    assert f"{option} {CHOICES[command, option]}" in capsys.readouterr().out
    extra = {"prune": ["ckpt", "--out", "o"], "export": ["ckpt", "--out", "o"], "eval": ["ckpt"]}.get(command, [])
    assert main([command, *extra, option, "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Invalid value for '{option}': 'bogus' is not one of '")
    assert err.count("\n") == 1


def test_routings_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routings"]) == 0
    assert capsys.readouterr().out.split() == ["constant", "noisy_topk", "relu_l1", "sigmoid", "softmax"]


def test_library_errors_become_one_line(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from sparsearch import cli

    def broken() -> None:
        raise sparsearch.SparsearchError("space 'nope' not found; known: default")

    monkeypatch.setattr("sparsearch.layers.routing_names", broken)
    assert cli.main(["routings"]) == 2
    assert capsys.readouterr().err == "error: space 'nope' not found; known: default\n"


def test_spaces_lists_the_shipped_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spaces", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in listed] == [
        "clevr",
        "condconv_mobilenet_v1",
        "default",
        "gateconnect_cifar",
        "gateconnect_digits",
        "sort_of_clevr",
    ]
    assert all(s["description"] for s in listed)


def test_flops_default_space_dense_over_budget_uniform_k16_within(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "default", "--budget", "50GFLOPs", "--json"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert dense["total"]["executed_flops"] == 63_743_590_400
    assert dense["budget"] == {"flops": 50 * 10**9, "within": False, "margin_flops": 50 * 10**9 - 63_743_590_400}
    uniform = [
        f"--set={s}.{knob}" for s in ("conv2", "conv3", "conv4", "conv5") for knob in ("k=16", "routing=softmax")
    ]
    assert main(["flops", "default", *uniform, "--budget", "50GFLOPs", "--json"]) == 0
    k16 = json.loads(capsys.readouterr().out)
    assert k16["total"]["executed_flops"] == 33_784_451_072
    assert k16["budget"]["within"] is True
    assert len(k16["layers"]) == 1 + 33  # stem and 33 blocks; the features head has no layer


def test_flops_verify_compares_three_counters(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["flops", "clevr", "--set", "conv3.0.k=4", "--set", "conv3.routing=relu_l1", "--verify"]
    assert main([*args, "--json"]) == 0
    verify = json.loads(capsys.readouterr().out)["verify"]
    assert verify == {"analytic_flops": 10_144_896, "flop_counter_flops": 10_144_896, "thop_flops": 10_144_896}
    assert main(args) == 0
    assert "  FlopCounterMode            10,144,896" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["flops", "default", "--budget", "-1"], "error: budget '-1' must be a positive, finite amount"),
        (["flops", "default", "--budget", ""], "error: budget '' not understood"),
        (
            ["flops", "nope"],
            "error: unknown space 'nope'; known: clevr, condconv_mobilenet_v1, default, gateconnect_cifar, "
            "gateconnect_digits",
        ),
        (
            ["flops", "default", "--set", "conv3.k=40"],
            "error: space default: conv3.k=40 is not allowed; allowed: 1..32",
        ),
        (["flops", "default", "--set", "conv3k"], "error: --set 'conv3k': expected stage.knob=value"),
        (["flops", "missing.yaml"], "error: missing.yaml: cannot read the space file"),
        (  # k alone keeps the space's default routing, which ranks nothing: the message says what to set
            ["flops", "default", "--set", "k=8"],
            "error: routing 'constant' cannot rank paths: k=8 < cardinality 32 in stage conv2 block 0; "
            "set a routing that ranks them as well (e.g. --set routing=softmax;",
        ),
    ],
)
def test_flops_bad_input_is_one_line_and_exit_2(args: list[str], line: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1


def test_shell_completion_offers_the_choices() -> None:
    env = {
        **os.environ,
        "_SPARSEARCH_COMPLETE": "complete_bash",
        "COMP_WORDS": "sparsearch study --sampler ",
        "COMP_CWORD": "3",
    }
    done = subprocess.run([sys.executable, "-m", "sparsearch"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["tpe", "nsga2", "gp", "random"]


def test_choices_take_any_letter_case_and_arrive_as_the_library_spells_them() -> None:
    import typer

    from sparsearch.cli import app

    group = typer.main.get_command(app)
    parent = group.make_context("sparsearch", ["study"])
    args = [
        "--budget",
        "1GFLOPs",
        "--sampler",
        "TPE",
        "--eval",
        "Train",
        "--objective",
        "FLOPS",
        "--sampling",
        "Uniform",
    ]
    params = group.get_command(parent, "study").make_context("study", args, parent=parent).params
    assert (params["sampler"], params["eval_mode"], params["objective"], params["sampling"]) == (
        "tpe",
        "train",
        "flops",
        "uniform",
    )
