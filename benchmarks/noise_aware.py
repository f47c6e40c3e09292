"""Noisy validation accuracy of exact and noise-aware training on FakeManilaV2's noise, and its cost.

    python benchmarks/noise_aware.py [--seeds 0 1 2 3 4] [--cases chain ring] [--layers 2] [--test-size 0.3]

Digits restricted to classes 0-3 (y < 4, 720 samples, 64 features), a stratified test split
(``--test-size``, drawn per seed) held out of the search, one search per case, seed and setting on
the rest: ``QNASEstimator(search_space=SearchSpace(qubits=(4, 4), layers=(L, L),
embeddings=("angle_y",), rotations=("ry",), entanglers=(E,)), qubit_budget=4,
backend=FakeManilaV2(), target_mode="aer", population_size=2, n_generations=1, reevaluations=0,
random_state=seed)``
with ``noise_aware=False`` and ``True``, otherwise default settings. Cases: ``chain`` (E = "chain",
the circuit maps onto FakeManila's line of qubits without SWAPs) and ``ring`` (E = "all", a CX
ring whose closing pair is routed with SWAPs: 22 CX in the ISA circuit against the chain's 6 at L = 2;
``--layers`` sets L, default 2). The same seed gives
both runs the same validation split, the same initial weights and the same candidates, so the only
difference is whether the SuperCircuit and the candidates' fine-tuning train on the exact engine or
on the injected FakeManilaV2 gate and readout errors (the ``TrainingNoise`` default: the averaged
channel of the Aer noise model's own errors, simulated exactly as a density matrix); every
validation accuracy is measured on Aer with FakeManilaV2's full noise model (thermal relaxation
included). Noise-aware training normalises the read-outs (``output_norm``'s default with
``noise_aware=True``; exact training does not). The chosen model (fine-tuned on training and
validation data) is then scored on the held-out split on that target (``score(...,
on_target=True)``) and on the exact engine: the accuracy that says whether the model holds up under
the device's noise, on samples no step of the search saw (the validation split of 100-150 samples
moves by 0.007-0.01 a sample). The two held-out columns of one row are the same weights on both:
their difference is what the noise itself does to that model, apart from how training went. Nothing
is tuned on these figures.

Also reports, before any search, what the training objective costs and how exactly it is
followed: milliseconds per forward and backward pass of a batch of 16 and the relative error of
the gradient of a cross-entropy against the exact averaged channel's, for the exact engine (no
noise), the averaged channel simulated exactly (density matrix) and K = 1, 4, 8 sampled Pauli
trajectories per sample (depolarising channels of the same average infidelities: their error
includes that model's bias besides the sampling); and how strongly the noise moves ``<Z_i>``
(least-squares slope of noisy against exact values, Aer and the injected average). Writes
``benchmarks/results/noise_aware.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import command_line, git_commit, machine, write_report
from qiskit_ibm_runtime.fake_provider import FakeManilaV2
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from qiskit_qnas import Architecture, QNASEstimator, SearchSpace
from qiskit_qnas.engines.statevector import torch_threads_for
from qiskit_qnas.noise import TrainingNoise
from qiskit_qnas.supercircuit import compiled_program
from qiskit_qnas.targets import resolve_target

ENTANGLERS = {"chain": "chain", "ring": "all"}
#: reevaluations=0: each candidate's accuracy is its one search-time measurement (the fine-tuning this
#: benchmark compares), not pooled with the chosen model's recipe
SETTINGS = dict(qubit_budget=4, target_mode="aer", population_size=2, n_generations=1, reevaluations=0)
CONTRACT_SEEDS = (0, 1, 2)


def space_of(case: str, layers: int) -> SearchSpace:
    return SearchSpace(qubits=(4, 4), layers=(layers, layers), embeddings=("angle_y",), rotations=("ry",),
                       entanglers=(ENTANGLERS[case],))


def arch_of(case: str, layers: int) -> Architecture:
    return Architecture(n_qubits=4, n_layers=layers, embedding="angle_y", rotation="ry", entangler=ENTANGLERS[case])


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def search(X, y, X_test, y_test, case: str, layers: int, seed: int, noise_aware: bool, **overrides) -> dict:
    started = time.perf_counter()
    est = QNASEstimator(search_space=space_of(case, layers), **SETTINGS, backend=FakeManilaV2(),
                        noise_aware=noise_aware, random_state=seed, verbose=0, **overrides).fit(X, y)
    total_s = time.perf_counter() - started
    candidates = [c for c in est.result_.candidates if not c.failed]
    return {"best": est.best_candidate_.val_accuracy,
            "test_on_target": est.score(X_test, y_test, on_target=True), "test_exact": est.score(X_test, y_test),
            "mean": float(np.mean([c.val_accuracy for c in candidates])),
            "by_key": {c.architecture.key: c.val_accuracy for c in candidates},
            "supercircuit_s": est.timings_["supercircuit_training"],
            "finetune_s": float(sum(c.finetune_seconds for c in candidates)),
            "total_s": total_s, "load": load()}


def objective_costs(case: str, layers: int, batch: int = 16, repeats: int = 30) -> list[str]:
    """Table rows: ms per forward + backward and the gradient's relative error against the exact
    averaged channel's, for the exact engine, the density matrix and K sampled trajectories."""
    target = resolve_target(FakeManilaV2(), mode="aer")
    arch = arch_of(case, layers)
    noise = TrainingNoise(target)
    program = noise.program(arch)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-np.pi, np.pi, (batch, arch.n_inputs)))
    w0 = torch.tensor(rng.uniform(-np.pi, np.pi, arch.n_weights))
    head = torch.tensor(rng.normal(0, 2, (4, arch.n_qubits)))
    labels = torch.as_tensor(rng.integers(0, 4, batch))

    def gradient(expectation) -> torch.Tensor:
        w = w0.clone().requires_grad_()
        torch.nn.functional.cross_entropy(expectation(w) @ head.T, labels).backward()
        return w.grad

    methods = {"exact engine (no noise)": lambda w: compiled_program(arch).expectation(x, w),
               "averaged channel, density matrix": lambda w: program.averaged_expectation(x, w)}
    for k in (1, 4, 8):
        methods[f"K = {k} trajectories"] = lambda w, k=k: program.trajectory_mean(x, w, k)
    reference = gradient(methods["averaged channel, density matrix"])
    rows = []
    torch.manual_seed(0)
    with torch_threads_for(batch * 2**arch.n_qubits):  # one thread, as training runs these circuits
        timings = [(name, *timed(gradient, expectation, reference, repeats)) for name, expectation in methods.items()]
    for name, ms, error in timings:
        rows.append(f"| {case} | {name} | {ms:.1f} | {error:.3f} | {load():.2f} |")
    return rows


def timed(gradient, expectation, reference: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(ms per gradient, mean relative error of the gradient against ``reference``)."""
    gradient(expectation)  # warm-up
    started = time.perf_counter()
    errors = [float((gradient(expectation) - reference).norm() / reference.norm()) for _ in range(repeats)]
    return 1e3 * (time.perf_counter() - started) / repeats, float(np.mean(errors))


def noise_strength(case: str, layers: int, n_samples: int = 24) -> tuple[float, float]:
    """Slopes of noisy <Z_i> against exact <Z_i> on random angles: Aer (FakeManilaV2) and the injected average."""
    target = resolve_target(FakeManilaV2(), mode="aer")
    arch = arch_of(case, layers)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-np.pi, np.pi, (n_samples, arch.n_inputs)))
    w = torch.tensor(rng.uniform(-np.pi, np.pi, arch.n_weights))
    exact = compiled_program(arch).expectation(x, w).detach().numpy().ravel()
    aer = target.expectation_values(arch, x.numpy(), w.numpy()).values.ravel()
    injected = TrainingNoise(target).exact_average(arch, x, w).ravel()
    return float(np.polyfit(exact, aer, 1)[0]), float(np.polyfit(exact, injected, 1)[0])


def summary(case: str, seeds: list[int], results: dict) -> list[str]:
    # the bar is over seeds 0-2; the other seeds run are summarised with them
    groups = [[s for s in seeds if s in CONTRACT_SEEDS]]
    if sorted(seeds) != sorted(groups[0]):
        groups.append(seeds)
    lines = []
    for chosen in groups:
        picked = [seeds.index(s) for s in chosen]
        if not picked:
            continue
        label = "seeds " + ", ".join(map(str, chosen))
        for measure, what in (("best", "best candidate's noisy validation accuracy"),
                              ("test_on_target", "chosen model's held-out accuracy on the noisy target")):
            mean = {a: float(np.mean([results[a][i][measure] for i in picked])) for a in results}
            verdict = "higher" if mean[True] > mean[False] else ("equal" if mean[True] == mean[False] else "lower")
            lines.append(f"- {case}, {label}: {what}, mean: exact training {mean[False]:.3f}, noise-aware "
                         f"{mean[True]:.3f} (noise-aware {verdict}).")
    same = [(e["by_key"][k], n["by_key"][k]) for e, n in zip(results[False], results[True]) for k in e["by_key"]
            if k in n["by_key"]]
    wins, ties = sum(n > e for e, n in same), sum(n == e for e, n in same)
    cost = {a: float(np.mean([r["supercircuit_s"] + r["finetune_s"] for r in results[a]])) for a in results}
    shift = [r["test_on_target"] - r["test_exact"] for a in results for r in results[a]]
    lines += [f"- {case}, the noise's own effect on a chosen model's held-out accuracy (noisy target minus exact "
              f"engine, same weights), over all {len(shift)} models: {min(shift):+.3f} to {max(shift):+.3f}.",
              f"- {case}, the same candidates (same architecture and seed) in both settings: noise-aware higher in "
              f"{wins}, equal in {ties}, lower in {len(same) - wins - ties} of {len(same)}.",
              f"- {case}, training cost (SuperCircuit + fine-tuning, mean per search): exact {cost[False]:.1f} s, "
              f"noise-aware {cost[True]:.1f} s ({cost[True] / max(cost[False], 1e-9):.1f}x)."]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cases", nargs="+", choices=sorted(ENTANGLERS), default=["chain", "ring"])
    parser.add_argument("--layers", type=int, default=2, help="circuit layers L (default 2)")
    parser.add_argument("--test-size", type=float, default=0.3, help="held-out fraction (default 0.3)")
    parser.add_argument("--supercircuit-epochs", type=int, default=None, help="(smoke runs) default: the estimator's")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "noise_aware.md"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    cost_rows = [row for case in args.cases for row in objective_costs(case, args.layers)]
    strength = {case: (*noise_strength(case, args.layers), load()) for case in args.cases}
    for row in cost_rows:
        print(row, flush=True)
    X, y = load_digits(return_X_y=True)
    X, y = X[y < 4], y[y < 4]
    overrides = {} if args.supercircuit_epochs is None else {"supercircuit_epochs": args.supercircuit_epochs}
    rows, lines = [], []
    for case in args.cases:
        results = {False: [], True: []}
        for seed in args.seeds:
            X_search, X_test, y_search, y_test = train_test_split(X, y, test_size=args.test_size, stratify=y,
                                                                  random_state=seed)
            for aware in (False, True):
                r = search(X_search, y_search, X_test, y_test, case, args.layers, seed, aware, **overrides)
                results[aware].append(r)
                rows.append(f"| {case} | {seed} | {'noise-aware' if aware else 'exact'} | {r['best']:.3f} | "
                            f"{r['mean']:.3f} | {r['test_on_target']:.3f} | {r['test_exact']:.3f} | "
                            f"{r['supercircuit_s']:.1f} | {r['finetune_s']:.1f} | "
                            f"{r['total_s']:.1f} | {r['load']:.2f} |")
                print(rows[-1], flush=True)
        lines += summary(case, args.seeds, results)
    text = "\n".join([
        "# Noise-aware training on FakeManilaV2 noise", "",
        f"`{command_line(argv)}` at commit {git_commit()}; {machine()}; load average (1 min) beside every "
        f"figure. Digits, classes 0-3, 4 qubits, {args.layers} layers, angle_y / ry, entangler chain (`chain`) or ring "
        f"(`ring`, `entangler=\"all\"`); a held-out test split of {args.test_size:g} per seed; validation "
        f"and test accuracy on the noisy target measured on Aer with FakeManilaV2's noise model. Noise-aware "
        f"training trains on the averaged channel of that noise model's errors, simulated exactly (the default), "
        f"with QuantumNAT's read-out normalisation (`output_norm`, on by default with noise-aware training).",
        "",
        "## Training objective: cost and fidelity (batch of 16, before any search)", "",
        "| case | forward pass | ms per forward + backward | gradient's relative error vs the averaged channel's "
        "| load |", "|---|---|---|---|---|", *cost_rows, "",
        *[f"- {case}: noise strength, slope of noisy against exact <Z_i> on random angles: Aer {a:.3f}, injected "
          f"average {i:.3f} (1 = no noise; load {ld:.2f})." for case, (a, i, ld) in strength.items()], "",
        "## Searches", "",
        "| case | seed | training | best val acc (noisy) | mean val acc (noisy) | test acc (noisy target) | "
        "test acc (exact engine) | SuperCircuit s | fine-tuning s | search s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|", *rows, "", *lines, ""])
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
