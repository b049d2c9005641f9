"""The seeds' claims at small scale on real data, each run through the command line as a user would.

- top-k (seed 000): k = C/2 of every ResNeXt block vs the dense network (the default space's proxy on
  easy-VQA);
- GateConnect (seed 003): learned fan-in K vs fixed random K vs the fixed full sum, and the parameters
  `sparsearch prune` removes at K = 1 (the GateConnect space's proxy on digits);
- CondConv (seed 001): 1 vs 4 vs 8 experts, accuracy vs FLOPs (CC-MobileNetV1's proxy on digits);
- relational (the RN paper, seed 000's CLEVR model): CNN + RN vs CNN + MLP on Sort-of-CLEVR's unary and
  relational questions, and the RN's CNN at k = C/2 vs k = C (seed 000, Table 2), 5 epochs;
  relational_8_epochs: the first two again for 8 epochs.

Each arm is trained with `sparsearch train` for every seed and evaluated on the test split with
`sparsearch eval`; results are the mean and standard deviation over seeds.

Usage: python experiments/seed_claims.py [--seeds 0 1 2] [--only topk gateconnect condconv]
                                          [--out docs/experiments/results.json] [--json]
       python experiments/seed_claims.py --markdown docs/experiments/results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparsearch.safe_io import write_text
from sparsearch.train import describe_machine

# The digits proxies learn slowly under their recipes (GateConnect's: 0.10 -> 0.72 validation accuracy
# over 30 epochs, while the plain ResNeXt sum reaches 0.99 in 20); 20 epochs fit three seeds per arm.
DIGITS = ["--epochs", "20"]
SIGMOID = ["--set", "routing=sigmoid"]
# Sort-of-CLEVR at CPU scale: 2,000 training images (40,000 questions, 36,000 after the validation
# images), the test split's 200 images (4,000 questions).
SORT_OF_CLEVR = ["--data", "sort-of-clevr:train=2000", "--epochs", "5"]
# The same data for 8 epochs (288,000 questions seen), the CNN + RN against the CNN + MLP only: about 25
# minutes per seed on 2 cores.
SORT_OF_CLEVR_LONGER = ["--data", "sort-of-clevr:train=2000", "--epochs", "8"]
MLP_SPACE = "experiments/sort_of_clevr_mlp.yaml"  # run from the repository root (make experiments)
# (experiment, arm, the `sparsearch train` arguments after --space; the seed and --out are added)
ARMS = {
    # One epoch, as measured (the default space's proxy now trains 2 epochs).
    "topk": [
        ("dense (k = C = 32, no gate)", ["default", "--epochs", "1"]),
        (
            "top-k, k = C/2 = 16 (softmax gate)",
            ["default", "--set", "k=16", "--set", "routing=softmax", "--epochs", "1"],
        ),
    ],
    # GateConnect at the seed's recipe (SGD 0.05, cosine within App. E's phases). Before the module
    # averaged its K inputs, no GateConnect network trained at this rate (0.26-0.55 test accuracy).
    "gateconnect": [
        ("fixed full (ResNeXt sum, K = C = 8)", ["gateconnect_cifar", *DIGITS]),
        ("fixed random, K = 1", ["gateconnect_cifar", "--set", "fan_in=1", "--connectivity", "fixed_random", *DIGITS]),
        ("learned, K = 1", ["gateconnect_cifar", "--set", "fan_in=1", *DIGITS]),
        ("fixed random, K = 4", ["gateconnect_cifar", "--set", "fan_in=4", "--connectivity", "fixed_random", *DIGITS]),
        ("learned, K = 4", ["gateconnect_cifar", "--set", "fan_in=4", *DIGITS]),
    ],
    "relational": [
        ("CNN + RN, k = C = 12", ["sort_of_clevr", *SORT_OF_CLEVR]),
        (
            "CNN + RN, k = C/2 = 6 (softmax gate)",
            ["sort_of_clevr", "--set", "k=6", "--set", "routing=softmax", *SORT_OF_CLEVR],
        ),
        ("CNN + MLP, k = C = 12", [MLP_SPACE, *SORT_OF_CLEVR]),
    ],
    "relational_8_epochs": [
        ("CNN + RN, k = C = 12", ["sort_of_clevr", *SORT_OF_CLEVR_LONGER]),
        ("CNN + MLP, k = C = 12", [MLP_SPACE, *SORT_OF_CLEVR_LONGER]),
    ],
    "condconv": [
        ("1 expert (MobileNetV1)", ["condconv_mobilenet_v1", "--set", "experts=1", *SIGMOID, *DIGITS]),
        ("4 experts", ["condconv_mobilenet_v1", "--set", "experts=4", *SIGMOID, *DIGITS]),
        ("8 experts", ["condconv_mobilenet_v1", "--set", "experts=8", *SIGMOID, *DIGITS]),
    ],
}
PRUNED = "learned, K = 1"  # the arm whose checkpoints are compacted with `sparsearch prune`


def sparsearch(*args: str) -> dict:
    """Run a sparsearch command with --json and return its output."""
    cmd = [sys.executable, "-m", "sparsearch", *args, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: sparsearch {' '.join(args)}\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def run_arm(experiment: str, label: str, args: list[str], seed: int, work: Path) -> dict:
    slug = "".join(c if c.isalnum() else "-" for c in label)
    out = work / f"{experiment}-{slug}-s{seed}"
    start = time.perf_counter()
    trained = sparsearch("train", "--space", *args, "--seed", str(seed), "--out", str(out), "--device", "cpu")
    tested = sparsearch("eval", str(out), "--device", "cpu")
    row = {
        "experiment": experiment,
        "arm": label,
        "seed": seed,
        "command": f"sparsearch train --space {' '.join(args)} --seed {seed} --out OUT",
        "val_accuracy": trained["val_accuracy"],
        "test_accuracy": tested["accuracy"],
        "test_examples": tested["examples"],
        "test_groups": {name: group["accuracy"] for name, group in tested.get("per_group", {}).items()},
        "executed_flops": trained["executed_flops"],
        "dense_flops": trained["dense_flops"],
        "params": trained["params"],
        "train_seconds": trained["train_seconds"],
    }
    if label == PRUNED:
        pruned = sparsearch("prune", str(out), "--out", str(out) + "-compact", "--no-export", "--device", "cpu")
        before, after = pruned["costs"]["before"], pruned["costs"]["after"]
        row["pruned"] = {
            "params": [before["params"], after["params"]],
            "executed_flops": [before["network_executed_flops"], after["network_executed_flops"]],
            "test_accuracy": sparsearch("eval", str(out) + "-compact", "--device", "cpu")["accuracy"],
        }
    row["seconds"] = time.perf_counter() - start
    print(f"{experiment} | {label} | seed {seed}: test {row['test_accuracy']:.4f}", file=sys.stderr, flush=True)
    return row


def _stats(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarize(rows: list[dict]) -> list[dict]:
    arms: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        arms.setdefault((row["experiment"], row["arm"]), []).append(row)
    out = []
    for (experiment, arm), chosen in arms.items():
        entry = {
            "experiment": experiment,
            "arm": arm,
            "seeds": [r["seed"] for r in chosen],
            "test_accuracy": _stats([r["test_accuracy"] for r in chosen]),
            "val_accuracy": _stats([r["val_accuracy"] for r in chosen]),
            "executed_flops": chosen[0]["executed_flops"],
            "params": chosen[0]["params"],
            "train_seconds": _stats([r["train_seconds"] for r in chosen]),
        }
        groups = [name for name in chosen[0].get("test_groups", {}) if "/" not in name]
        entry["test_groups"] = {g: _stats([r["test_groups"][g] for r in chosen]) for g in groups}
        if "pruned" in chosen[0]:
            entry["pruned_params"] = _stats([r["pruned"]["params"][1] for r in chosen])
            entry["pruned_flops"] = _stats([r["pruned"]["executed_flops"][1] for r in chosen])
            entry["pruned_test_accuracy"] = _stats([r["pruned"]["test_accuracy"] for r in chosen])
        out.append(entry)
    return out


def _pm(stats: dict, digits: int = 4) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def markdown(result: dict) -> str:
    """One table per experiment: test accuracy (mean ± std over seeds), FLOPs, parameters."""
    out = []
    for experiment in ARMS:
        rows = [s for s in result["summary"] if s["experiment"] == experiment]
        if not rows:
            continue
        out += [
            f"**{experiment}** (seeds {', '.join(map(str, rows[0]['seeds']))})",
            "",
            "| arm | test accuracy | val accuracy | executed FLOPs | params | train s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        groups = list(rows[0].get("test_groups", {}))
        if groups:
            out[-2] = out[-2].replace(" | val accuracy", "".join(f" | {g}" for g in groups) + " | val accuracy")
            out[-1] = out[-1].replace(" | ---: |", " | ---: |" + " ---: |" * len(groups), 1)
        for s in rows:
            shown = "".join(f" | {_pm(s['test_groups'][g])}" for g in groups)
            out.append(
                f"| {s['arm']} | {_pm(s['test_accuracy'])}{shown} | {_pm(s['val_accuracy'])} "
                f"| {s['executed_flops'] / 1e6:.2f} M | {s['params']:,} | {s['train_seconds']['mean']:.0f} |"
            )
            if "pruned_params" in s:
                out.append(
                    f"| ... after `sparsearch prune` | {_pm(s['pruned_test_accuracy'])} | "
                    f"| {s['pruned_flops']['mean'] / 1e6:.2f} M | {s['pruned_params']['mean']:,.0f} "
                    f"(± {s['pruned_params']['std']:,.0f}) | |"
                )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="print the tables of a results file, and run nothing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    parser.add_argument("--out", type=Path, help="write the rows and the summary to this JSON file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--merge", action="store_true", help="keep the rows of --out for the experiments and seeds not run this time"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparsearch-exp-") as tmp:
        for experiment in args.only:
            for label, arm_args in ARMS[experiment]:
                for seed in args.seeds:
                    rows.append(run_arm(experiment, label, arm_args, seed, Path(tmp)))
    if args.merge and args.out and args.out.is_file():
        kept = [
            r
            for r in json.loads(args.out.read_text())["rows"]
            if r["experiment"] in ARMS and not (r["experiment"] in args.only and r["seed"] in args.seeds)
        ]
        rows = kept + rows
    arms = {e: [label for label, _ in arm_list] for e, arm_list in ARMS.items()}
    rows.sort(key=lambda r: (list(ARMS).index(r["experiment"]), arms[r["experiment"]].index(r["arm"]), r["seed"]))
    result = {
        "machine": describe_machine(),
        "seeds": sorted({r["seed"] for r in rows}),
        "rows": rows,
        "summary": summarize(rows),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(result, indent=2) + "\n", "results")
    if args.json:
        print(json.dumps(result["summary"], indent=2))
    else:
        for s in result["summary"]:
            acc = s["test_accuracy"]
            print(f"{s['experiment']:12} {s['arm']:40} test {acc['mean']:.4f} ± {acc['std']:.4f} (n={acc['n']})")


if __name__ == "__main__":
    main()
