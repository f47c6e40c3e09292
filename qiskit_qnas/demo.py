"""``make demo``: a QNAS search on Iris (embedded in scikit-learn), end to end on one machine.

    python -m qiskit_qnas.demo [--seed 0] [--qubit-budget 2] [--out DIR] [--quiet]

Stratified 70/30 split; ``QNASEstimator(search_space=SearchSpace(qubits=(2, 4), layers=(1, 2)),
qubit_budget=2)`` with default settings; prints the Pareto front, the chosen architecture, its test
accuracy and circuit, and the wall time of each phase.
"""

from __future__ import annotations

import argparse
import time

from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from .estimator import QNASEstimator
from .space import SearchSpace


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(prog="python -m qiskit_qnas.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the search (default 0)")
    parser.add_argument("--qubit-budget", type=int, default=2, help="qubit budget of the cutting objective")
    parser.add_argument("--out", default=None, help="also write a run directory (result, plot, model, circuit)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=args.seed)
    print(f"Iris: {len(X_train)} training / {len(X_test)} test samples; searching qubits 2-4, layers 1-2, "
          f"every embedding, rotation and entangler; qubit budget {args.qubit_budget}")
    started = time.perf_counter()
    est = QNASEstimator(search_space=SearchSpace(qubits=(2, 4), layers=(1, 2)), qubit_budget=args.qubit_budget,
                        random_state=args.seed, verbose=0 if args.quiet else 1, checkpoint_dir=args.out)
    est.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    accuracy = est.score(X_test, y_test)
    print(f"\nPareto front ({len(est.pareto_front_)} of {len(est.result_)} evaluated candidates; * = chosen):")
    print(est.result_.format_table())
    best = est.best_candidate_
    print(f"\nchosen: {best.architecture}  validation error {best.val_error:.3f}, runtime proxy "
          f"{best.runtime_proxy:.3g} s, {best.n_subcircuits} subcircuit(s) at budget {args.qubit_budget}")
    print(est.best_circuit().draw(output="text", fold=-1))
    timings = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in est.timings_.items())
    print(f"\ntest accuracy: {accuracy:.4f}   total {seconds:.1f} s ({timings})")
    if args.out:
        print(f"run directory: {args.out}")
    return accuracy


if __name__ == "__main__":
    main()
