"""JSON read strictly: a key written twice in one object is refused, naming the key and both lines."""

from __future__ import annotations

import json

import pytest

from sparsearch.strict_json import parse_json


def test_plain_json_reads_as_json_loads_does() -> None:
    text = '{"a": [1, 2.5, null, {"b": "c"}], "d": {"a": 1}}'  # the same key in two objects is fine
    assert parse_json(text) == json.loads(text)
    assert parse_json(text.encode()) == json.loads(text)


def test_a_key_written_twice_is_refused_with_both_lines() -> None:
    text = '{\n  "format": 1,\n  "x": {"y": 2},\n  "format": 3\n}\n'
    with pytest.raises(json.JSONDecodeError) as err:
        parse_json(text)
    message = str(err.value)
    assert "key 'format' written twice in one object, first at line 2" in message and "line 4 column 3" in message


def test_nested_and_escaped_keys() -> None:
    with pytest.raises(json.JSONDecodeError, match="key 'q' written twice"):
        parse_json(b'[{"q": 1}, {"q": 2, "q": 3}]')
    with pytest.raises(json.JSONDecodeError, match="written twice"):  # the same key spelled two ways
        parse_json('{"a": 1, "\\u0061": 2}')
