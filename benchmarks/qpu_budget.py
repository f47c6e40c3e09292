"""QPU budget: what a search on an IBM device costs all on the device and in multi-fidelity mode, and what each finds.

    python benchmarks/qpu_budget.py [--cases iris mnist] [--data-dir DIR] [--device fez] [--seed 0]

For each case, against a current IBM device (``--device``, default FakeFez: a 156-qubit Heron,
``default_rep_delay`` 250 us):

1. the QPU plans (``QNASEstimator._plan``, nothing run): the default search with every candidate
   measured on the device (``fidelity="target"``) and the multi-fidelity search (``"multi"``, the
   default on a device: every candidate on the device's emulation, the leader and its near-ties on
   the device), in device seconds as IBM bills them;
2. both searches run through the public API, with every device measurement taken on the device's
   emulation (:class:`EmulatedDevice`: Aer with ``NoiseModel.from_backend`` of the device, its
   shots sampled binomially) and billed as the device bills it. Runtime's local testing mode is not
   used: it simulates every qubit of a 156-qubit device and fails here ("a circuit requires more
   memory than max_memory_mb"), so an accounted figure is the estimate of what was submitted;
3. the device jobs and shots each search submitted, the QPU seconds accounted, the chosen models
   and their test accuracy on the device's emulation: at the device's 4096 shots (billed like the
   device, ``score(on_target=device)``) and as exact noisy expectation values (the device at
   infinitely many shots).

``--plans-only`` (default: mnist) plans a case without running its searches. Emulating MNIST's
default space is out of reach on this 2-core machine: Aer's exact noisy simulation of an 8-qubit
ring candidate, routed onto 12 of FakeFez's physical qubits, is a 12-qubit density matrix and took
18.5 s for 2 validation samples (measured; the search measures 1,200 per candidate, ~72 candidates).
The torch trajectory engine (:class:`~qiskit_qnas.noise.TrainingNoise`, 8 depolarising trajectories per
sample, not Aer's channel) is no way out on these cores: 573 s for the 1,200 samples of such a
candidate (q8-l2-zz-rxryrz-all1.all1), 5-31 s for candidates that stay on 8 physical qubits (2 cores,
load below 1; both searches would take over 10 CPU-hours).

Cases: ``iris`` is the quickstart (``SearchSpace(qubits=(2, 4), layers=(1, 2))``, ``qubit_budget=2``,
a stratified 70/30 split, ``random_state=0``); ``mnist`` the default MNIST search of the search-
fidelity benchmark (the first 6,000 training and 2,000 test images, ``SearchSpace(qubits=(4, 8),
layers=(1, 2))``, ``qubit_budget=4``). Writes ``benchmarks/results/qpu_budget.md`` (``--out``)
with the command, the commit, the machine and its load at start and end.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from _common import command_line, git_commit, load_average, machine
from qiskit_aer import AerSimulator
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from qiskit_qnas import QNASEstimator, SearchSpace
from qiskit_qnas.backends import backend_name, fake_backend
from qiskit_qnas.datasets import load_dataset
from qiskit_qnas.targets import AerTarget, RuntimeTarget

ROOT = Path(__file__).resolve().parent
CASES = {
    "iris": dict(space=dict(qubits=(2, 4), layers=(1, 2)), qubit_budget=2),
    "mnist": dict(space=dict(qubits=(4, 8), layers=(1, 2)), qubit_budget=4),
}


class EmulatedDevice(RuntimeTarget):
    """A device billed as IBM bills it (its durations, repetition delay, Runtime options) whose jobs
    run on its emulation: ``AerSimulator.from_backend`` with the target's shots sampled binomially
    (:class:`~qiskit_qnas.targets.AerTarget`), one emulation per shot count, shared by copies."""

    def __init__(self, backend, **kwargs):
        super().__init__(backend, **kwargs)
        self.name = f"emulated-{backend_name(backend)}"
        self.emulations: dict[int, AerTarget] = {}
        self.simulator = AerSimulator.from_backend(backend)

    def expectation_values(self, arch, inputs, weights):
        emulation = self.emulations.get(int(self.shots))
        if emulation is None:
            emulation = self.emulations[int(self.shots)] = AerTarget(self.simulator, shots=int(self.shots),
                                                                       seed=self.seed)
        return emulation.expectation_values(arch, inputs, weights)


def load(case: str, data_dir: str | None, seed: int):
    if case == "iris":
        X, y = load_iris(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
        return X_train, y_train, X_test, y_test
    data = load_dataset("mnist", data_dir=data_dir)
    return data.X_train[:6000], data.y_train[:6000], data.X_test[:2000], data.y_test[:2000]


def device_usage(result) -> tuple[int, int]:
    """(device jobs, circuits x shots) the search submitted: one job per device measurement."""
    measured = [m for c in result.candidates for m in c.measurements if m["kind"] == "device"]
    return len(measured), sum(int(m["shots"]) * int(m["n_samples"]) for m in measured)


def run_case(case: str, args) -> tuple[list[str], list[str]]:
    X_train, y_train, X_test, y_test = load(case, args.data_dir, args.seed)
    settings = dict(search_space=SearchSpace(**CASES[case]["space"]), qubit_budget=CASES[case]["qubit_budget"],
                    random_state=args.seed, verbose=0)
    device = EmulatedDevice(fake_backend(args.device), seed=args.seed)
    exact_noisy = device.emulator()
    rows = []
    plans = {}
    for label, fidelity in (("multi-fidelity", "multi"), ("all on the device", "target")):
        estimator = QNASEstimator(backend=device, fidelity=fidelity, **settings)
        plans[fidelity] = estimator._plan(X_train, y_train).qpu_plan
        if case in args.plans_only:
            rows.append(f"| {case} | {label} | {plans[fidelity].seconds / 60:,.1f} | not run | | | | | | | |")
            continue
        started = time.perf_counter()
        estimator.fit(X_train, y_train)
        wall = time.perf_counter() - started
        jobs, shots = device_usage(estimator.result_)
        at_shots = estimator.score(X_test, y_test, on_target=device)
        exact = estimator.score(X_test, y_test, on_target=exact_noisy)
        planned, accounted = plans[fidelity].seconds / 60, estimator.result_.qpu_seconds / 60
        rows.append(f"| {case} | {label} | {planned:,.1f} | {accounted:,.2f} | {jobs} | {shots:,} | "
                    f"{estimator.best_architecture_.key} | {at_shots:.4f} | {exact:.4f} | "
                    f"{estimator.scoring_qpu_seconds_:,.0f} | {wall:.0f} |")
        print(rows[-1], flush=True)
    ratio = plans["target"].seconds / plans["multi"].seconds
    notes = [f"- {case} on {device.name}: the multi-fidelity plan is {ratio:,.0f}x smaller than the all-on-device plan "
             f"({plans['multi'].seconds / 60:,.1f} against {plans['target'].seconds / 60:,.1f} QPU minutes)"]
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(CASES))
    parser.add_argument("--data-dir", help="mnist: folder with the IDX .gz files (or its mnist/ subfolder)")
    parser.add_argument("--device", default="fez", help="fake IBM backend (default fez)")
    parser.add_argument("--plans-only", nargs="*", default=["mnist"], choices=tuple(CASES),
                        help="cases whose searches are not run, only planned (default mnist: see the module doc)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "qpu_budget.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    load_start = load_average()
    header = ("| case | search | planned QPU min | accounted QPU min | device jobs | device circuits x shots | "
              "chosen | test acc. at 4096 shots | test acc. exact noisy | test scoring QPU s | search wall s |")
    rows, notes = [header, "|" + "---|" * 11], []
    for case in args.cases:
        case_rows, case_notes = run_case(case, args)
        rows += case_rows
        notes += case_notes
    report = "\n".join([
        "# QPU budget: all-on-device against multi-fidelity searches", "",
        f"`{command_line()}` at {git_commit()}; {machine()}; load {load_start} at start, {load_average()} at end.",
        "", *rows, "", *notes, "",
        "Planned: the plan printed before any job (every evaluation costed at the space's costliest member, an "
        "upper bound). Accounted: `result_.qpu_seconds`, the device seconds of every job submitted, as IBM bills "
        "them. Device circuits x shots: of every device job. Test accuracy on the held-out split, with the chosen "
        "model's quantum layer on the device's emulation.", ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
