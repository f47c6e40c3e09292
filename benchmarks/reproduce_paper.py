"""Reproduce (and try to beat) the QNAS paper's headline results on Iris, MNIST and Fashion-MNIST.

    python benchmarks/reproduce_paper.py DATASET [--data-dir DIR] [--out DIR] [--quick] [options]

DATASET is ``iris``, ``mnist`` or ``fashion_mnist``. The run:

1. searches a space of the paper's size (2-8 qubits, 1-4 layers, every embedding, rotation block
   and entangler, ranges 1-3) with :class:`~qiskit_qnas.QNASEstimator` under a qubit budget of 4
   (population 12, 6 generations, as in the paper's code), and reports the chosen model's accuracy
   on the official test set (Iris: a stratified 80/20 split, 30 test samples), its architecture and
   objectives, the Pareto front (``pareto.png``) and how often every embedding and entangler
   appears on the front and in the top decile by validation error;
2. swaps the chosen candidate's embedding (and its entangler) for every other value and evaluates
   each twin exactly like a search candidate: a controlled test of the paper's findings; the
   embedding twins are also trained from scratch, which shows where the swap ranks inherited
   weights rather than embeddings;
3. trains, on the same data for the same number of epochs, the chosen architecture from scratch
   and the classical ablation (the same pre-layer -> Linear to ``n_qubits`` features -> tanh ->
   the same head: the quantum layer replaced by a tanh of equal width), so the quantum layer's
   contribution is visible;
4. writes ``benchmarks/results/reproduce_<dataset>[_quick].md`` with the command, wall times, load
   and the comparison with the paper.

Everything is resumable: the run directory (``--out``, default ``benchmarks/runs/<dataset>[_quick]``)
holds the estimator's checkpoints (SuperCircuit weights, one checkpoint per generation) and one JSON
file per finished phase; running the same command again continues where it stopped.

Images are scaled to [0, 1] and standardised with the training set's global mean and deviation;
the pre-layer for images is a small CNN (``hidden="cnn"``: two 5x5 conv + GELU + max-pool stages of 8 and
16 channels, then a dense 128) unless ``--hidden`` says otherwise (``--hidden 64`` is the paper's
784 -> 64 ReLU pre-layer).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import shlex
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import ClassicalAblation, accuracy
from torch import nn

from qiskit_qnas import Architecture, QNASEstimator, SearchSpace
from qiskit_qnas.model import check_hidden, train_model
from qiskit_qnas.result import SearchResult, json_default
from qiskit_qnas.space import EMBEDDINGS, ENTANGLERS
from qiskit_qnas.supercircuit import SuperCircuit, finetune

ROOT = Path(__file__).resolve().parent
DATASETS = ("iris", "mnist", "fashion_mnist")
DEFAULT_DATA_DIR = "/work/shared/data"

#: the paper's headline numbers (arXiv:2604.07013)
PAPER = {
    "iris": {"metric": "validation", "accuracy": 1.0, "n_qubits": 4, "n_layers": 2, "embedding": "amplitude"},
    "mnist": {"metric": "test", "accuracy": 0.9716, "n_qubits": 8, "n_layers": 2, "embedding": "angle_y"},
    "fashion_mnist": {"metric": "test", "accuracy": 0.8738, "n_qubits": 5, "n_layers": 2, "embedding": "angle_y"},
}
#: the issue's bar: (test accuracy, validation accuracy) to reach (Iris: 96.7 % = 29 of the 30 test samples)
GOALS = {"iris": (29 / 30, 1.0), "mnist": (0.972, None), "fashion_mnist": (0.874, None)}

SPACE = SearchSpace(qubits=(2, 8), layers=(1, 4), embeddings=EMBEDDINGS, entanglers=ENTANGLERS, ranges=(1, 3))

#: QNASEstimator settings (full run) per data set; --quick replaces some of them (QUICK)
#: ``search_subset``: the search (SuperCircuit training, candidate fine-tuning and validation) runs on
#: a stratified subset of the training set, as the paper's code does (16k); the chosen candidate is
#: then fine-tuned on the whole training set for ``final_epochs``. ``train_subset`` (quick runs only)
#: shrinks the whole training set first.
#: MNIST and Fashion-MNIST use the library's training defaults: ``batch_size=32``, ``learning_rate=0.02``,
#: ``finetune_epochs=5`` (over at most ``finetune_samples`` = 2,048 training samples per candidate) and the
#: ``supercircuit_epochs`` the estimator picks for 18,000 samples (5). Measured on MNIST with the 784 -> 64
#: pre-layer: with the older batch 64 and Adam at 0.005 the controlled swap put the angle embeddings at
#: 0.27-0.36 validation error against amplitude's 0.10; with these defaults every embedding is within
#: 0.091-0.125, angle_y first.
SETTINGS = {
    "iris": dict(hidden=64, batch_size=16, learning_rate=0.01, supercircuit_epochs=100, finetune_epochs=5,
                 final_epochs=60, validation_size=0.2, population_size=12, n_generations=6, search_subset=None,
                 ablation_repeats=5),
    "mnist": dict(hidden="cnn", batch_size=32, learning_rate=0.02, supercircuit_epochs=5, finetune_epochs=5,
                  final_epochs=10, validation_size=0.1, population_size=12, n_generations=6, search_subset=20000,
                  ablation_repeats=1),
    "fashion_mnist": dict(hidden="cnn", batch_size=32, learning_rate=0.02, supercircuit_epochs=5, finetune_epochs=5,
                          final_epochs=10, validation_size=0.1, population_size=12, n_generations=6,
                          search_subset=20000, ablation_repeats=1),
}
QUICK = {
    "iris": dict(supercircuit_epochs=30, final_epochs=30, population_size=6, n_generations=2, ablation_repeats=2),
    "mnist": dict(supercircuit_epochs=2, final_epochs=2, population_size=6, n_generations=2, train_subset=10000,
                  search_subset=3000),
    "fashion_mnist": dict(supercircuit_epochs=2, final_epochs=2, population_size=6, n_generations=2,
                          train_subset=10000, search_subset=3000),
}


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def load_data(name: str, data_dir: str | None, train_subset: int | None, seed: int):
    """(X_train, y_train, X_test, y_test) as float32 / int64 arrays, and a description."""
    if name == "iris":
        from sklearn.datasets import load_iris
        from sklearn.model_selection import train_test_split

        X, y = load_iris(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
        mean, std = X_train.mean(0), X_train.std(0)
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
        description = "scikit-learn Iris, stratified 80/20 split (random_state=0), standardised per feature"
    else:
        from qiskit_qnas.datasets import load_dataset

        loaded = load_dataset(name, data_dir=data_dir)
        X_train, y_train, X_test, y_test = _unpack(loaded)
        X_train = np.asarray(X_train, dtype=np.float64).reshape(len(X_train), -1)
        X_test = np.asarray(X_test, dtype=np.float64).reshape(len(X_test), -1)
        if X_train.max() > 1.5:  # raw uint8 pixels
            X_train, X_test = X_train / 255.0, X_test / 255.0
        mean, std = X_train.mean(), X_train.std()
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
        description = (f"{name} IDX files (official 60k/10k split), pixels / 255 standardised with the training "
                       f"set's global mean {mean:.4f} and deviation {std:.4f}")
    if train_subset is not None and train_subset < len(X_train):
        from sklearn.model_selection import train_test_split

        X_train, _, y_train, _ = train_test_split(X_train, y_train, train_size=train_subset, stratify=y_train,
                                                  random_state=seed)
        description += f"; stratified training subset of {train_subset}"
    return (np.asarray(X_train, np.float32), np.asarray(y_train, np.int64), np.asarray(X_test, np.float32),
            np.asarray(y_test, np.int64), description)


def _unpack(loaded):
    """Accept what ``load_dataset`` returns: a 4-tuple, or an object/dict with train and test arrays."""
    if isinstance(loaded, (tuple, list)) and len(loaded) == 4:
        return loaded
    get = (lambda k: loaded[k]) if isinstance(loaded, dict) else (lambda k: getattr(loaded, k))
    for names in (("X_train", "y_train", "X_test", "y_test"), ("x_train", "y_train", "x_test", "y_test")):
        try:
            return tuple(get(k) for k in names)
        except (KeyError, AttributeError):
            continue
    raise TypeError(f"cannot read train/test arrays from load_dataset's {type(loaded).__name__}")


# ------------------------------------------------------------------------------------------------
# bookkeeping: phases, wall time, load
# ------------------------------------------------------------------------------------------------
class LoadMonitor:
    """Samples the 1-minute load average every ``interval`` seconds in a daemon thread."""

    def __init__(self, interval: float = 15.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Phases:
    """One JSON per finished phase in the run directory, plus the wall/CPU time every attempt took."""

    def __init__(self, out: Path):
        self.out = out
        self.times_path = out / "times.json"
        self.times = json.loads(self.times_path.read_text()) if self.times_path.exists() else {}

    def done(self, name: str) -> dict | None:
        path = self.out / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def run(self, name: str, work, monitor: LoadMonitor) -> dict:
        found = self.done(name)
        if found is not None:
            print(f"[{name}] already done (from {self.out / (name + '.json')})", flush=True)
            return found
        print(f"[{name}] running", flush=True)
        started, cpu0, n0 = time.perf_counter(), cpu_seconds(), len(monitor.samples)
        try:
            result = work()
        finally:
            entry = self.times.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0, "attempts": 0, "load": []})
            entry["wall_s"] += time.perf_counter() - started
            entry["cpu_s"] += cpu_seconds() - cpu0
            entry["attempts"] += 1
            entry["load"] += monitor.samples[n0:]
            self.times_path.write_text(json.dumps(self.times, indent=1))
        (self.out / f"{name}.json").write_text(json.dumps(result, indent=1, default=json_default))
        print(f"[{name}] done in {self.times[name]['wall_s']:.0f} s", flush=True)
        return result


# ------------------------------------------------------------------------------------------------
# the phases
# ------------------------------------------------------------------------------------------------
def make_estimator(settings: dict, seed: int, run_dir: Path) -> QNASEstimator:
    keys = ("hidden", "batch_size", "learning_rate", "supercircuit_epochs", "finetune_epochs", "validation_size",
            "population_size", "n_generations")
    # final_epochs=0: the chosen candidate is trained on the whole training set by final_phase
    return QNASEstimator(search_space=SPACE, qubit_budget=4, random_state=seed, checkpoint_dir=str(run_dir),
                         scale_inputs=False, verbose=1, final_epochs=0, **{k: settings[k] for k in keys})


def validation_split(est_settings: dict, X, y, seed: int):
    """The estimator's own train/validation split (same call as ``QNASEstimator.fit``)."""
    from sklearn.model_selection import train_test_split

    n_val = max(len(np.unique(y)), int(round(est_settings["validation_size"] * len(X))))
    return train_test_split(X, y, test_size=n_val, stratify=y, random_state=seed)


def composition(candidates: list, result: SearchResult) -> dict[str, Any]:
    """How often each embedding / entangler appears on the front, in the top decile and overall,
    with the mean and best validation error of the candidates that use it."""
    done = [c for c in candidates if not c.failed]
    errors = np.array([c.val_error for c in done])
    k = max(1, math.ceil(0.1 * len(done)))
    threshold = np.sort(errors)[k - 1]
    top = [c for c in done if c.val_error <= threshold]  # ties at the boundary are kept
    front = result.pareto_front

    def table(values, uses):
        rows = {}
        for value in values:
            users = [c for c in done if uses(c, value)]
            rows[value] = {
                "front": sum(uses(c, value) for c in front), "top_decile": sum(uses(c, value) for c in top),
                "evaluated": len(users),
                "mean_val_error": float(np.mean([c.val_error for c in users])) if users else None,
                "best_val_error": float(min(c.val_error for c in users)) if users else None}
        return rows

    return {"n_evaluated": len(done), "n_front": len(front), "n_top_decile": len(top),
            "top_decile_threshold": float(threshold),
            "embeddings": table(EMBEDDINGS, lambda c, v: c.architecture.embedding == v),
            "entanglers": table(ENTANGLERS, lambda c, v: v in c.architecture.entangler),
            "sparse": {"front": sum(_sparse(c) for c in front), "top_decile": sum(_sparse(c) for c in top),
                       "evaluated": sum(_sparse(c) for c in done)}}


def _sparse(candidate) -> bool:
    """Every entangling layer is one of the paper's sparse modes (odd / even)."""
    return all(e in ("odd", "even") for e in candidate.architecture.entangler)


def candidate_row(c) -> dict[str, Any]:
    return {"architecture": c.architecture.key, "val_error": c.val_error, "runtime_proxy_s": c.runtime_proxy,
            "n_subcircuits": c.n_subcircuits, "objectives": list(c.objectives),
            "n_subexperiments": getattr(c.cutting, "n_subexperiments", None),
            "sampling_overhead": getattr(c.cutting, "sampling_overhead", None),
            "cut_exact": getattr(c.cutting, "exact", None), "isa_depth": getattr(c.runtime, "depth", None),
            "generation": c.generation, "finetune_s": c.finetune_seconds}


def search_phase(settings, seed, run_dir, X_search, y_search, X_test, y_test, out: Path) -> dict:
    est = make_estimator(settings, seed, run_dir)
    est.fit(X_search, y_search)
    result = est.result_
    result.plot_pareto(out / "pareto.png")
    import matplotlib.pyplot as plt

    plt.close("all")
    best = est.best_candidate_
    return {"chosen": candidate_row(best), "val_accuracy": 1 - best.val_error,
            "inherited_test_accuracy": float(est.score(X_test, y_test)),
            "front": [candidate_row(c) for c in result.pareto_front],
            "composition": composition(result.candidates, result), "timings": dict(est.timings_),
            "history": result.history, "n_candidates": len(result.candidates),
            "n_failed": sum(c.failed for c in result.candidates)}


def load_supercircuit(settings, seed, run_dir, n_features, n_classes) -> SuperCircuit:
    sc = SuperCircuit(SPACE, n_features, n_classes, hidden=check_hidden(settings["hidden"], allow_zero=False),
                      dropout=0.1, seed=seed)
    sc.load_state_dict(torch.load(run_dir / "supercircuit.pt", weights_only=True)["state"])
    return sc.eval()


def final_phase(settings, seed, run_dir, arch: Architecture, X_train, y_train, X_test, y_test) -> dict:
    """The chosen candidate inherits its SuperCircuit weights and is fine-tuned on the whole training
    set (what ``QNASEstimator`` does with ``final_epochs``, with the same seed)."""
    from qiskit_qnas.objectives import candidate_seed

    n_classes = len(np.unique(y_train))
    sc = load_supercircuit(settings, seed, run_dir, X_train.shape[1], n_classes)
    started = time.perf_counter()
    model = finetune(sc, arch, X_train, y_train, int(settings["final_epochs"]), batch_size=int(settings["batch_size"]),
                     lr=float(settings["learning_rate"]), seed=candidate_seed(seed, arch))
    seconds = time.perf_counter() - started
    torch.save(model.state_dict(), run_dir.parent / "final_model.pt")
    return {"test_accuracy": accuracy(model, X_test, y_test), "train_accuracy": accuracy(model, X_train, y_train),
            "train_s": seconds, "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def swap_phase(settings, seed, run_dir, chosen: Architecture, X_train, y_train) -> dict:
    """The chosen candidate with each other embedding / entangler, evaluated like a search candidate."""
    from qiskit_qnas.objectives import EvaluationContext, evaluate_candidate
    from qiskit_qnas.targets import resolve_target

    X_fit, X_val, y_fit, y_val = validation_split(settings, X_train, y_train, seed)
    sc = load_supercircuit(settings, seed, run_dir, X_train.shape[1], len(np.unique(y_train)))
    target = resolve_target(None, mode="auto", shots=None, seed=seed, optimization_level=1, reference_backend=None)
    context = EvaluationContext(supercircuit=sc, X_train=X_fit, y_train=y_fit, X_val=X_val, y_val=y_val,
                                target=target, qubit_budget=4, finetune_epochs=int(settings["finetune_epochs"]),
                                batch_size=int(settings["batch_size"]), learning_rate=float(settings["learning_rate"]),
                                seed=seed)
    rows: dict[str, dict] = {"embedding": {}, "entangler": {}}
    for embedding in EMBEDDINGS:
        arch = dataclasses.replace(chosen, embedding=embedding)
        rows["embedding"][embedding] = candidate_row(evaluate_candidate(arch, context))
        print(f"  swap embedding {arch.key}: val error {rows['embedding'][embedding]['val_error']:.4f}", flush=True)
    for entangler in ENTANGLERS:
        arch = dataclasses.replace(chosen, entangler=entangler)
        rows["entangler"][entangler] = candidate_row(evaluate_candidate(arch, context))
        print(f"  swap entangler {arch.key}: val error {rows['entangler'][entangler]['val_error']:.4f}", flush=True)
    return rows


def swap_scratch_phase(settings, seed, swaps: dict, X_train, y_train) -> dict:
    """Every embedding twin of the controlled swap trained from a fresh initialisation on the search's
    training split for as many epochs as the SuperCircuit trained, scored on its validation split: what
    each embedding reaches without inherited weights. (The estimate with inherited weights can be far from
    it: with the CNN pre-layer on MNIST the 1-layer angle twins fine-tuned to 0.13-0.21 validation error
    from the SuperCircuit and reached 0.024-0.029 from scratch.)"""
    X_fit, X_val, y_fit, y_val = validation_split(settings, X_train, y_train, seed)
    n_classes = len(np.unique(y_train))
    epochs = int(settings["supercircuit_epochs"])
    rows = {"epochs": epochs, "n_fit": len(X_fit), "embedding": {}}
    for embedding, twin in swaps["embedding"].items():
        arch = Architecture.from_key(twin["architecture"])
        started = time.perf_counter()
        model = scratch_quantum(settings | {"final_epochs": epochs}, seed, arch, X_fit, y_fit, n_classes)
        rows["embedding"][embedding] = {"architecture": arch.key, "val_error": 1.0 - accuracy(model, X_val, y_val),
                                        "train_s": time.perf_counter() - started}
        print(f"  from scratch {arch.key}: val error {rows['embedding'][embedding]['val_error']:.4f}", flush=True)
    return rows


def scratch_quantum(settings, seed, arch, X, y, n_classes) -> nn.Module:
    """``arch`` trained from a fresh (untrained) SuperCircuit initialisation, the final epochs."""
    sc = SuperCircuit(SPACE, X.shape[1], n_classes, hidden=check_hidden(settings["hidden"], allow_zero=False),
                      dropout=0.1, seed=seed + 1)
    return finetune(sc, arch, X, y, int(settings["final_epochs"]), batch_size=int(settings["batch_size"]),
                    lr=float(settings["learning_rate"]), seed=seed + 1)


def scratch_classical(settings, seed, arch, X, y, n_classes) -> nn.Module:
    model = ClassicalAblation(X.shape[1], arch.n_qubits, n_classes, settings["hidden"], seed=seed + 1)
    train_model(model, X, y, epochs=int(settings["final_epochs"]), batch_size=int(settings["batch_size"]),
                lr=float(settings["learning_rate"]), seed=seed + 1)
    return model


def ablation_phase(kind, settings, seed, arch, X_train, y_train, X_test, y_test, with_validation: bool) -> dict:
    """Train from scratch on all training data and score the test set, ``ablation_repeats`` times with
    different initial weights; for Iris also train on the search's training split and score its
    validation split (the paper's Iris metric)."""
    n_classes = len(np.unique(y_train))
    train = scratch_quantum if kind == "quantum" else scratch_classical
    runs = []
    for repeat in range(int(settings.get("ablation_repeats", 1))):
        init = seed + repeat
        started = time.perf_counter()
        model = train(settings, init, arch, X_train, y_train, n_classes)
        row = {"test_accuracy": accuracy(model, X_test, y_test), "train_accuracy": accuracy(model, X_train, y_train),
               "train_s": time.perf_counter() - started,
               "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
        if with_validation:
            X_fit, X_val, y_fit, y_val = validation_split(settings, X_train, y_train, seed)
            row["val_accuracy"] = accuracy(train(settings, init, arch, X_fit, y_fit, n_classes), X_val, y_val)
        runs.append(row)
        print(f"  {kind} from scratch, run {repeat + 1}: {row}", flush=True)
    summary = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    summary.update({f"{key}_std": float(np.std([r[key] for r in runs])) for key in ("test_accuracy", "val_accuracy")
                    if key in runs[0]})
    summary["runs"] = runs
    return summary


def spread(row: dict, key: str) -> str:
    """``mean`` or ``mean +- std (min-max over n runs)`` of an ablation row."""
    if key not in row:
        return "n/a"
    runs = row.get("runs", [])
    if len(runs) <= 1:
        return pct(row[key])
    values = [r[key] for r in runs]
    return (f"{pct(row[key])} +- {100 * row[key + '_std']:.2f} ({100 * min(values):.1f}-{100 * max(values):.1f} "
            f"over {len(runs)} inits)")


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def markdown(dataset, args, settings, description, search, final, swaps, quantum, classical, phases: Phases,
             out) -> str:
    paper = PAPER[dataset]
    goal_test, goal_val = GOALS[dataset]
    chosen = search["chosen"]
    arch = Architecture.from_key(chosen["architecture"])
    times = phases.times
    total_wall = sum(t["wall_s"] for t in times.values())
    total_cpu = sum(t["cpu_s"] for t in times.values())
    loads = [x for t in times.values() for x in t["load"]]
    lines = [f"# Reproducing the QNAS paper on {dataset}{' (quick run)' if args.quick else ''}", ""]
    niceness = os.nice(0)
    lines += ["Command:", "", "```", (f"nice -n {niceness} " if niceness else "")
              + " ".join(shlex.quote(a) for a in [".venv/bin/python"] + sys.argv), "```", ""]
    lines += [f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"torch {torch.__version__}. Wall time {total_wall / 60:.1f} min "
              f"(CPU {total_cpu / 60:.1f} min, i.e. {total_cpu / max(total_wall, 1e-9):.2f} cores on average); "
              f"1-minute load average over the run: mean {np.mean(loads):.2f}, max {np.max(loads):.2f} "
              f"(sampled every 15 s)." if loads else "", ""]
    lines += [f"Data: {description}; {search.get('n_train', '?')} training / {search.get('n_test', '?')} test samples; "
              f"the search ran on {search.get('n_search', '?')} of the training samples (of which "
              f"{settings['validation_size']:.0%} held out for validation), the chosen model was then fine-tuned "
              f"on all {search.get('n_train', '?')}.",
              "", "Settings: " + ", ".join(f"`{k}={v!r}`" for k, v in settings.items()) +
              f", `qubit_budget=4`, seed {args.seed}; search space `{SPACE!r}`.", ""]
    # headline
    lines += ["## Result", "", "| | ours (QNAS) | paper |", "|---|---|---|"]
    lines += [f"| chosen architecture | `{arch.key}` | {paper['n_qubits']} qubits, {paper['n_layers']} layers, "
              f"{paper['embedding']} |",
              f"| validation accuracy (search split) | {pct(search['val_accuracy'])} | "
              f"{pct(paper['accuracy']) if paper['metric'] == 'validation' else 'not reported'} |",
              f"| test accuracy | **{pct(final['test_accuracy'])}** | "
              f"{pct(paper['accuracy']) if paper['metric'] == 'test' else 'not reported'} |",
              f"| training accuracy | {pct(final['train_accuracy'])} | |",
              f"| test accuracy with the inherited weights, before the final training | "
              f"{pct(search['inherited_test_accuracy'])} | |", ""]
    verdict = []
    if goal_test is not None:
        verdict.append(f"test accuracy {pct(final['test_accuracy'])} vs. the goal {pct(goal_test)}: "
                       f"{'reached' if final['test_accuracy'] >= goal_test - 1e-9 else 'NOT reached'}")
    if goal_val is not None:
        verdict.append(f"validation accuracy {pct(search['val_accuracy'])} vs. the goal {pct(goal_val)}: "
                       f"{'reached' if search['val_accuracy'] >= goal_val - 1e-12 else 'NOT reached'}")
    ref = paper["accuracy"]
    ours = final["test_accuracy"] if paper["metric"] == "test" else search["val_accuracy"]
    verdict.append(f"against the paper's {paper['metric']} accuracy {pct(ref)}: "
                   f"{'beaten' if ours > ref + 1e-12 else 'matched' if abs(ours - ref) < 1e-12 else 'trailing'} "
                   f"by {100 * (ours - ref):+.2f} points")
    lines += ["Verdict: " + "; ".join(verdict) + ".", ""]
    # ablation
    lines += ["## The quantum layer's contribution (ablation)", "",
              f"Same data, same pre-layer (`hidden={settings['hidden']!r}`) and head, "
              f"{settings['final_epochs']} epochs, batch {settings['batch_size']}, Adam {settings['learning_rate']} "
              "with cosine decay. *From scratch* rows start from fresh weights; the QNAS row starts from the "
              "SuperCircuit's weights and is fine-tuned for the same epochs.", "",
              "| model | test accuracy | validation accuracy | trainable parameters | training time |",
              "|---|---|---|---|---|",
              f"| QNAS chosen `{arch.key}` (inherited + fine-tuned) | {pct(final['test_accuracy'])} | "
              f"{pct(search['val_accuracy'])} | {final['n_parameters']} | {final['train_s']:.0f} s |",
              f"| same HQNN from scratch | {spread(quantum, 'test_accuracy')} | {spread(quantum, 'val_accuracy')} | "
              f"{int(quantum['n_parameters'])} | {quantum['train_s']:.0f} s per init |",
              f"| classical ablation: quantum layer -> tanh of width {arch.n_qubits} | "
              f"{spread(classical, 'test_accuracy')} | {spread(classical, 'val_accuracy')} | "
              f"{int(classical['n_parameters'])} | {classical['train_s']:.0f} s per init |", ""]
    if "val_accuracy" in quantum:
        lines += ["(Validation accuracy of the *from scratch* rows: trained on the search's training split only "
                  "and scored on its validation split; the QNAS row's is the search's own measurement.)", ""]
    # objectives of the chosen model
    lines += ["## The chosen model's objectives", "",
              f"- validation error {chosen['val_error']:.4f}",
              f"- runtime proxy {chosen['runtime_proxy_s']:.4g} s (ISA depth {chosen['isa_depth']})",
              f"- subcircuits under a 4-qubit budget: {chosen['n_subcircuits']} "
              f"(sub-experiments {chosen['n_subexperiments']}, sampling overhead {chosen['sampling_overhead']}"
              f"{'' if chosen['cut_exact'] in (True, None) else ', upper bound'})", ""]
    # front
    lines += ["## Pareto front", "", f"![Pareto front]({out.name})" if out else "", "",
              f"{search['n_candidates']} candidates evaluated ({search['n_failed']} failed), "
              f"{len(search['front'])} on the front:", "",
              "| architecture | val error | runtime proxy (s) | subcircuits | sub-experiments |",
              "|---|---|---|---|---|"]
    for row in search["front"]:
        lines.append(f"| `{row['architecture']}` | {row['val_error']:.4f} | {row['runtime_proxy_s']:.4g} | "
                     f"{row['n_subcircuits']} | {row['n_subexperiments']} |")
    lines.append("")
    # composition
    comp = search["composition"]
    for what in ("embeddings", "entanglers"):
        lines += [f"### {what.capitalize()} on the front and in the top decile", "",
                  f"Front: {comp['n_front']} candidates; top decile by validation error: {comp['n_top_decile']} "
                  f"candidates (error <= {comp['top_decile_threshold']:.4f}); all evaluated: {comp['n_evaluated']}."
                  + (" An entangler counts for a candidate when any of its layers uses it." if what == "entanglers"
                     else ""), "",
                  "| | front | top decile | evaluated | mean val error | best val error |", "|---|---|---|---|---|---|"]
        for value, row in comp[what].items():
            mean = "" if row["mean_val_error"] is None else f"{row['mean_val_error']:.4f}"
            best = "" if row["best_val_error"] is None else f"{row['best_val_error']:.4f}"
            lines.append(f"| {value} | {row['front']} | {row['top_decile']} | {row['evaluated']} | {mean} | {best} |")
        lines.append("")
    sparse = comp["sparse"]
    lines += [f"Candidates whose every layer is sparse (odd/even): front {sparse['front']}, top decile "
              f"{sparse['top_decile']}, evaluated {sparse['evaluated']}.", ""]
    # controlled swaps
    if swaps:
        scratch = swaps["scratch"]
        lines += ["### Controlled test: the chosen candidate with each embedding / entangler", "",
                  "Each twin differs from the chosen candidate in one gene and is evaluated exactly like a search "
                  "candidate (inherited SuperCircuit weights, the same fine-tuning, the same validation split).", "",
                  f"The embedding twins are also trained from scratch for {scratch['epochs']} epochs on the "
                  f"{scratch['n_fit']} training samples of that split: what each embedding reaches without the "
                  "SuperCircuit's weights.", "",
                  "| twin | val error | from scratch: val error | runtime proxy (s) | subcircuits |",
                  "|---|---|---|---|---|"]
        for kind in ("embedding", "entangler"):
            for value, row in swaps[kind].items():
                fresh = scratch["embedding"].get(value) if kind == "embedding" else None
                lines.append(f"| {kind} = {value}: `{row['architecture']}` | {row['val_error']:.4f} | "
                             f"{'' if fresh is None else format(fresh['val_error'], '.4f')} | "
                             f"{row['runtime_proxy_s']:.4g} | {row['n_subcircuits']} |")
        lines.append("")
    lines += findings(dataset, comp, swaps)
    lines += ["## Wall time by phase", "", "| phase | wall | CPU | attempts | mean load |", "|---|---|---|---|---|"]
    for name, t in times.items():
        load = f"{np.mean(t['load']):.2f}" if t["load"] else ""
        lines.append(f"| {name} | {t['wall_s'] / 60:.1f} min | {t['cpu_s'] / 60:.1f} min | {t['attempts']} | {load} |")
    timings = search["timings"]
    lines += ["", "Inside the search: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ".", ""]
    return "\n".join(lines)


def findings(dataset: str, comp: dict, swaps: dict | None) -> list[str]:
    """The paper's claims (angle_y + sparse entanglers best on images, amplitude on Iris) against the data."""
    claimed = PAPER[dataset]["embedding"]
    lines = ["## The paper's findings against this run", ""]
    sampled = {k: v for k, v in comp["embeddings"].items() if v["evaluated"] >= 3}
    if sampled:
        ranked = sorted(sampled, key=lambda k: sampled[k]["mean_val_error"])
        lines.append("- Search-wide, embeddings by mean validation error (those evaluated at least 3 times): "
                     + ", ".join(f"{k} {sampled[k]['mean_val_error']:.3f} (n={sampled[k]['evaluated']})"
                                 for k in ranked) + ".")
    if swaps:
        emb = sorted(swaps["embedding"], key=lambda k: swaps["embedding"][k]["val_error"])
        ent = sorted(swaps["entangler"], key=lambda k: swaps["entangler"][k]["val_error"])
        e = swaps["embedding"]
        lines.append("- Controlled swap, embeddings from best to worst: "
                     + ", ".join(f"{k} {e[k]['val_error']:.3f}" for k in emb)
                     + f". The paper's choice for {dataset} ({claimed}) ranks {emb.index(claimed) + 1} of {len(emb)}.")
        y_wins = e["angle_y"]["val_error"] < e["angle_z"]["val_error"]
        lines.append(f"- angle_y vs angle_z (H then RZ(x)) in the controlled swap: {e['angle_y']['val_error']:.3f} vs "
                     f"{e['angle_z']['val_error']:.3f}: "
                     f"{'angle_y still wins' if y_wins else 'angle_z is as good or better'}.")
        fresh = swaps["scratch"]["embedding"]
        lines.append(f"- The same embedding twins from scratch ({swaps['scratch']['epochs']} epochs), best to worst: "
                     + ", ".join(f"{k} {fresh[k]['val_error']:.3f}"
                                 for k in sorted(fresh, key=lambda k: fresh[k]["val_error"]))
                     + ". Where the two orders differ, the swap's order comes from the inherited weights rather than "
                       "from the embeddings.")
        t = swaps["entangler"]
        lines.append("- Controlled swap, entanglers (every layer) from best to worst: "
                     + ", ".join(f"{k} {t[k]['val_error']:.3f}" for k in ent)
                     + f"; best sparse (odd/even) {min(t['odd']['val_error'], t['even']['val_error']):.3f} vs best "
                       f"dense (all/chain/full) {min(t[k]['val_error'] for k in ('all', 'chain', 'full')):.3f}.")
    lines += ["", "Validation errors come from candidates fine-tuned briefly from the SuperCircuit, on a validation "
              "split of the size given above: differences of a point or two are within the noise.", ""]
    return lines


# ------------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--data-dir", default=os.environ.get("QNAS_DATA_DIR", DEFAULT_DATA_DIR),
                        help=f"directory holding the IDX files (default $QNAS_DATA_DIR or {DEFAULT_DATA_DIR})")
    parser.add_argument("--out", default=None, help="run directory (default benchmarks/runs/<dataset>[_quick])")
    parser.add_argument("--quick", action="store_true", help="a small, fast run of the whole pipeline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", default=None, help="pre-layer: an integer width, widths '256,128', or 'cnn'")
    parser.add_argument("--train-subset", type=int, default=None, help="use a stratified subset of the training set")
    parser.add_argument("--search-subset", type=int, default=None,
                        help="run the search on a stratified subset of the training set (0: all of it)")
    parser.add_argument("--report", default=None, help="markdown report path (default benchmarks/results/...)")
    parser.add_argument("--no-swaps", action="store_true", help="skip the controlled embedding/entangler swaps")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: a shared machine)")
    for name in ("supercircuit_epochs", "finetune_epochs", "final_epochs", "population_size", "n_generations",
                 "batch_size"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--validation-size", type=float, default=None)
    args = parser.parse_args(argv)

    settings = dict(SETTINGS[args.dataset])
    if args.quick:
        settings.update(QUICK[args.dataset])
    for name in ("supercircuit_epochs", "finetune_epochs", "final_epochs", "population_size", "n_generations",
                 "batch_size", "learning_rate", "validation_size", "train_subset", "search_subset"):
        if getattr(args, name, None) is not None:
            settings[name] = getattr(args, name)
    if args.hidden is not None:
        spec = args.hidden
        settings["hidden"] = spec if spec.startswith("cnn") else (
            tuple(int(v) for v in spec.split(",")) if "," in spec else int(spec))
    settings["hidden"] = check_hidden(settings["hidden"], allow_zero=False)
    train_subset = settings.get("train_subset")
    suffix = "_quick" if args.quick else ""
    out = Path(args.out) if args.out else ROOT / "runs" / f"{args.dataset}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    report = Path(args.report) if args.report else ROOT / "results" / f"reproduce_{args.dataset}{suffix}.md"
    run_dir = out / "search"
    config = {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
              "seed": args.seed, "dataset": args.dataset}
    saved = out / "config.json"
    if saved.exists() and json.loads(saved.read_text()) != config:
        raise SystemExit(f"{out} holds a run with other settings ({saved}); pass another --out or delete it")
    saved.write_text(json.dumps(config, indent=1))
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    X_train, y_train, X_test, y_test, description = load_data(args.dataset, args.data_dir, train_subset, args.seed)
    X_search, y_search = X_train, y_train
    if settings.get("search_subset") and settings["search_subset"] < len(X_train):
        from sklearn.model_selection import train_test_split

        X_search, _, y_search, _ = train_test_split(X_train, y_train, train_size=settings["search_subset"],
                                                    stratify=y_train, random_state=args.seed)
    print(f"{args.dataset}: {X_train.shape} train ({len(X_search)} for the search), {X_test.shape} test; "
          f"settings {settings}", flush=True)
    phases = Phases(out)
    with LoadMonitor() as monitor:
        search = phases.run("search", lambda: search_phase(settings, args.seed, run_dir, X_search, y_search, X_test,
                                                           y_test, out), monitor)
        search.update(n_train=len(X_train), n_test=len(X_test), n_search=len(X_search))
        arch = Architecture.from_key(search["chosen"]["architecture"])
        final = phases.run("final", lambda: final_phase(settings, args.seed, run_dir, arch, X_train, y_train, X_test,
                                                        y_test), monitor)
        print(f"chosen {arch.key}: val {search['val_accuracy']:.4f} test {final['test_accuracy']:.4f}", flush=True)
        with_val = args.dataset == "iris"
        quantum = phases.run("scratch_quantum", lambda: ablation_phase(
            "quantum", settings, args.seed, arch, X_train, y_train, X_test, y_test, with_val), monitor)
        classical = phases.run("scratch_classical", lambda: ablation_phase(
            "classical", settings, args.seed, arch, X_train, y_train, X_test, y_test, with_val), monitor)
        print(f"from scratch: quantum {quantum['test_accuracy']:.4f}, classical {classical['test_accuracy']:.4f}",
              flush=True)
        swaps = None if args.no_swaps else phases.run(
            "swaps", lambda: swap_phase(settings, args.seed, run_dir, arch, X_search, y_search), monitor)
        if swaps is not None:
            swaps["scratch"] = phases.run("swaps_scratch", lambda: swap_scratch_phase(
                settings, args.seed, swaps, X_search, y_search), monitor)
    pareto = report.with_name(report.stem + "_pareto.png")
    if (out / "pareto.png").exists():
        report.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "pareto.png", pareto)
    text = markdown(args.dataset, args, settings, description, search, final, swaps, quantum, classical, phases,
                    pareto)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
