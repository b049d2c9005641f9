"""`sparsearch report` on a real (tiny) study: files, numbers, idempotence, atomic replacement, errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from sparsearch.cli import main
from sparsearch.errors import WriteError
from sparsearch.report import FORMAT, load_report_data, report_data, write_report
from sparsearch.report.figures import figures_of
from sparsearch.study import run_study
from tests.study.helpers import tiny_settings
from tests.study.test_study import _budget


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root}/tiny.db"
    run = run_study(tiny_settings(_budget(), trials=10), storage_url=url, name="tiny", device="cpu", artifacts=root)
    return run, url, root


def test_report_files_and_numbers(study, tmp_path) -> None:
    run, url, _ = study
    data = load_report_data("tiny", url)
    page = write_report(data, tmp_path / "out")
    out = page.parent
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*figures_of(data), "index.md", "plotly.min.js", "report.html", "report.json"]
    )
    for name in figures_of(data):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "report.json").read_text())
    assert saved["format"] == FORMAT
    # The same Pareto set, references and hypervolume as the study's own summary.
    for key in ("pareto", "references", "hypervolume", "trials"):
        assert saved[key] == json.loads(json.dumps(run.summary[key]))
    assert len(saved["points"]) == 10
    assert {p["reference"] for p in saved["points"]} >= {"uniform k = C", "uniform k = C/2", "uniform k = C/4"}
    assert any(not p["feasible"] for p in saved["points"])  # k = C is over this budget
    history = saved["hypervolume_history"]
    assert [h["finished"] for h in history] == list(range(1, 11))
    assert history[-1]["hypervolume"] == pytest.approx(saved["hypervolume"])
    assert all(a["hypervolume"] <= b["hypervolume"] for a, b in itertools.pairwise(history))
    for objective in ("accuracy", "flops"):
        values = saved["importances"][objective]["values"]
        assert values and sum(values.values()) == pytest.approx(1.0)
    conf = saved["configurations"]
    assert conf["columns"] == ["conv2.k", "conv3.k", "conv4.k"]
    assert [r["trial"] for r in conf["rows"]] == [r["number"] for r in saved["pareto"]]
    about = saved["about"]
    assert about["accuracy"]["splits"] == ["val[:128]"] and about["target"]["model"] == "clevr_cnn"
    assert saved["time"]["runs"] and saved["time"]["seconds"] > 0
    text = page.read_text()
    for needed in ("FLOPs per example = 2 x MACs", "val[:128]", "Reproduce", "sparsearch report tiny", "pareto.png"):
        assert needed in text
    html = (out / "report.html").read_text()
    assert 'id="pareto"' in html and '<script charset="utf-8" src="plotly.min.js">' in html
    assert "https://" not in html  # nothing fetched from a CDN


def test_regenerating_gives_the_same_bytes(study, tmp_path) -> None:
    _, url, _ = study
    write_report(load_report_data("tiny", url), tmp_path / "a")
    first = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    write_report(load_report_data("tiny", url), tmp_path / "a")  # over itself
    write_report(load_report_data("tiny", url), tmp_path / "b")
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == first
    b = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    # Only the reproduce command names the output directory.
    assert {k: v for k, v in b.items() if k != "index.md"} == {k: v for k, v in first.items() if k != "index.md"}


def test_a_failure_midway_keeps_the_previous_report(study, tmp_path, monkeypatch) -> None:
    _, url, _ = study
    data = load_report_data("tiny", url)
    write_report(data, tmp_path / "r")
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}

    def disk_full(_data, _directory):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sparsearch.report.write_interactive", disk_full)
    with pytest.raises(WriteError, match=r"r: cannot write the report \(No space left on device\); the previous"):
        write_report(data, tmp_path / "r")
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary directory left


def test_refuses_to_replace_a_directory_that_is_not_a_report(study, tmp_path) -> None:
    _, url, _ = study
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("mine")
    code = main(["report", "tiny", "--storage", url, "--out", str(tmp_path / "docs")])
    assert code == 2
    assert (tmp_path / "docs" / "notes.md").read_text() == "mine"


def test_cli_json_equals_report_json(study, tmp_path, capsys) -> None:
    _, url, _ = study
    out = tmp_path / "cli"
    assert main(["report", "tiny", "--storage", url, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "report.json").read_text())


def test_the_storage_password_never_appears(study) -> None:
    run, _, _ = study
    data = report_data(run.study, run.settings, "postgresql://ann:s3cret@db.example/studies")
    assert "s3cret" not in json.dumps(data) and data["storage"] == "postgresql://ann:***@db.example/studies"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch", "--storage", "STUDY_DB"], "no study named 'nosuch'"),
        (["tiny", "--storage", "sqlite:///MISSING/x.db"], "does not exist"),
        (["tiny", "--storage", "not-a-url"], "is not a URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(study, tmp_path, capsys, args, message) -> None:
    _, url, _ = study
    args = [a.replace("STUDY_DB", url).replace("MISSING", str(tmp_path / "missing")) for a in args]
    assert main(["report", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "missing").exists()


def test_a_study_with_nothing_complete_is_refused(tmp_path) -> None:
    from sparsearch.study import open_study

    url = f"sqlite:///{tmp_path}/empty.db"
    study, settings, *_ = open_study(url, "empty", tiny_settings(_budget()))
    with pytest.raises(Exception, match="no completed trial"):
        report_data(study, settings, url)
    assert not Path(tmp_path / "out").exists()


def test_a_validated_study_shows_its_fidelity(study, tmp_path) -> None:
    from sparsearch.study import ValidationSettings, run_validation

    _, url, _ = study
    result = run_validation(url, "tiny", ValidationSettings(configs=3, seeds=1), device="cpu")
    data = load_report_data("tiny", url)
    assert data["fidelity"] == json.loads(json.dumps(result))
    out = write_report(data, tmp_path / "validated").parent
    assert "fidelity.png" in figures_of(data) and (out / "fidelity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.md").read_text()
    assert "## Does the search rank configurations? (validation)" in page
    assert f"| Kendall τ, study score vs stand-alone accuracy | {result['kendall']['value']:+.2f}" in page
    assert result["verdict"] in page and result["machine"]["cpu"] in page
    assert "sparsearch validate tiny --configs 3 --seeds 1 --epochs 1" in page


@pytest.mark.parametrize("journal", ["WAL", "DELETE"])
def test_report_leaves_the_study_directory_byte_and_name_identical(study, tmp_path, journal) -> None:
    """`report` only reads: the database keeps its bytes and journal mode, and no -wal/-shm/-journal
    sidecar is left beside it (a WAL-mode file opened with SQLite's own read-only mode would keep them)."""
    import sqlite3

    from tests.reliability.test_bad_input import snapshot

    _, url, _ = study
    here = tmp_path / "studies"
    here.mkdir()
    source, copy = sqlite3.connect(url.removeprefix("sqlite:///")), sqlite3.connect(here / "tiny.db")
    source.backup(copy)  # the study's storage may still be open in this process: its WAL included
    assert copy.execute(f"PRAGMA journal_mode={journal}").fetchone()[0].upper() == journal
    source.close()
    copy.close()
    before = snapshot(here)
    assert sorted(before) == ["tiny.db"]
    assert main(["report", "tiny", "--storage", f"sqlite:///{here}/tiny.db", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.json").is_file()
    assert snapshot(here) == before
