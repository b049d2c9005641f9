"""The hostile-input catalogue (second round): whatever happens, one line and a documented exit code;
bounds before work; names that cannot escape; passwords never shown; read-only commands that change
nothing; outputs refused before the work; signals that leave nothing behind; strict JSON.

Every refusal runs the real command line in its own process, in a fresh working directory, and is
measured: it ends in one ``error:`` line with exit code 2 within 30 s and 1 GB of memory (maximum
resident size), and the directory holds the same files afterwards.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsearch.cli import main
from sparsearch.spaces import get_space
from sparsearch.train import ModelSpec, build_task_model, save_checkpoint
from tests.reliability.test_bad_input import _page_table, snapshot

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
# Runs the command line and writes its peak memory (kB) where the test reads it, outside the directory.
# (VmHWM, not ru_maxrss: on Linux the latter keeps the forking parent's peak across exec.)
RUN = """
import re, sys
from sparsearch.cli import main
code = main(sys.argv[2:])
with open("/proc/self/status") as status, open(sys.argv[1], "w") as f:
    f.write(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1))
sys.exit(code)
"""
SPACE = """\
name: tiny
target: {model: clevr_cnn, input_size: 32}
knobs:
  k: {per: stage, min: 1, max: cardinality}
  routing: {choices: [softmax]}
"""
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "\n".join(  # 10^9 elements in 600 bytes
    [f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]" for i in range(1, 9)]
)
TRAIN = ["train", "--space", "gateconnect_cifar", "--epochs", "1", "--steps-per-epoch", "1"]


def _cli(args: list[str], cwd: Path, tmp: Path, timeout: float = 60) -> tuple[int, str, str, float, int]:
    """(exit code, stdout, stderr, seconds, peak kB) of the command line in its own process."""
    rss = tmp / f"rss-{time.monotonic_ns()}"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(rss), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - start
    return done.returncode, done.stdout, done.stderr, seconds, int(rss.read_text()) if rss.exists() else 0


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(text)


def _plugin(body: str) -> Callable[[Path], None]:
    return _write("hostile_plugin.py", "import torch\n\n" + body)


def _ckpt(edit: Callable[[dict], None] | None = None, weights: Callable[[dict], None] | None = None):
    def setup(d: Path) -> None:
        config = get_space("gateconnect_cifar").proxy_config({"stage2.fan_in": 2})
        spec = ModelSpec.for_data(config, "classification", tuple("0123456789"), 3)
        out = save_checkpoint(d / "ckpt", build_task_model(spec), spec, data={"spec": "digits"}, training={"seed": 0})
        if weights is not None:
            state = load_file(out / "model.safetensors")
            weights(state)
            save_file(state, out / "model.safetensors", metadata={"format": "sparsearch-checkpoint"})
            import hashlib

            meta = json.loads((out / "config.json").read_text())
            meta["weights"]["sha256"] = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
            (out / "config.json").write_text(json.dumps(meta))
        if edit is not None:
            meta = json.loads((out / "config.json").read_text())
            edit(meta)
            (out / "config.json").write_text(json.dumps(meta))

    return setup


def _ckpt_text(edit: Callable[[str], str]):
    """A checkpoint whose config.json text is edited (what a dict cannot hold: a key written twice)."""

    def setup(d: Path) -> None:
        _ckpt()(d)
        path = d / "ckpt" / "config.json"
        path.write_text(edit(path.read_text()))

    return setup


USER_CONFIG = {
    "family": "user",
    "factory": "hostile_factory:make",
    "input_size": 16,
    "in_channels": 3,
    "num_classes": 10,
    "pretrained": True,
    "blocks": [
        {
            "name": "a.0",
            "stage": "a",
            "in_channels": 8,
            "out_channels": 8,
            "cardinality": 2,
            "width": 2,
            "stride": 1,
            "in_size": [4, 4],
            "out_size": [4, 4],
            "k": 2,
            "routing": "constant",
        }
    ],
    "rest_macs": 0,
    "rest_params": 0,
    "head": "classifier",
}
# A factory module that would leave a file behind if it were ever imported.
HOSTILE_FACTORY = "open('imported', 'w').write('x')\n\ndef make(num_classes, in_channels):\n    return None\n"


def _factory_ckpt(d: Path) -> None:
    _ckpt(lambda meta: meta["model"].update(config=USER_CONFIG))(d)
    (d / "hostile_factory.py").write_text(HOSTILE_FACTORY)


def _nan(state: dict) -> None:
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.full_like(value, float("nan"))


def _shared_cifar(d: Path) -> None:
    """A few kB of pickle that stand for gigabytes: one row shared by 200,000 images."""
    (d / "c").mkdir()
    row = list(range(256)) * 12
    bomb = {b"data": [row] * 200_000, b"labels": [0] * 200_000}
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (d / "c" / name).write_bytes(pickle.dumps(bomb, protocol=2))
    (d / "c" / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"]}, protocol=2))


def _other_sqlite(d: Path, journal: str = "DELETE") -> None:
    con = sqlite3.connect(d / "app.db")
    con.execute(f"PRAGMA journal_mode={journal}")
    con.execute("CREATE TABLE notes (text TEXT)")
    con.execute("INSERT INTO notes VALUES ('mine')")
    con.commit()
    con.close()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in a few dozen bytes (no pixel data to speak of)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _folder(extra: Callable[[Path], None]) -> Callable[[Path], None]:
    """An image folder of two classes of small images, and ``extra`` done to its class ``a``."""

    def setup(d: Path) -> None:
        from PIL import Image

        for name, colour in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
            (d / "imgs" / name).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (12, 12), colour).save(d / "imgs" / name / f"{i}.png")
        extra(d / "imgs" / "a")

    return setup


def _vqa_folder(image: str, edit: Callable[[Path], None] = lambda root: None) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        root = d / "vqa"
        root.mkdir()
        (root / "train.json").write_text(json.dumps([{"image": image, "question": "what is it?", "answer": "x"}]))
        edit(root)

    return setup


# (id, setup(workdir) or None, arguments, what the line says)
CASES: list[tuple[str, Callable | None, list[str], str]] = [
    # 1. errors of any kind are one line with a documented code
    (
        "plug-in raises",
        _plugin("def make(input_size, seed):\n    raise RuntimeError('boom')\n"),
        [*TRAIN, "--data", "hostile_plugin:make", "--out", "run"],
        "failed: RuntimeError: boom",
    ),
    (
        "plug-in images full of NaN",
        _plugin(
            "def make(input_size, seed):\n"
            "    part = (torch.full((8, 3, 8, 8), float('nan')), torch.arange(8) % 2)\n"
            "    return part, part, part\n"
        ),
        [*TRAIN, "--data", "hostile_plugin:make", "--out", "run"],
        "data plug-in 'hostile_plugin:make', train: image 0 holds nan; floating-point images must be finite",
    ),
    (
        "plug-in images of height 0",
        _plugin(
            "def make(input_size, seed):\n"
            "    part = (torch.zeros(8, 3, 0, 8), torch.arange(8) % 2)\n"
            "    return part, part, part\n"
        ),
        [*TRAIN, "--data", "hostile_plugin:make", "--out", "run"],
        "data plug-in 'hostile_plugin:make', train: images must not be empty, got shape (8, 3, 0, 8)",
    ),
    (
        "plug-in takes no arguments",
        _plugin("def make():\n    return None\n"),
        [*TRAIN, "--data", "hostile_plugin:make", "--out", "run"],
        "failed: TypeError",
    ),
    (
        "config.json classes an integer",
        _ckpt(lambda m: m["model"].update(classes=10)),
        ["eval", "ckpt"],
        "classes must be a list of names",
    ),
    (
        "config.json key written twice",
        _ckpt_text(lambda text: text.replace("{", '{"format": "something-else",\n', 1)),
        ["eval", "ckpt"],
        "key 'format' written twice in one object, first at line 1",
    ),
    (
        "yaml key written twice",
        _write(
            "space.yaml",
            "name: a\ntarget: {model: gateconnect_cifar}\nknobs:\n  fan_in: {choices: [1]}\nname: b\n",
        ),
        ["flops", "space.yaml"],
        "key 'name' written twice in one mapping (lines 1 and 5)",
    ),
    # 2. bounds before work
    (
        "yaml alias bomb",
        _write("space.yaml", BOMB + "\n"),
        ["flops", "space.yaml"],
        "more than 100,000 values once its aliases are expanded",
    ),
    (
        "yaml nested 10,000 deep",
        _write("space.yaml", "a: " + "[" * 10_000 + "]" * 10_000 + "\n"),
        ["flops", "space.yaml"],
        "nested deeper than 64 levels",
    ),
    (
        "cardinality 1e9",
        _write(
            "space.yaml",
            "name: c\ntarget: {model: gateconnect_cifar, cardinality: 1000000000}\nknobs:\n  fan_in: {choices: [1]}\n",
        ),
        ["flops", "space.yaml"],
        "cardinality=1000000000 must be an integer in 1..1,024",
    ),
    (
        "input_size 100000",
        _write("space.yaml", SPACE.replace("input_size: 32", "input_size: 100000")),
        ["flops", "space.yaml"],
        "input_size=100000 must be an integer in 1..8,192",
    ),
    ("space /dev/zero", None, ["flops", "/dev/zero"], "/dev/zero: cannot read the space file (not a regular file)"),
    (
        "space over the size cap",
        _write("space.yaml", "# " + "x" * (1 << 20) + "\n"),
        ["flops", "space.yaml"],
        "larger than the 1,048,576-byte cap",
    ),
    (
        "config.json out_channels 1e6",
        _ckpt(lambda m: m["model"]["config"]["stages"][0].update(out_channels=1_000_000)),
        ["eval", "ckpt"],
        "out_channels=1000000 must be an integer in 1..65,536",
    ),
    (
        "config.json a huge model",
        _ckpt(lambda m: [s.update(out_channels=65_536, width=8_192) for s in m["model"]["config"]["stages"]]),
        ["eval", "ckpt"],
        "the cap is 2,000,000,000",
    ),
    (
        "config.json a model of 2.7 GB its weights do not hold",
        _ckpt(
            lambda m: [
                s.update(out_channels=c)
                for s, c in zip(m["model"]["config"]["stages"], (8_192, 16_384, 32_768), strict=True)
            ]
        ),
        ["eval", "ckpt"],
        "config.json does not match the weights",
    ),
    (
        "plug-in label 2^40",
        _plugin(
            "def make(input_size, seed):\n    x = torch.zeros(4, 3, 8, 8)\n"
            "    y = torch.tensor([0, 1, 2, 2**40])\n    return (x, y), (x, y)\n"
        ),
        [*TRAIN, "--data", "hostile_plugin:make", "--out", "run"],
        "label 1,099,511,627,776 is beyond",
    ),
    (
        "cifar shared references",
        _shared_cifar,
        [*TRAIN, "--data", "cifar10:c", "--out", "run"],
        "'data' must be a uint8 array, got list",
    ),
    # 3. names and URLs
    ("study name ../../x", None, ["study", "--budget", "50GFLOPs", "--study-name", "../../x"], "a name, not a path"),
    ("study name absolute", None, ["study", "--budget", "50GFLOPs", "--study-name", "/tmp/x"], "a name, not a path"),
    (
        "study name 5,000 characters",
        None,
        ["study", "--budget", "50GFLOPs", "--study-name", "n" * 5000],
        "use 1-100 letters",
    ),
    (
        "password in the query",
        None,
        ["study", "--budget", "50GFLOPs", "--storage", "postgresql://u@127.0.0.1:9/x?password=s3cretQ"],
        "?password=***: cannot connect",
    ),
    (
        "raw @ in the password",
        None,
        ["study", "--budget", "50GFLOPs", "--storage", "postgresql://u:s3c@ret9@127.0.0.1:9/x"],
        "u:***@127.0.0.1:9",
    ),
    # 4. read-only commands change nothing
    (
        "report on another application's database",
        _other_sqlite,
        ["report", "x", "--storage", "sqlite:///app.db"],
        "no study named 'x' in sqlite:///app.db (it holds no Optuna study at all)",
    ),
    (
        "report on another application's WAL-mode database",
        lambda d: _other_sqlite(d, "WAL"),
        ["report", "x", "--storage", "sqlite:///app.db"],
        "no study named 'x' in sqlite:///app.db (it holds no Optuna study at all)",
    ),
    (
        "validate on another application's WAL-mode database",
        lambda d: _other_sqlite(d, "WAL"),
        ["validate", "x", "--storage", "sqlite:///app.db"],
        "no study named 'x' in sqlite:///app.db (it holds no Optuna study at all)",
    ),
    (
        "worker on another application's WAL-mode database",
        lambda d: _other_sqlite(d, "WAL"),
        ["worker", "--storage", "sqlite:///app.db", "--study-name", "x"],
        "no study named 'x' in sqlite:///app.db (it holds no Optuna study at all)",
    ),
    (
        "worker on an empty file",
        _write("empty.db", ""),
        ["worker", "--storage", "sqlite:///empty.db", "--study-name", "x"],
        "no study named 'x' in sqlite:///empty.db",
    ),
    # 5. outputs refused before the work
    ("train --out /", None, [*TRAIN, "--out", "/"], "/ exists and is not a sparsearch checkpoint"),
    ("train --out a file", _write("afile", "mine"), [*TRAIN, "--out", "afile"], "afile exists and is not"),
    (
        "train --out an unwritable place",
        None,
        [*TRAIN, "--out", "/proc/sparsearch/run"],
        "/proc/sparsearch/run: cannot write the checkpoint there",
    ),
    (
        "checkpoint naming a model factory",
        _factory_ckpt,
        ["eval", "ckpt"],
        "the model comes from the factory 'hostile_factory:make', which runs your code: name it to allow it",
    ),
    (
        "space naming a missing factory",
        _write("space.yaml", "name: s\ntarget: {factory: 'nowhere_xyz:make', input_size: 16}\nknobs: {k: {}}\n"),
        ["flops", "space.yaml"],
        "model factory 'nowhere_xyz:make': cannot import 'nowhere_xyz'",
    ),
    (
        "latency budget without a table",
        None,
        ["study", "--budget", "150ms"],
        "studies/latency/default-b1.json: no latency table there; measure one with sparsearch latency-table",
    ),
    ("latency budget of 1e400 ms", None, ["study", "--budget", "1e400ms"], "at most an hour"),
    (
        "export to an unknown format",
        _ckpt(),
        ["export", "ckpt", "--format", "tflite", "--out", "e"],
        "Invalid value for '--format': 'tflite' is not one of 'pt2', 'onnx'",
    ),
    # 7. numbers that are not numbers
    ("all-NaN weights, eval", _ckpt(weights=_nan), ["eval", "ckpt"], "the weights hold non-finite values"),
    (
        "all-NaN weights, prune",
        _ckpt(weights=_nan),
        ["prune", "ckpt", "--out", "small"],
        "the weights hold non-finite values",
    ),
    # 8. limits on counts and times
    ("trials 1e9", None, ["study", "--budget", "50GFLOPs", "--trials", "1000000000"], "1..10,000"),
    ("heartbeat 1e11", None, ["study", "--budget", "50GFLOPs", "--heartbeat", "100000000000"], "at most 3,600"),
    (
        "in-memory storage with --jobs 2",
        None,
        ["study", "--budget", "50GFLOPs", "--jobs", "2", "--storage", "sqlite:///:memory:"],
        "cannot share it",
    ),
    # 9. data folders: bombs, loops, devices, wrong encodings
    (
        "image folder: a decompression bomb",
        _folder(lambda a: (a / "bomb.png").write_bytes(_png_header(40_000, 40_000))),
        [*TRAIN, "--data", "folder:imgs", "--out", "run"],
        "bomb.png: the image has more than 89,478,485 pixels (a decompression bomb?)",
    ),
    (
        "image folder: a link loop",
        _folder(lambda a: (a / "loop.png").symlink_to("loop.png")),
        [*TRAIN, "--data", "folder:imgs", "--out", "run"],
        "loop.png: not a regular file (a broken link, a link loop or a device)",
    ),
    (
        "image folder: a FIFO named as an image",
        _folder(lambda a: os.mkfifo(a / "pipe.png")),
        [*TRAIN, "--data", "folder:imgs", "--out", "run"],
        "pipe.png: not a regular file (a broken link, a link loop or a device)",
    ),
    (
        "VQA folder: an image that is a link loop",
        _vqa_folder("loop.png", lambda root: (root / "loop.png").symlink_to("loop.png")),
        ["train", "--space", "default", "--data", "vqa-folder:vqa", "--epochs", "1", "--out", "run"],
        "image 'loop.png' cannot be resolved",
    ),
    (
        "VQA folder: questions not in UTF-8",
        _vqa_folder(
            "x.png", lambda root: (root / "train.json").write_bytes('[{"question": "caf\xe9"}]'.encode("latin-1"))
        ),
        ["train", "--space", "default", "--data", "vqa-folder:vqa", "--epochs", "1", "--out", "run"],
        "train.json: not valid JSON ('utf-8' codec can't decode byte 0xe9",
    ),
]
SECRETS = ("s3cretQ", "s3c", "ret9")


@pytest.mark.parametrize(("setup", "args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_exit_2_bounded_and_nothing_written(setup, args, message, tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if setup is not None:
        setup(work)
    before = snapshot(work)
    code, out, err, seconds, kb = _cli(args, work, tmp_path)
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err and out == "", err
    assert message in err, err
    assert not any(secret in err for secret in SECRETS), err
    assert snapshot(work) == before, "something was written"
    assert seconds < 30 and kb < 1 << 20, (seconds, kb)


def test_a_bug_is_exit_3_with_internal_error_and_the_way_to_its_traceback(tmp_path, monkeypatch, capsys) -> None:
    import sparsearch.spaces

    def broken(name):
        raise KeyError("a bug")

    monkeypatch.setattr(sparsearch.spaces, "get_space", broken)
    assert main(["flops", "default"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("internal error: KeyError: 'a bug'") and err.count("\n") == 1
    assert "--debug" in err and "SPARSEARCH_DEBUG=1" in err
    monkeypatch.delenv("SPARSEARCH_DEBUG", raising=False)
    assert main(["--debug", "flops", "default"]) == 3
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def _slow_save_then(signum: int, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """`sparsearch train` over an existing checkpoint, its weights write slowed down, and ``signum`` sent
    while the new checkpoint is half written (its temporary directory exists)."""
    work = tmp_path / "work"
    work.mkdir()
    assert main([*TRAIN, "--out", str(work / "run")]) == 0
    before = snapshot(work)
    code = (
        "import sys, time\nimport sparsearch.train.checkpoint as c\nreal = c.save_tensors\n"
        "def slow(*a, **k):\n    real(*a, **k)\n    time.sleep(60)\nc.save_tensors = slow\n"
        "from sparsearch.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, *TRAIN, "--out", "run"],
        cwd=work,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list(work.glob(".run.tmp-*/model.safetensors")) and time.time() < deadline:
        time.sleep(0.1)
    assert list(work.glob(".run.tmp-*")), "the write never started"
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert snapshot(work) == before  # the previous checkpoint, byte for byte, and no temporary
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), work


def test_sigterm_during_a_checkpoint_write_keeps_the_previous_one_and_leaves_no_temporary(tmp_path) -> None:
    done, _ = _slow_save_then(signal.SIGTERM, tmp_path)
    assert done.returncode == 143 and done.stderr == "error: terminated (SIGTERM); temporary files removed\n"


def test_ctrl_c_during_a_checkpoint_write_is_one_line_and_leaves_no_temporary(tmp_path) -> None:
    done, _ = _slow_save_then(signal.SIGINT, tmp_path)
    assert done.returncode == 130 and done.stderr == "error: interrupted; temporary files removed\n"


def test_json_output_is_strict_even_for_non_finite_numbers(tmp_path, monkeypatch, capsys) -> None:
    import sparsearch.cost

    real = sparsearch.cost.cost_summary
    monkeypatch.setattr(sparsearch.cost, "cost_summary", lambda *a: {**real(*a), "odd": float("nan")})
    assert main(["flops", "default", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))["odd"] is None


def test_the_page_lists_exactly_the_cases() -> None:
    documented = _page_table(3, "Hostile input: one line whatever happens, bounds before work")
    cases = {c[0] for c in CASES}
    listed = [k for k in documented if not k.isdigit() and k != "code"]  # the exit-code table aside
    assert sorted(listed) == sorted(cases)
    for case, _, _, message in CASES:
        assert documented[case] == [message], case
