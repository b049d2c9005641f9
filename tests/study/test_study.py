"""Whole studies on the tiny space, on SQLite: trial slots, references, budget, resume, failures."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from sparsearch.cost import count
from sparsearch.errors import ConfigError
from sparsearch.study import open_study, run_study
from sparsearch.study.queue import top_up
from tests.study.helpers import TINY, tiny_settings, tiny_space


def _budget() -> int:
    """Between the tiny target's cost at uniform k = C/2 and at k = C: k = C is over, k = C/2 within."""
    space = tiny_space()
    full = count(space.target_config(space.expand({"k": 12, "routing": "softmax"}))).executed_flops
    half = count(space.target_config(space.expand({"k": 6, "routing": "softmax"}))).executed_flops
    return (full + half) // 2


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One supernet study of 6 trials, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{root}/s.db"
    settings = tiny_settings(_budget(), trials=6)
    run = run_study(settings, storage_url=url, name="tiny", device="cpu", artifacts=root / "tiny")
    return run, url, root


def test_exactly_the_requested_trials_with_the_references_first(finished) -> None:
    run, _, _ = finished
    trials = run.study.get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs.get("reference") for t in trials[:3]] == [
        "uniform k = C",
        "uniform k = C/2",
        "uniform k = C/4",
    ]
    assert trials[0].params["conv2.k"] == 12 and trials[1].params["conv2.k"] == 6


def test_over_budget_configurations_are_infeasible_and_never_trained(finished) -> None:
    run, _, _ = finished
    budget = run.settings.budget.amount
    for t in run.study.get_trials():
        flops = t.user_attrs["target"]["executed_flops"]
        assert t.values[1] == flops
        assert t.constraints["budget"] == pytest.approx((flops - budget) / budget)
        assert t.user_attrs["feasible"] == (flops <= budget)
        if flops > budget:
            assert t.values[0] == 0.0 and "proxy" not in t.user_attrs
        else:
            proxy = t.user_attrs["proxy"]
            assert 0 <= proxy["accuracy"] <= 1 and proxy["split"] == "val[:128]"
            assert proxy["executed_flops"] > 0 and proxy["latency_ms"] > 0
            assert t.user_attrs["usage"]["topk"]
    assert not run.study.get_trials()[0].user_attrs["feasible"]  # uniform k = C is over this budget


def test_summary_lists_the_feasible_pareto_set_and_is_written(finished) -> None:
    run, _, root = finished
    summary = run.summary
    assert summary["trials"]["requested"] == 6 and summary["trials"]["complete"] == 6
    assert summary["pareto"] and all(row["target"]["executed_flops"] <= _budget() for row in summary["pareto"])
    assert all("finetuned" in row for row in summary["pareto"][:2])
    refs = {r["reference"]: r for r in summary["references"]}
    assert refs["uniform k = C"]["feasible"] is False
    assert "finetuned_accuracy" in refs["uniform k = C/2"]
    assert summary["scoring"]["configurations_scored"] == summary["trials"]["feasible"]
    assert json.loads((root / "tiny" / "pareto.json").read_text())["study"] == "tiny"
    assert run.report == root / "tiny" / "pareto.md" and "## Pareto set" in run.report.read_text()


def test_the_target_of_every_pareto_configuration_is_timed_against_dense(finished) -> None:
    run, _, _ = finished
    timed = run.study.user_attrs["target_latency"]
    assert timed["batches"] == [1] and timed["machine"]["cpu"]
    for row in run.summary["pareto"]:
        figures = row["target_latency"]["1"]
        assert figures["ms"] > 0 and figures["dense_ms"] > 0
        assert figures["speedup"] == pytest.approx(figures["dense_ms"] / figures["ms"])
    assert "speed-up over dense" in run.report.read_text()


def test_a_rerun_resumes_and_tops_up_to_the_new_count(finished) -> None:
    run, url, root = finished
    again = run_study(run.settings, storage_url=url, name="tiny", device="cpu", artifacts=root / "tiny")
    assert len(again.study.get_trials()) == 6  # nothing to do
    more = run_study(
        run.settings.with_run_options(trials=8), storage_url=url, name="tiny", device="cpu", artifacts=root / "tiny"
    )
    trials = more.study.get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)


def test_a_study_name_taken_by_other_settings_is_refused(finished) -> None:
    _, url, _ = finished
    with pytest.raises(ConfigError, match="study 'tiny' exists with budget="):
        open_study(url, "tiny", tiny_settings(_budget() * 2))
    other = tiny_settings(_budget(), space_text=TINY.replace("max: cardinality", "max: 8"))
    with pytest.raises(ConfigError, match="exists with \\(another YAML\\)"):
        open_study(url, "tiny", other)


def test_failing_trials_are_recorded_with_their_reason_and_the_study_goes_on(tmp_path) -> None:
    # A learning rate of 1e6 makes the loss blow up: every trained trial fails with a NaN/inf loss.
    settings = tiny_settings(_budget(), eval="train", trials=3, lr=1e6)
    run = run_study(settings, storage_url=f"sqlite:///{tmp_path}/f.db", name="f", device="cpu", artifacts=tmp_path)
    trials = run.study.get_trials()
    assert len(trials) == 3
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [1, 2]  # k = C is over budget (never trained); k = C/2 and C/4 failed
    assert all("TrainingError: loss became" in t.user_attrs["error"] for t in failed)
    assert run.summary["trials"]["fail"] == 2 and run.summary["trials"]["complete"] == 1


def test_train_mode_records_a_curve_and_full_validation_accuracy(tmp_path) -> None:
    settings = tiny_settings(_budget(), eval="train", trials=2)
    run = run_study(settings, storage_url=f"sqlite:///{tmp_path}/t.db", name="t", device="cpu", artifacts=tmp_path)
    trial = run.study.get_trials()[1]  # uniform k = C/2: feasible
    assert trial.state == TrialState.COMPLETE
    assert len(trial.user_attrs["curve"]) == 2  # the two early-stopping rungs
    assert trial.user_attrs["proxy"]["split"] == "val"


@pytest.mark.slow  # minutes of the default suite; runs in make test-slow
def test_local_jobs_complete_exactly_the_queued_trials(tmp_path) -> None:
    settings = tiny_settings(_budget(), trials=8)
    run = run_study(
        settings, storage_url=f"sqlite:///{tmp_path}/j.db", name="j", device="cpu", jobs=2, artifacts=tmp_path
    )
    trials = run.study.get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(8))


def test_top_up_counts_retried_trials_once(tmp_path) -> None:
    study = open_study(f"sqlite:///{tmp_path}/r.db", "r", tiny_settings(_budget(), trials=4)).study
    assert len(study.get_trials()) == 3  # the references
    assert top_up(study, 4) == 1
    # A failed trial with a queued retry counts once.
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    failed = study.get_trials()[-1].number
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING, system_attrs={"failed_trial": failed, "retry_history": [failed]}
        )
    )
    assert top_up(study, 5) == 0 and len(study.get_trials()) == 6
    assert top_up(study, 6) == 1


@pytest.mark.parametrize("sampler", ["nsga2", "gp", "random"])
def test_every_sampler_runs_a_constrained_study(sampler, tmp_path_factory) -> None:
    shared = tmp_path_factory.getbasetemp() / "samplers"  # one supernet for the three studies
    settings = tiny_settings(_budget(), trials=5, sampler=sampler, finetune_top=1)
    run = run_study(
        settings, storage_url=f"sqlite:///{shared}/{sampler}.db", name=sampler, device="cpu", artifacts=shared
    )
    trials = run.study.get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all("budget" in t.constraints for t in trials)


def _dashboard_get(app, path: str):
    """A GET through optuna-dashboard's own WSGI application (its public ``wsgi``), as its browser page makes it."""
    status: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "wsgi.url_scheme": "http",
        "wsgi.input": __import__("io").BytesIO(b""),
        "wsgi.errors": __import__("sys").stderr,
    }
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


def test_optuna_dashboard_shows_the_metric_names_and_each_trials_budget_constraint(finished) -> None:
    optuna_dashboard = pytest.importorskip("optuna_dashboard")  # the extra sparsearch[dashboard]
    run, url, _ = finished
    app = optuna_dashboard.wsgi(url)
    (listed,) = [s for s in _dashboard_get(app, "/api/studies")["study_summaries"] if s["study_name"] == "tiny"]
    detail = _dashboard_get(app, f"/api/studies/{listed['study_id']}")
    assert detail["objective_names"] == ["proxy accuracy", "target FLOPs"]
    budget = run.settings.budget.amount
    shown = {t["number"]: t["constraints"] for t in detail["trials"]}
    for t in run.study.get_trials():
        (violation,) = shown[t.number]
        assert violation == pytest.approx((t.values[1] - budget) / budget)
        assert (violation <= 0) == t.user_attrs["feasible"]
    assert any(v[0] > 0 for v in shown.values()) and any(v[0] <= 0 for v in shown.values())
    # Optuna itself still sees one feasibility: both records hold the same number
    assert all(set(t.constraints.values()) == {t.constraints["budget"]} for t in run.study.get_trials())


def test_a_half_made_study_is_made_again_whole_and_workers_refuse_it(tmp_path) -> None:
    """A study whose making stopped midway (settings written, the queue and the ``created`` stamp not):
    a worker refuses it in one line; the next `study` deletes it and makes it whole."""
    import optuna

    from sparsearch.errors import ConfigError
    from sparsearch.study.session import ATTR, open_study

    url = f"sqlite:///{tmp_path}/s.db"
    settings = tiny_settings(_budget(), trials=4)
    half = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    half.set_user_attr(ATTR, settings.to_dict())
    half.enqueue_trial({"conv2.k": 1})
    with pytest.raises(ConfigError, match="is half made"):
        open_study(url, "s", None)
    opened = open_study(url, "s", settings)
    assert "created" in opened.study.user_attrs
    assert [t.user_attrs.get("reference") for t in opened.study.trials][:1] == ["uniform k = C"]
    # Another tool's study is never taken for a half-made one.
    optuna.create_study(study_name="theirs", storage=url).set_user_attr("mine", 1)
    with pytest.raises(ConfigError, match="not created by sparsearch"):
        open_study(url, "theirs", settings)
