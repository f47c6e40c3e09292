"""QPU budget: what a search on an IBM device costs all on the device and in multi-fidelity mode, and what each finds.

    python benchmarks/qpu_budget.py [--cases iris mnist] [--data-dir DIR] [--device fez] [--seed 0]

For each case, against a current IBM device (``--device``, default FakeFez: a 156-qubit Heron,
``default_rep_delay`` 250 us) in Runtime's local testing mode:

1. the QPU plans (``QNASEstimator._plan``, nothing run): the default search with every candidate
   measured on the device (``fidelity="target"``) and the multi-fidelity search (``"multi"``, the
   default on a device: every candidate on the device's emulation, the leader and its near-ties on
   the device), in device seconds as IBM bills them;
2. the multi-fidelity search itself, through the public API against the fake device in local testing
   mode: the QPU seconds it accounted, the device jobs and shots it submitted, its chosen model;
3. the all-on-device search. Local testing mode samples every shot on Aer, which for MNIST's 1,200
   validation circuits x 4,096 shots x ~70 candidates is out of reach here, so it runs on the
   device's emulation instead (``AerSimulator.from_backend``: exact noisy expectation values, the
   device at infinitely many shots; said so in the table) with the same settings and seed;
4. both chosen models scored on the held-out test split on the device: in local testing mode
   (``score(on_target=device)``, the device's shots) where that is affordable here (``--device-test``,
   default: Iris), and on its emulation for every case.

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
from qiskit_qnas.backends import fake_backend
from qiskit_qnas.datasets import load_dataset

ROOT = Path(__file__).resolve().parent
CASES = {
    "iris": dict(space=dict(qubits=(2, 4), layers=(1, 2)), qubit_budget=2),
    "mnist": dict(space=dict(qubits=(4, 8), layers=(1, 2)), qubit_budget=4),
}


def load(case: str, data_dir: str | None, seed: int):
    if case == "iris":
        X, y = load_iris(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
        return X_train, y_train, X_test, y_test
    data = load_dataset("mnist", data_dir=data_dir)
    return data.X_train[:6000], data.y_train[:6000], data.X_test[:2000], data.y_test[:2000]


def device_usage(result) -> tuple[int, int]:
    """(device jobs, device shots) the search submitted: one job per device measurement."""
    measured = [m for c in result.candidates for m in c.measurements if m["kind"] == "device"]
    return len(measured), sum(int(m["shots"]) * int(m["n_samples"]) for m in measured)


def run_case(case: str, args) -> list[str]:
    X_train, y_train, X_test, y_test = load(case, args.data_dir, args.seed)
    settings = dict(search_space=SearchSpace(**CASES[case]["space"]), qubit_budget=CASES[case]["qubit_budget"],
                    random_state=args.seed, verbose=0)
    device = fake_backend(args.device)
    name = type(device).__name__
    plans = {fidelity: QNASEstimator(backend=device, fidelity=fidelity, **settings)._plan(X_train, y_train).qpu_plan
             for fidelity in ("target", "multi")}
    emulation = AerSimulator.from_backend(device)
    rows, lines = [], []
    started = time.perf_counter()
    multi = QNASEstimator(backend=device, fidelity="multi", **settings).fit(X_train, y_train)
    multi_seconds = time.perf_counter() - started
    started = time.perf_counter()
    everything = QNASEstimator(backend=emulation, target_mode="aer", **settings).fit(X_train, y_train)
    everything_seconds = time.perf_counter() - started
    for label, est, plan, where, wall in (
            ("multi-fidelity", multi, plans["multi"], f"{name} (local testing mode)", multi_seconds),
            ("all on the device", everything, plans["target"], f"{name}'s emulation (exact noisy values)",
             everything_seconds)):
        if label == "all on the device":  # it ran on the emulation: what it would have submitted to the device
            measured = [(c, m) for c in est.result_.candidates for m in c.measurements]
            jobs = len(measured)
            shots = sum(int(m["n_samples"]) * plan.items[0].shots for _, m in measured)
            accounted = sum(c.runtime.seconds for c, _ in measured)
        else:
            jobs, shots = device_usage(est.result_)
            accounted = est.result_.qpu_seconds
        emulated = est.score(X_test, y_test, on_target=emulation)
        on_device = (f"{est.score(X_test, y_test, on_target=device):.4f}" if case in args.device_test else "-")
        rows.append(f"| {case} | {label} | {where} | {plan.seconds / 60:,.1f} | {accounted / 60:,.2f} | {jobs} | "
                    f"{shots:,} | {est.best_architecture_.key} | {emulated:.4f} | {on_device} | {wall:.0f} |")
        est.close()
    ratio = plans["target"].seconds / plans["multi"].seconds
    lines.append(f"- {case}: the multi-fidelity plan is {ratio:,.0f}x smaller than the all-on-device plan "
                 f"({plans['multi'].seconds / 60:,.1f} vs {plans['target'].seconds / 60:,.1f} QPU minutes)")
    return rows, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(CASES))
    parser.add_argument("--data-dir", help="mnist: folder with the IDX .gz files (or its mnist/ subfolder)")
    parser.add_argument("--device", default="fez", help="fake IBM backend (default fez)")
    parser.add_argument("--device-test", nargs="*", default=["iris"], choices=tuple(CASES),
                        help="cases whose chosen models are also scored in local testing mode (default iris)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "qpu_budget.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    load_start = load_average()
    header = ("| case | search | candidates measured on | planned QPU min | accounted QPU min | device jobs | "
              "device shots | chosen | test acc. (emulation) | test acc. (local testing mode) | wall s |")
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
        "upper bound). Accounted: the device seconds of what was submitted (multi-fidelity), or the billed estimate "
        "of every evaluation the all-on-device search made (it ran on the emulation). Device shots: circuits x "
        "shots of every device job.", ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
