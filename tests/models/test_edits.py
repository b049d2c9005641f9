"""Edit records: parsed once, stored without their evidence, replayed onto a built model."""

from __future__ import annotations

import pytest

from sparsearch.models import create_model
from sparsearch.models.edits import Edit, EditError, apply_edits


def test_an_edit_round_trips_through_its_stored_record() -> None:
    edit = Edit("paths", "blocks.conv2_0", {"keep": [0, 2]}, {"removed": [1, 3]})
    assert edit.stored() == {"op": "paths", "module": "blocks.conv2_0", "keep": [0, 2]}
    assert edit.reported() == {**edit.stored(), "evidence": {"removed": [1, 3]}}
    assert Edit.parse(edit.stored()) == Edit("paths", "blocks.conv2_0", {"keep": [0, 2]})
    assert Edit.parse(edit.reported()) == edit
    assert edit.moved("backbone").module == "backbone.blocks.conv2_0" and edit.moved("") is edit


@pytest.mark.parametrize("record", [None, [], {"op": "grow", "module": "x"}, {"op": "paths"}, {"module": 3}])
def test_what_is_not_an_edit_is_refused(record) -> None:
    with pytest.raises(EditError, match="not an edit"):
        Edit.parse(record)


def test_records_and_edits_replay_alike() -> None:
    net = create_model("clevr_cnn", input_size=32, cardinality=4, k=2, routing="softmax")
    a = apply_edits(
        create_model("clevr_cnn", input_size=32, cardinality=4, k=2, routing="softmax"),
        [Edit("paths", "blocks.conv2_0", {"keep": [0, 3]})],
    )
    b = apply_edits(net, [{"op": "paths", "module": "blocks.conv2_0", "keep": [0, 3]}])
    assert a.blocks["conv2_0"].cardinality == b.blocks["conv2_0"].cardinality == 2
