"""Wall time of the default Iris search, split into its phases, and the chosen model's test accuracy.

    python benchmarks/search_iris.py [--seed 0] [--digits]

Iris: stratified 70/30 split, seed 0, ``QNASEstimator(search_space=SearchSpace(qubits=(2, 4),
layers=(1, 2)), qubit_budget=2)`` with default settings. ``--digits`` also runs the documented
digits configuration (up to 8 qubits). Writes ``benchmarks/results/search_iris.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split

from qiskit_qnas import QNASEstimator, SearchSpace

#: the digits configuration the README documents
DIGITS = dict(search_space=SearchSpace(qubits=(4, 8), layers=(1, 2), embeddings=("angle_x", "angle_y")),
              qubit_budget=4, learning_rate=0.005, supercircuit_epochs=20, finetune_epochs=2, final_epochs=30)


def run(name: str, loader, seed: int, **settings) -> dict:
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    started = time.perf_counter()
    est = QNASEstimator(random_state=seed, verbose=0, **settings).fit(X_train, y_train)
    total = time.perf_counter() - started
    t = est.timings_
    return {"data set": name, "total s": total, "SuperCircuit s": t["supercircuit_training"],
            "candidates s": t["candidate_evaluation"], "of which cut finding s": t["cut_finding"],
            "final model s": t["final_training"], "evaluated": len(est.result_),
            "front": len(est.pareto_front_), "test accuracy": est.score(X_test, y_test),
            "chosen": est.best_architecture_.key}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--digits", action="store_true", help="also run the digits configuration")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "search_iris.md"))
    args = parser.parse_args(argv)
    rows = [run("iris", load_iris, args.seed, search_space=SearchSpace(qubits=(2, 4), layers=(1, 2)), qubit_budget=2)]
    if args.digits:
        rows.append(run("digits", load_digits, args.seed, **DIGITS))
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = " ".join(["python benchmarks/search_iris.py", *(sys.argv[1:] if argv is None else argv)])
    text = (f"# Iris search (`{command}`)\n\nMeasured on {platform.machine()}, {os.cpu_count()} cores, "
            f"load average {load:.2f}, seed {args.seed}.\n\n" + "\n".join(lines) + "\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
