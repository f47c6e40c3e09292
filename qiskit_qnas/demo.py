"""Demo: train a 4-qubit, 2-layer HQNN on Iris and report its test accuracy.

    python -m qiskit_qnas.demo [--seed 0] [--epochs 30]

The architecture is the paper's Iris size with its sparse entanglers,
``Architecture(4, 2, embedding="angle_y", entangler=("odd", "even"))``: a classical pre-layer, the
quantum layer simulated exactly by the statevector engine behind qiskit-machine-learning's
``TorchConnector``, and a Linear head. Iris is split with a stratified 30 % hold-out.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch


def load_iris_split(seed: int = 0):
    """Standardised Iris features, split with a stratified 30 % hold-out: X_train, X_test, y_train, y_test."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qiskit_qnas.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the initial weights and training")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: fastest for a model this small)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"invalid --epochs={args.epochs}; allowed: an integer >= 1")
    if args.threads < 1:
        parser.error(f"invalid --threads={args.threads}; allowed: an integer >= 1")
    torch.set_num_threads(args.threads)

    from .model import predict_logits, train_model
    from .space import Architecture

    arch = Architecture(4, 2, embedding="angle_y", entangler=("odd", "even"))
    X_train, X_test, y_train, y_test = load_iris_split(args.seed)
    print(f"Iris: {len(X_train)} training and {len(X_test)} test samples (stratified 30 % hold-out, "
          f"seed {args.seed})")
    print(f"architecture: {arch.key} ({arch.n_qubits} qubits, {arch.n_layers} layers, "
          f"{arch.n_weights} circuit weights)")
    start = time.perf_counter()
    model = arch.model(n_features=X_train.shape[1], n_classes=3, seed=args.seed)
    losses = train_model(model, X_train, y_train, epochs=args.epochs, seed=args.seed)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(predict_logits(model, X_test).argmax(1) == y_test))
    print(f"trained {args.epochs} epochs in {seconds:.1f} s (final loss {losses[-1]:.3f})")
    print(f"test accuracy: {accuracy:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
