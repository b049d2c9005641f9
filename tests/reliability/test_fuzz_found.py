"""What the fuzzers (tests/reliability/test_fuzz.py) and the hostile-input cases found, each kept as a
regular test: every one ended in a traceback or a message of several lines before its fix."""

from __future__ import annotations

import pickle

import pytest
import torch

from sparsearch.data.split import stratified_split
from sparsearch.errors import ConfigError, one_line
from sparsearch.spaces import parse_space

SPACE = "name: s\ntarget: {model: clevr_cnn, input_size: 32}\nknobs:\n  k: {per: stage, min: 1, max: cardinality}\n"


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_space(text, "fuzz.yaml")
    message = str(caught.value)
    assert message.isprintable(), message  # one line: no newline, no control character
    return message


def test_a_control_character_in_a_space_file_is_one_line() -> None:
    # yaml's reader refused it in its constructor, outside the parser's error handling: a traceback
    assert _refused("\x1f") == "fuzz.yaml: not YAML text: character #x001f at position 0 is not allowed"


def test_a_key_with_a_newline_is_quoted() -> None:
    # it was written as it is: "fuzz.yaml: \n: unknown key"
    assert _refused("? '\n\n  '\n: null\n" + SPACE).startswith("fuzz.yaml: '\\n': unknown key; allowed: ")


def test_a_target_argument_with_a_newline_is_one_line() -> None:
    # the layout's TypeError quoted the argument's name raw: "got an unexpected keyword argument '\n'"
    message = _refused(SPACE.replace("input_size: 32}", 'input_size: 32, "a\\nb": 1}'))
    assert message.endswith("clevr_cnn() got an unexpected keyword argument 'a\\nb'"), message


def test_every_error_message_is_one_line_by_construction() -> None:
    err = ConfigError("value 'a\nb\u2028c\ud800' is bad")
    assert str(err) == "value 'a\\nb\\u2028c\\ud800' is bad" and str(err).isprintable()
    assert str(pickle.loads(pickle.dumps(err))) == str(err)  # as a DataLoader worker sends it back
    assert one_line("café, 12 × 3") == "café, 12 × 3"


@pytest.mark.parametrize("labels", [[0, 1], [0, 1, 2, 0], [0, 0, 1, 1, 2, 2]])
def test_a_split_too_small_to_stratify_is_still_made(labels: list[int]) -> None:
    # scikit-learn refused: "The test_size = 1 should be greater or equal to the number of classes = 2"
    train, val = stratified_split(torch.tensor(labels), 0.25, seed=0)
    assert len(train) and len(val) and sorted([*train.tolist(), *val.tolist()]) == list(range(len(labels)))


def test_one_example_cannot_be_split_and_says_so() -> None:
    with pytest.raises(ConfigError, match=r"cannot split 1 examples into training and validation sides"):
        stratified_split(torch.tensor([0]), 0.25, seed=0)


def test_a_fifo_in_place_of_an_outputs_record_is_not_read(tmp_path) -> None:
    # `report --out DIR` and `export --out DIR` read DIR's record to tell whether DIR is theirs to replace:
    # a FIFO there blocked that read for ever; it is not theirs
    import os

    from sparsearch.compact.export import CONTRACT_FILE, _is_export
    from sparsearch.report import _is_report

    os.mkfifo(tmp_path / "report.json")
    os.mkfifo(tmp_path / CONTRACT_FILE)
    assert not _is_report(tmp_path) and not _is_export(tmp_path)


@pytest.mark.parametrize("text", ["51E100", "9007199254740993FLOPs", "1.0000000000000001e18"])
def test_a_budget_reads_back_as_itself_or_is_refused(text: str) -> None:
    # read through a float, 51E100 FLOPs was accepted and printed as a number that read back as another;
    # 2**53 + 1 FLOPs became 2**53: budgets are read exactly now, and capped at 10^18 FLOPs
    from sparsearch.cost.budget import MAX_BUDGET_FLOPS, Budget

    try:
        budget = Budget.parse(text)
    except ConfigError as err:
        assert "at most 1e+18 FLOPs" in str(err)
        return
    assert Budget.parse(budget.text) == budget and budget.amount <= MAX_BUDGET_FLOPS
    assert budget.amount == 9007199254740993
