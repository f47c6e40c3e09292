"""From which error rates on does knowing the device's noise pay? Quantum-dominant models on the
literature's tasks, on emulated IBM devices whose noise is scaled as a study variable.

    python benchmarks/noise_study.py --data-dir ../shared/data [--datasets mnist_4 mnist_2]
        [--devices fez yorktown yorktown_x2 yorktown_x4 yorktown_x8] [--seeds 0 1 2] [--train 2000] [--test 500]

Data: ``qiskit_qnas.datasets.load_dataset(name, data_dir=...)`` (MNIST-4: digits 0-3; MNIST-2: 3 vs 6;
the official splits, each image's centre 24x24 crop average-pooled to 4x4 = 16 features), the first
``--train`` training and ``--test`` test images. Search space: 4 qubits, 1-4 layers, the default
embeddings, rotations and entanglers; ``hidden=None`` (no trainable layer before the circuit), the
library's defaults otherwise. Devices: FakeFez (a current Heron), FakeYorktownV2 (an early 5-qubit
Falcon), and FakeYorktownV2 with every error rate scaled by 2, 4 and 8 (``scaled_noise_backend``),
emulated on Aer with their noise models. For every data set and seed:

* (a) noise-blind: the search and training on the exact engine (one fit, scored on every device);
* (b) device-aware search: the search measures validation error on the device's emulation, training
  stays exact (``backend=device, target_mode="aer"``);
* (c) (b) with noise-aware training (``noise_aware=True``), which normalises the read-outs
  (``output_norm``'s default with it).

Reported per row: the test accuracy on the device emulated on Aer with its noise model, with exact
noisy expectation values and with 4,096 shots (``score(X_test, y_test, on_target=<that Aer target>)``,
the same target for every pipeline), the noise-free accuracy of (a),
the chosen architecture, its two-qubit gates after routing onto the device (``transpile``,
optimization level 1, seed 0) and the fit's training and total seconds; then, per device, the means
over seeds, the noise's cost to (a) (noise-free minus on-device) and how much of it (b) and (c)
recover. Writes ``benchmarks/results/noise_study.md`` (``--out``). Expensive: a noise-aware fit of
MNIST-4 on 2,000 images takes 10-13 min on one core here; the full grid is 2 x 5 x 3 of them.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _common import command_line, git_commit, load_average, machine, write_report
from qiskit import transpile
from qiskit_ibm_runtime.fake_provider import FakeFez, FakeYorktownV2

from qiskit_qnas import QNASEstimator, SearchSpace
from qiskit_qnas.backends import scaled_noise_backend
from qiskit_qnas.datasets import load_dataset
from qiskit_qnas.targets import resolve_target

DEVICES = {"fez": lambda: FakeFez(), "yorktown": lambda: FakeYorktownV2(),
           "yorktown_x2": lambda: scaled_noise_backend(FakeYorktownV2(), 2),
           "yorktown_x4": lambda: scaled_noise_backend(FakeYorktownV2(), 4),
           "yorktown_x8": lambda: scaled_noise_backend(FakeYorktownV2(), 8)}
PIPELINES = ("a", "b", "c")
PIPELINE_NAMES = {"a": "(a) noise-blind", "b": "(b) device-aware search", "c": "(c) + noise-aware training"}
SHOTS = 4096


def two_qubit_gates(arch, backend) -> int:
    """Two-qubit gates of ``arch``'s circuit routed onto ``backend``."""
    isa = transpile(arch.circuit(), backend, optimization_level=1, seed_transpiler=0)
    return sum(1 for instruction in isa.data if instruction.operation.num_qubits == 2)


def on_device(estimator: QNASEstimator, X, y, device, seed: int) -> tuple[float, float]:
    """Test accuracy on ``device`` emulated on Aer with its noise model: exact noisy expectation values,
    and ``SHOTS`` shots (the same target for every pipeline, whatever its fit's ``target_mode``)."""
    accuracies = []
    for shots in (None, SHOTS):
        target = resolve_target(device, mode="aer", shots=shots, seed=seed)
        try:
            accuracies.append(estimator.score(X, y, on_target=target))
        finally:
            target.close()
    return accuracies[0], accuracies[1]


def fit(X, y, seed: int, device=None, noise_aware: bool = False) -> tuple[QNASEstimator, float]:
    settings = {} if device is None else {"backend": device, "target_mode": "aer", "noise_aware": noise_aware}
    started = time.perf_counter()
    estimator = QNASEstimator(search_space=SearchSpace(qubits=(4, 4), layers=(1, 4)), qubit_budget=4, hidden=None,
                              random_state=seed, verbose=0, **settings).fit(X, y)
    return estimator, time.perf_counter() - started


def row(dataset: str, device: str, seed: int, pipeline: str, estimator: QNASEstimator, seconds: float,
        accuracies: tuple[float, float], noise_free: float | None, backend) -> dict:
    arch = estimator.best_architecture_
    timings = estimator.timings_
    training = timings.get("supercircuit_training", 0.0) + timings.get("final_training", 0.0)
    return {"dataset": dataset, "device": device, "seed": seed, "pipeline": pipeline, "exact": accuracies[0],
            "shots": accuracies[1], "noise_free": noise_free, "arch": arch.key, "layers": arch.n_layers,
            "two_qubit": two_qubit_gates(arch, backend), "training_s": training, "fit_s": seconds,
            "load": load_average().split(" / ")[0]}


def markdown_row(r: dict) -> str:
    noise_free = "" if r["noise_free"] is None else f"{r['noise_free']:.3f}"
    return (f"| {r['dataset']} | {r['device']} | {r['seed']} | {PIPELINE_NAMES[r['pipeline']]} | {r['exact']:.3f} | "
            f"{r['shots']:.3f} | {noise_free} | `{r['arch']}` | {r['layers']} | {r['two_qubit']} | "
            f"{r['training_s']:.0f} | {r['fit_s']:.0f} | {r['load']} |")


def summary(rows: list[dict]) -> list[str]:
    """Per data set and device: means over seeds, the noise's cost to (a), and what (b) and (c) recover."""
    lines = ["| data set | device | seeds | (a) noise-free | (a) on device | (b) on device | (c) on device | "
             "noise's cost to (a) | recovered by (b) | recovered by (c) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for device in dict.fromkeys(r["device"] for r in rows if r["dataset"] == dataset):
            cell = {p: [r for r in rows if r["dataset"] == dataset and r["device"] == device and r["pipeline"] == p]
                    for p in PIPELINES}
            seeds = sorted({r["seed"] for rs in cell.values() for r in rs})
            mean = {p: float(np.mean([r["exact"] for r in rs])) if rs else None for p, rs in cell.items()}
            free = float(np.mean([r["noise_free"] for r in cell["a"]])) if cell["a"] else None
            cost = None if free is None or mean["a"] is None else free - mean["a"]

            recovered = {p: "-" if cost is None or cost <= 0 or mean[p] is None or mean["a"] is None
                         else f"{(mean[p] - mean['a']) / cost:.0%}" for p in ("b", "c")}
            shown = {p: "-" if v is None else f"{v:.3f}" for p, v in mean.items()}
            lines.append(f"| {dataset} | {device} | {','.join(map(str, seeds))} | "
                         f"{'-' if free is None else f'{free:.3f}'} | {shown['a']} | {shown['b']} | {shown['c']} | "
                         f"{'-' if cost is None else f'{cost:+.3f}'} | {recovered['b']} | {recovered['c']} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder with mnist/ (and fashion_mnist/) IDX files")
    parser.add_argument("--datasets", nargs="+", default=["mnist_4", "mnist_2"])
    parser.add_argument("--devices", nargs="+", choices=list(DEVICES), default=list(DEVICES))
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=2000, help="first N training images (default 2000)")
    parser.add_argument("--test", type=int, default=500, help="first N test images (default 500)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "noise_study.md"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    rows: list[dict] = []
    for dataset in args.datasets:
        data = load_dataset(dataset, data_dir=args.data_dir)
        X, y = data.X_train[:args.train], data.y_train[:args.train]
        X_test, y_test = data.X_test[:args.test], data.y_test[:args.test]
        for seed in args.seeds:
            blind = None
            if "a" in args.pipelines:
                blind, seconds = fit(X, y, seed)
                noise_free = blind.score(X_test, y_test)
            for device in args.devices:
                backend = DEVICES[device]()
                if blind is not None:
                    rows.append(row(dataset, device, seed, "a", blind, seconds,
                                    on_device(blind, X_test, y_test, backend, seed), noise_free, backend))
                    print(markdown_row(rows[-1]), flush=True)
                for pipeline in ("b", "c"):
                    if pipeline in args.pipelines:
                        estimator, fit_seconds = fit(X, y, seed, backend, noise_aware=pipeline == "c")
                        rows.append(row(dataset, device, seed, pipeline, estimator, fit_seconds,
                                        on_device(estimator, X_test, y_test, backend, seed), None, backend))
                        print(markdown_row(rows[-1]), flush=True)
                        estimator.close()
    text = "\n".join([
        "# Noise study: quantum-dominant models on emulated and noise-scaled IBM devices", "",
        f"`{command_line(argv)}` at commit {git_commit()}; {machine()}; 1-minute load average beside every "
        f"row. {args.train} training / {args.test} test images; 4 qubits, 1-4 layers, `hidden=None`, defaults "
        f"otherwise. On-device accuracy: the device emulated on Aer with its noise model (`resolve_target(device, "
        f"mode='aer')` as `on_target`), exact noisy expectation values and {SHOTS} shots.", "",
        "| data set | device | seed | pipeline | on device (exact) | on device (4,096 shots) | noise-free | chosen | "
        "layers | 2q gates routed | training s | fit s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|", *map(markdown_row, rows), "",
        "## Means over seeds (exact noisy expectation values)", "", *summary(rows), ""])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
