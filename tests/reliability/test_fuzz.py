"""Fuzzing (hypothesis): each parser and file format the tool reads, fed inputs no one wrote by hand.

Each input must end in a value or a one-line input error (a :class:`~sparsearch.errors.SparsearchError`
whose message is one line): never another exception, never longer than 10 s (hypothesis' deadline),
and the process never grows past 1 GB. The inputs are mutations of valid ones (bytes flipped, cut,
spliced; JSON and YAML values swapped for others) and wholly random ones.

The slow tier (``make test-slow``) runs 1,000 inputs per parser, the same ones each run (seed 0);
``make fuzz`` runs 10,000 (``SPARSEARCH_FUZZ_EXAMPLES``), new ones each time (the seed is printed;
``SPARSEARCH_FUZZ_SEED`` repeats a run).
Every crash found became a regular test (see ``tests/reliability/test_fuzz_found.py``).
"""

from __future__ import annotations

import io
import json
import os
import resource
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from sparsearch.errors import SparsearchError

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("SPARSEARCH_FUZZ_EXAMPLES", "1000"))
SEED = int(os.environ.get("SPARSEARCH_FUZZ_SEED", "0"))
MEMORY_KB = 1 << 20  # 1 GB


def fuzz(test):
    """Run ``test`` over EXAMPLES inputs, each within 10 s."""
    configured = settings(
        max_examples=EXAMPLES,
        deadline=timedelta(seconds=10),
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=False,
    )(test)
    return seed(SEED)(configured)


FIGURES: dict[str, dict[str, int]] = {}  # per parser: inputs, values, one-line errors


def one_line_or_value(parser: str, call, *args):
    """The call's value, or None for a one-line input error; anything else fails the test."""
    counts = FIGURES.setdefault(parser, {"inputs": 0, "values": 0, "errors": 0})
    counts["inputs"] += 1
    try:
        value = call(*args)
    except SparsearchError as err:
        message = str(err)
        assert message and message.isprintable() and "Traceback" not in message, message
        counts["errors"] += 1
        return None
    counts["values"] += 1
    return value


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    FIGURES["process"] = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "seed": SEED}
    print(json.dumps(FIGURES, indent=1))
    if os.environ.get("SPARSEARCH_FUZZ_FIGURES"):
        Path(os.environ["SPARSEARCH_FUZZ_FIGURES"]).write_text(json.dumps(FIGURES, indent=1) + "\n")


@pytest.fixture(autouse=True)
def _memory_bound():
    yield
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert peak_kb < MEMORY_KB + 600_000, f"the process grew to {peak_kb / 1e6:.1f} GB"  # above torch's own


# -- mutations ------------------------------------------------------------------------------------------

SPECIAL = "{}[]:,'\"&*!|>-#%@`?\\\n\t 0123456789.eE+-_=xyz\u00e9\u2028\x00"


@st.composite
def mutated_text(draw, base: str) -> str:
    """``base`` with up to three spans replaced by random text (YAML/JSON's special characters often)."""
    text = base
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        text = text[:i] + draw(st.text(alphabet=st.sampled_from(SPECIAL) | st.characters(), max_size=12)) + text[j:]
    return text


@st.composite
def mutated_bytes(draw, base: bytes) -> bytes:
    """``base`` with bytes flipped, a span cut out or repeated, or the tail cut off."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "repeat", "truncate", "insert"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i : i + draw(st.integers(1, 64))]
        elif kind == "repeat":
            data[i:i] = data[i : i + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
        elif kind == "truncate":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(max_size=16))
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -1, 1, 2**31, 2**63, 1e308, "", "x" * 300, "../../etc/passwd", "softmax", "cuda"])
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)


@st.composite
def mutated_json(draw, base):
    """``base`` (a JSON value) with up to three values somewhere in it replaced, removed or added."""
    value = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        node, key = value, None
        parents = []
        while isinstance(node, dict | list) and node and draw(st.integers(0, 3)):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            parents.append((node, key))
            node = node[key]
        if not parents:
            continue
        parent, key = parents[-1]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[key] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        else:
            parent.append(draw(JSON_VALUES))
    return value


# -- 1. the space YAML ---------------------------------------------------------------------------------


def _space_texts() -> list[str]:
    from sparsearch.spaces.registry import get_space_and_text, space_names

    return [get_space_and_text(name)[1] for name in space_names()]


SPACES = _space_texts()


@fuzz
@given(
    st.one_of(
        st.sampled_from(SPACES).flatmap(mutated_text),
        st.sampled_from(SPACES)
        .map(lambda t: __import__("yaml").safe_load(t))
        .flatmap(mutated_json)
        .map(lambda v: __import__("yaml").safe_dump(v)),
        st.text(max_size=200),
    )
)
def test_space_yaml(text: str) -> None:
    from sparsearch.spaces import parse_space

    one_line_or_value("space YAML", parse_space, text, "fuzz.yaml")


# -- 2. the budget grammar -----------------------------------------------------------------------------

BUDGETS = ["50GFLOPs", "25GMACs", "5e10", "150ms", "0.2s", "1.5TFLOPs", "12.34GFLOPs", "800MMACs"]


@fuzz
@given(st.one_of(st.sampled_from(BUDGETS).flatmap(mutated_text), st.text(max_size=40)))
def test_budget(text: str) -> None:
    from sparsearch.cost.budget import Budget

    budget = one_line_or_value("budget", Budget.parse, text)
    if budget is not None:
        assert Budget.parse(budget.text) == budget  # what it prints, it reads back


# -- 3. Sort-of-CLEVR options ----------------------------------------------------------------------------

OPTIONS = ["train=200,test=50,seed=3", "train=10", "seed=0", ""]


@fuzz
@given(st.one_of(st.sampled_from(OPTIONS).flatmap(mutated_text), st.text(max_size=40)))
def test_sort_of_clevr_options(text: str) -> None:
    from sparsearch.data.sort_of_clevr import parse_options

    one_line_or_value("Sort-of-CLEVR options", parse_options, text)


# -- 4. a checkpoint's config.json ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from sparsearch.spaces import get_space
    from sparsearch.train import ModelSpec, build_task_model, save_checkpoint

    config = get_space("gateconnect_cifar").proxy_config({"stage2.fan_in": 2})
    spec = ModelSpec.for_data(config, "classification", tuple("0123456789"), 3)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "c", build_task_model(spec), spec, data={"spec": "digits"})


def test_config_json(checkpoint: Path) -> None:
    from sparsearch.train.checkpoint import load_checkpoint

    base = json.loads((checkpoint / "config.json").read_text())
    path = checkpoint / "config.json"

    @fuzz
    @given(st.one_of(mutated_json(base).map(json.dumps), st.just(json.dumps(base)).flatmap(mutated_text)))
    def run(text: str) -> None:
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        one_line_or_value("config.json", load_checkpoint, checkpoint)

    run()


# -- 5. safetensors files --------------------------------------------------------------------------------


def _safetensors() -> bytes:
    from safetensors.torch import save

    return save({"w": torch.randn(2, 3), "b": torch.zeros(3), "n": torch.arange(4)}, metadata={"format": "pt"})


SAFETENSORS = _safetensors()


@st.composite
def mutated_header(draw) -> bytes:
    """The file with its JSON header's values swapped for others, its length field kept true."""
    n = int.from_bytes(SAFETENSORS[:8], "little")
    header = json.loads(SAFETENSORS[8 : 8 + n])
    text = json.dumps(draw(mutated_json(header))).encode()
    return len(text).to_bytes(8, "little") + text + SAFETENSORS[8 + n :]


def test_safetensors(tmp_path: Path) -> None:
    from sparsearch.train.checkpoint import load_weights_file

    path = tmp_path / "w.safetensors"

    @fuzz
    @given(st.one_of(mutated_header(), mutated_bytes(SAFETENSORS), st.binary(max_size=64)))
    def run(data: bytes) -> None:
        path.write_bytes(data)
        one_line_or_value("safetensors", load_weights_file, path)

    run()


# -- 6. image files of an image folder --------------------------------------------------------------------


def _images() -> list[bytes]:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (10, 14, 3), dtype=np.uint8)
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        out.append(buffer.getvalue())
    return out


IMAGES = _images()


def test_image_files(tmp_path: Path) -> None:
    from sparsearch.data.image_folder import decode

    path = tmp_path / "x.png"

    @fuzz
    @given(
        st.one_of(st.sampled_from(IMAGES).flatmap(mutated_bytes), st.binary(max_size=64)),
        st.none() | st.integers(0, 2**31),
    )
    def run(data: bytes, crop_seed: int | None) -> None:
        path.write_bytes(data)
        image = one_line_or_value("image files", decode, str(path), 8, crop_seed)
        if image is not None:
            assert image.shape == (3, 8, 8) and image.dtype == torch.uint8

    run()


# -- 7. a VQA folder's question files ---------------------------------------------------------------------

QUESTIONS = [
    {"image": "a.png", "question": "What colour is it?", "answer": "red"},
    {"image": "b.png", "question": "Is it round?", "answers": ["yes", "yes", "no"]},
    {"image": "a.png", "question": "Is it red?", "answer": "yes"},
    {"image": "b.png", "question": "What colour is it?", "answer": "blue"},
]


def test_vqa_questions(tmp_path: Path) -> None:
    from sparsearch.data.vqa_folder import load_vqa_folder

    root = tmp_path / "vqa"
    root.mkdir()
    for name in ("a.png", "b.png"):
        (root / name).write_bytes(IMAGES[0])
    base = json.dumps(QUESTIONS)

    @fuzz
    @given(
        st.one_of(
            mutated_json(QUESTIONS).map(json.dumps).map(str.encode),
            st.just(base).flatmap(mutated_text).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.just(base.encode()).flatmap(mutated_bytes),
        ),
        st.booleans(),
    )
    def run(data: bytes, with_val: bool) -> None:
        (root / "train.json").write_bytes(data)
        (root / "val.json").unlink(missing_ok=True)
        if with_val:
            (root / "val.json").write_bytes(data)
        one_line_or_value("VQA questions", load_vqa_folder, str(root), 8, 0.25, 0)

    run()
