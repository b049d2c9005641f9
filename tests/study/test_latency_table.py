"""The latency model: a table of measured blocks predicts a configuration as the sum of its parts, records
its machine, refuses another, and is validated against end-to-end measurements."""

from __future__ import annotations

import json

import pytest

from sparsearch.cli import main
from sparsearch.config import plan
from sparsearch.errors import ConfigError
from sparsearch.spaces import parse_space
from sparsearch.study.latency_table import build_table, load_table, save_table, validate_table

SPACE = """
name: tinylat
target: {model: resnext, depth: [1, 2, 1, 1], cardinality: 4, width: 2, input_size: 32}
knobs:
  k: {per: stage, min: 1, max: cardinality}
  routing: {per: stage, choices: [softmax]}
"""


@pytest.fixture(scope="module")
def table():
    return build_table(parse_space(SPACE, "tinylat.yaml"), min_run_time=0.005)


def test_every_block_shape_at_every_k_is_measured(table) -> None:
    space = parse_space(SPACE, "tinylat.yaml")
    shapes = {b.name: b for b in plan(space.target_config()).blocks}
    assert len(table.blocks) == 5  # conv2.0, conv3.0, conv3.1 (the stage's other shape), conv4.0, conv5.0
    assert all(set(row) == {"1,1", "2,1", "3,1", "4,1"} for row in table.blocks.values())
    assert len(shapes) == 5 and table.fixed_ms > 0


def test_a_prediction_is_the_fixed_part_plus_its_blocks(table) -> None:
    space = parse_space(SPACE, "tinylat.yaml")
    values = space.expand({"k": 2, "routing": "softmax"})
    rows = list(table.blocks.values())
    expected = table.fixed_ms + sum(r["2,1"] for r in rows)  # five blocks of five shapes
    assert table.predict(space.target_config(values)) == pytest.approx(expected)


def test_the_table_round_trips_and_refuses_another_machine(table, tmp_path) -> None:
    save_table(table, tmp_path / "t.json")
    again = load_table(tmp_path / "t.json")
    assert again == table
    again.check_machine()
    moved = json.loads((tmp_path / "t.json").read_text())
    moved["machine"]["cpu"] = "Some Other CPU"
    (tmp_path / "m.json").write_text(json.dumps(moved))
    with pytest.raises(ConfigError, match="measured with cpu 'Some Other CPU'"):
        load_table(tmp_path / "m.json").check_machine()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a sparsearch latency table"):
        load_table(tmp_path / "bad.json")


def test_validation_reports_the_error_of_random_configurations(table) -> None:
    result = validate_table(table, parse_space(SPACE, "tinylat.yaml"), configurations=3)
    assert len(result["rows"]) == 3 and result["median_abs_error"] >= 0 and result["met"] in (True, False)
    assert all(r["predicted_ms"] > 0 and r["measured_ms"] > 0 for r in result["rows"])


def test_the_command_line(tmp_path, capsys) -> None:
    (tmp_path / "s.yaml").write_text(SPACE)
    out = tmp_path / "table.json"
    assert main(["latency-table", str(tmp_path / "s.yaml"), "--out", str(out), "--validate", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["entries"] == 20 and len(result["validation"]["rows"]) == 2 and out.is_file()
    assert main(["latency-table", "gateconnect_cifar", "--out", str(tmp_path / "g.json")]) == 2
    assert "a latency table covers top-k ResNeXt-family targets" in capsys.readouterr().err


STUDY_SPACE = """
name: tinylat
target: {model: resnext, depth: [1, 1, 1, 1], cardinality: 8, width: 4, input_size: 64, num_classes: 10}
proxy: {dataset: digits, input_size: 16, width: 0.5, epochs: 1}
knobs:
  k: {per: stage, min: 1, max: cardinality}
  routing: {per: stage, choices: [softmax]}
"""


@pytest.mark.slow  # minutes of the default suite; runs in make test-slow
@pytest.mark.integration  # runs a study (make test, not make check)
def test_a_latency_budget_never_trains_a_configuration_predicted_over_it(tmp_path, monkeypatch, capsys) -> None:
    import optuna

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(STUDY_SPACE)
    study = ["study", "--space", "s.yaml", "--trials", "6", "--json"]
    assert main([*study, "--budget", "5ms"]) == 2
    assert "no latency table there; measure one with sparsearch latency-table" in capsys.readouterr().err
    assert main(["latency-table", "s.yaml"]) == 0
    table = load_table(tmp_path / "studies" / "latency" / "tinylat-b1.json")
    space = parse_space(STUDY_SPACE, "s.yaml")
    dense_ms = table.predict(space.target_config(space.expand({"routing": "softmax"})))
    budget = round(dense_ms * 0.8, 3)  # the dense reference is over it
    capsys.readouterr()
    assert main([*study, "--budget", f"{budget}ms"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["study"] == f"tinylat-{budget:g}ms" and "predicted target latency" in summary["budget"]
    loaded = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///studies/{summary['study']}.db")
    for t in loaded.get_trials():
        predicted = t.user_attrs["target"]["predicted_ms"]
        assert t.user_attrs["feasible"] == (predicted <= budget)
        assert ("proxy" in t.user_attrs) == t.user_attrs["feasible"]  # over budget: never trained
    assert not loaded.get_trials()[0].user_attrs["feasible"]  # uniform k = C


@pytest.mark.slow  # minutes of the default suite; runs in make test-slow
@pytest.mark.integration  # runs a study (make test, not make check)
def test_accuracy_against_predicted_latency_as_the_objectives(tmp_path, monkeypatch, capsys) -> None:
    import optuna

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(STUDY_SPACE)
    assert main(["latency-table", "s.yaml"]) == 0
    capsys.readouterr()
    args = ["study", "--space", "s.yaml", "--trials", "6", "--objective", "latency", "--json"]
    assert main([*args, "--budget", "5GFLOPs"]) == 2
    assert "the latency objective needs a latency budget" in capsys.readouterr().err
    assert main([*args, "--budget", "1s", "--study-name", "lat"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    # The live progress line measures the hypervolume against the budget in the objective's unit (ms):
    # its last line says what the summary says (it once took the FLOPs reference against ms values).
    live = [line for line in captured.err.splitlines() if "hypervolume" in line][-1]
    assert f"hypervolume {summary['hypervolume']:.4f}" in live
    assert summary["objective"] == {"name": "predicted latency", "budget": 1000.0}
    study = optuna.load_study(study_name="lat", storage="sqlite:///studies/lat.db")
    for t in study.get_trials():
        assert t.values[1] == pytest.approx(t.user_attrs["target"]["predicted_ms"])  # ms, not FLOPs
    costs = [row["target"]["predicted_ms"] for row in summary["pareto"]]
    accuracies = [row["accuracy"] for row in summary["pareto"]]
    assert costs == sorted(costs) and accuracies == sorted(accuracies)  # a front in latency
    for ref in summary["references"]:
        assert ref.get("at", "predicted latency") == "predicted latency"
    assert main(["report", "lat", "--out", "rep"]) == 0
    assert "predicted" in (tmp_path / "rep" / "index.md").read_text()
