"""Search fidelity: does the search rank architectures as stand-alone training does?

    python benchmarks/search_fidelity.py DATASET [--data-dir DIR] [--seed 0] [--epochs E] [--seeds K] [--quick]

DATASET is ``digits`` (scikit-learn's 8x8 digits, ``qiskit_qnas.datasets.load_dataset`` split:
stratified 70/30, ``random_state=0``) or ``mnist`` (the first 6,000 training and first 2,000 test
images of the official split, read from the IDX files in ``--data-dir`` or its ``mnist/``
subfolder, or fetched from OpenML without it; pixels / 255). In one run:

1. the default search through the public API, ``QNASEstimator(search_space=SearchSpace(qubits=(4, 8),
   layers=(1, 2)), qubit_budget=4, random_state=SEED)`` with every other setting at its default
   (the estimator standardises the features itself), timed as the total wall time of ``fit``;
2. ``--n-candidates`` (12) evaluated candidates at evenly spaced ranks of their validation error,
   plus the best one of every embedding family the search evaluated and the chosen one;
3. each of them trained from scratch with the library's defaults, ``arch.model(n_features,
   n_classes, seed=s)`` and ``train_model(model, X_train, y_train, epochs=EPOCHS, seed=s)`` for the
   ``--seeds`` seeds s = 0, 1, ..., on the whole training split standardised as the estimator does
   it; its stand-alone test accuracy is the mean over the seeds. Defaults per data set
   (``STANDALONE``): digits 30 epochs (``train_model``'s own default; 10 epochs are 400 Adam steps
   on 1,257 samples, too few for the angle families: their search-trained models beat their
   10-epoch stand-alone runs by up to 1.5 points) and 2 seeds; MNIST 10 epochs (1,880 steps) and 1
   seed;
4. Kendall's tau and Spearman's rho between the search's ``val_error`` and the stand-alone test
   error; the stand-alone accuracy per embedding; per family the best search-time validation error
   beside the best stand-alone test error; the chosen model's rank among the stand-alone results and
   its test accuracy (``est.score``);
5. random search at equal wall time: architectures drawn uniformly from the same space
   (``SearchSpace.sample``, seeded), trained with the same recipe on the search's own
   train/validation split of the training data until the search's ``fit`` time is spent (a trial
   still running when it is spent is discarded); the best by validation accuracy is scored on the
   test split;
6. the classical ablation of equal width: the same pre-layer, normalisation and head with the
   quantum layer replaced by a tanh of the chosen model's width, trained with the same recipe (mean
   over the same seeds).

Writes ``benchmarks/results/search_fidelity_<dataset>[_quick].md`` (with the command, the commit, the
machine and its load at start and end) and prints it.
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from pathlib import Path

import numpy as np
from _common import ClassicalAblation, accuracy, command_line, git_commit, load_average, machine
from scipy import stats
from sklearn.model_selection import train_test_split

from qiskit_qnas import Architecture, QNASEstimator, SearchSpace
from qiskit_qnas.datasets import load_dataset
from qiskit_qnas.model import train_model
from qiskit_qnas.result import Candidate
from qiskit_qnas.space import EMBEDDINGS

ROOT = Path(__file__).resolve().parent
DATASETS = ("digits", "mnist")
#: the acceptance bars this benchmark reports against
TAU_GOAL = 0.6
FAMILY_GAP = 0.05
#: --quick: the whole pipeline in about a minute (a 2-qubit space, a short search, 2 stand-alone epochs)
QUICK = dict(qubits=(2, 2), layers=(1, 2), population_size=4, n_generations=2, supercircuit_epochs=3,
             finetune_epochs=1, epochs=2, seeds=1, n_candidates=4)
#: stand-alone training per data set: epochs and seeds (see the module docstring)
STANDALONE = {"digits": dict(epochs=30, seeds=2), "mnist": dict(epochs=10, seeds=1)}
#: estimator settings the command line may change (None: the estimator's default)
ESTIMATOR_FLAGS = ("population_size", "n_generations", "supercircuit_epochs", "finetune_epochs")


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def load_data(name: str, data_dir: str | None, n_train: int, n_test: int):
    """(X_train, y_train, X_test, y_test, description), features as ``load_dataset`` returns them."""
    if name == "digits":
        data = load_dataset("digits")
        return data.X_train, data.y_train, data.X_test, data.y_test, data.description
    data = load_dataset("mnist", data_dir=data_dir)
    for flag, value, available in (("--n-train", n_train, len(data.y_train)), ("--n-test", n_test, len(data.y_test))):
        if value > available:
            raise SystemExit(f"invalid {flag} {value}; allowed: 10 to {available} (the images in the split)")
    description = (f"{data.description} The first {n_train} training and the first {n_test} test images of the "
                   "official split.")
    return data.X_train[:n_train], data.y_train[:n_train], data.X_test[:n_test], data.y_test[:n_test], description


def standardise(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The estimator's own scaling (``scale_inputs=True``): the training split's mean and deviation per
    feature, a constant feature left unscaled, float32."""
    X_train = np.asarray(X_train, dtype=np.float64)
    mean, std = X_train.mean(0), X_train.std(0)
    std = np.where(std > 0, std, 1.0)
    scale = lambda X: ((np.asarray(X, dtype=np.float64) - mean) / std).astype(np.float32)
    return scale(X_train), scale(X_test)


# ------------------------------------------------------------------------------------------------
# the phases
# ------------------------------------------------------------------------------------------------
def run_search(space: SearchSpace, qubit_budget: int, seed: int, overrides: dict, X_train, y_train):
    """Fit the estimator through the public API; returns it and the wall time of ``fit``."""
    def progress(generation, candidates):
        done = [c for c in candidates if not c.failed]
        best = min((c.val_error for c in done), default=float("nan"))
        print(f"  generation {generation}: {len(candidates)} new candidates, best val error {best:.4f}", flush=True)

    est = QNASEstimator(search_space=space, qubit_budget=qubit_budget, random_state=seed, verbose=0,
                        callback=progress, **overrides)
    started = time.perf_counter()
    est.fit(X_train, y_train)
    return est, time.perf_counter() - started


def spread_candidates(candidates: list[Candidate], n: int, chosen: Candidate) -> list[Candidate]:
    """``n`` evaluated candidates at evenly spaced ranks of validation error (all of them if fewer), plus
    the best of every embedding family not already picked and the chosen one; best first."""
    done = sorted((c for c in candidates if not c.failed), key=lambda c: (c.val_error, c.architecture))
    if len(done) <= n:
        picked = list(done)
    else:  # spacing (len - 1) / (n - 1) >= 1, so the rounded ranks are distinct
        picked = [done[i] for i in np.round(np.linspace(0, len(done) - 1, n)).astype(int)]
    keys = {c.architecture for c in picked}
    for family in EMBEDDINGS:
        best = next((c for c in done if c.architecture.embedding == family), None)
        if best is not None and best.architecture not in keys:
            picked.append(best)
            keys.add(best.architecture)
    if chosen.architecture not in keys:
        picked.append(chosen)
    return sorted(picked, key=lambda c: (c.val_error, c.architecture))


def train_standalone(arch: Architecture, X_train, y_train, epochs: int, seed: int = 0) -> tuple[object, float]:
    """``arch``'s HQNN trained from scratch with the library's defaults (initial weights, batch order
    and dropout from ``seed``); returns it and the seconds."""
    model = arch.model(X_train.shape[1], len(np.unique(y_train)), seed=seed)
    started = time.perf_counter()
    train_model(model, X_train, y_train, epochs=epochs, seed=seed)
    return model, time.perf_counter() - started


def standalone_phase(picked: list[Candidate], X_train, y_train, X_test, y_test, epochs: int,
                     seeds: int) -> list[dict]:
    rows = []
    for i, cand in enumerate(picked, 1):
        accuracies, seconds = [], 0.0
        for seed in range(seeds):
            model, spent = train_standalone(cand.architecture, X_train, y_train, epochs, seed)
            accuracies.append(accuracy(model, X_test, y_test))
            seconds += spent
        test_accuracy = float(np.mean(accuracies))
        rows.append({"architecture": cand.architecture, "generation": cand.generation, "val_error": cand.val_error,
                     "test_accuracy": test_accuracy, "test_error": 1 - test_accuracy, "seed_accuracies": accuracies,
                     "train_s": seconds / seeds})
        print(f"  [{i}/{len(picked)}] {cand.architecture.key}: search val error {cand.val_error:.4f}, "
              f"stand-alone test accuracy {test_accuracy:.4f} ({' / '.join(f'{a:.4f}' for a in accuracies)}; "
              f"{seconds:.0f} s)", flush=True)
    return rows


def random_search_phase(space: SearchSpace, budget_s: float, seed: int, validation_size: float, X_train, y_train,
                        X_test, y_test, epochs: int) -> dict:
    """Distinct architectures drawn uniformly from ``space``, each trained on the search's training split
    and scored on its validation split, until ``budget_s`` seconds are spent (a trial that ends later
    is discarded, unless it is the only one)."""
    n_val = max(len(np.unique(y_train)), int(round(validation_size * len(X_train))))
    # the estimator's own split: same size, same stratification, same seed
    X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=n_val, stratify=y_train,
                                                  random_state=seed)
    rng = np.random.default_rng(seed)
    seen: set[Architecture] = set()
    trials, discarded = [], None
    started = time.perf_counter()
    while time.perf_counter() - started < budget_s:
        arch = next((a for a in (space.sample(rng) for _ in range(1000)) if a not in seen), None)
        if arch is None:  # the space is exhausted (tiny spaces only)
            break
        seen.add(arch)
        model, seconds = train_standalone(arch, X_fit, y_fit, epochs)
        row = {"architecture": arch, "val_accuracy": accuracy(model, X_val, y_val),
               "test_accuracy": accuracy(model, X_test, y_test), "train_s": seconds}
        if time.perf_counter() - started > budget_s and trials:
            discarded = row
            break
        trials.append(row)
        print(f"  random {len(trials)}: {arch.key}: val accuracy {row['val_accuracy']:.4f} ({seconds:.0f} s)",
              flush=True)
    best = max(trials, key=lambda r: r["val_accuracy"])  # the first of equals: the earlier draw
    return {"trials": trials, "best": best, "discarded": discarded, "wall_s": time.perf_counter() - started,
            "budget_s": budget_s, "n_fit": len(y_fit), "n_val": len(y_val)}


def ablation_phase(arch: Architecture, hidden, dropout: float, X_train, y_train, X_test, y_test, epochs: int,
                   seeds: int) -> dict:
    accuracies, started = [], time.perf_counter()
    for seed in range(seeds):
        model = ClassicalAblation(X_train.shape[1], arch.n_qubits, len(np.unique(y_train)), hidden, dropout, seed)
        train_model(model, X_train, y_train, epochs=epochs, seed=seed)
        accuracies.append(accuracy(model, X_test, y_test))
    return {"test_accuracy": float(np.mean(accuracies)), "seed_accuracies": accuracies,
            "train_s": (time.perf_counter() - started) / seeds,
            "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}


# ------------------------------------------------------------------------------------------------
# analysis and report
# ------------------------------------------------------------------------------------------------
def rank_correlations(rows: list[dict]) -> dict:
    """Kendall's tau-b and Spearman's rho (with p-values) between the search's validation error and the
    stand-alone test error; NaN when either side is constant."""
    estimate = [r["val_error"] for r in rows]
    truth = [r["test_error"] for r in rows]
    if len(rows) < 2 or len(set(estimate)) < 2 or len(set(truth)) < 2:
        nan = float("nan")
        return {"kendall_tau": nan, "kendall_p": nan, "spearman_rho": nan, "spearman_p": nan}
    tau, rho = stats.kendalltau(estimate, truth), stats.spearmanr(estimate, truth)
    return {"kendall_tau": float(tau.statistic), "kendall_p": float(tau.pvalue),
            "spearman_rho": float(rho.statistic), "spearman_p": float(rho.pvalue)}


def families(candidates: list[Candidate], rows: list[dict]) -> dict[str, dict]:
    """Per embedding: search-time evaluations and best validation error, stand-alone best and mean."""
    done = [c for c in candidates if not c.failed]
    table = {}
    for family in EMBEDDINGS:
        searched = [c.val_error for c in done if c.architecture.embedding == family]
        trained = [r["test_accuracy"] for r in rows if r["architecture"].embedding == family]
        if not searched and not trained:
            continue
        entry = {"evaluated": len(searched), "best_val_error": min(searched) if searched else None,
                 "trained": len(trained), "best_accuracy": max(trained) if trained else None,
                 "mean_accuracy": float(np.mean(trained)) if trained else None}
        if searched and trained:
            entry["gap"] = entry["best_val_error"] - (1 - entry["best_accuracy"])
        table[family] = entry
    return table


def standalone_rank(rows: list[dict], arch: Architecture) -> tuple[int, int]:
    """(rank of ``arch`` by stand-alone test accuracy, 1 = best, ties counted in its favour; rows)."""
    mine = next(r["test_accuracy"] for r in rows if r["architecture"] == arch)
    return 1 + sum(r["test_accuracy"] > mine for r in rows), len(rows)


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def markdown(args, context: dict) -> str:
    c = context
    est, chosen, corr = c["est"], c["chosen"], c["correlations"]
    random_search, ablation = c["random"], c["ablation"]
    rank, n_rows = c["rank"]
    tau = corr["kendall_tau"]
    recipe = inspect.signature(train_model).parameters
    defaults = ", ".join(f"{k}={recipe[k].default!r}" for k in ("batch_size", "lr", "weight_decay", "cosine"))
    seeds = ", ".join(str(seed) for seed in range(args.seeds))
    overrides = "".join(f", {k}={v!r}" for k, v in c["overrides"].items())
    lines = [f"# Search fidelity on {args.dataset}{' (quick run)' if args.quick else ''}", "",
             "Command:", "", "```", command_line(c["argv"]), "```", "",
             f"Commit {git_commit()}. Machine: {machine()}. Load average (1 / 5 / 15 min) at the start "
             f"{c['load_start']}, at the end {c['load_end']}.", "",
             f"Data: {c['description']} {len(c['y_train'])} training / {len(c['y_test'])} test samples, "
             f"{c['n_features']} features, {c['n_classes']} classes.", "",
             f"Search: `QNASEstimator(search_space={c['space']!r}, qubit_budget={args.qubit_budget}, "
             f"random_state={args.seed}{overrides})`, every other setting at its default (`learning_rate="
             f"{est.learning_rate}`, `batch_size={est.batch_size}`, `finetune_epochs={est.finetune_epochs}`, "
             f"`population_size={est.population_size}`, `n_generations={est.n_generations}`, "
             f"`validation_size={est.validation_size}`, `hidden={est.hidden!r}`).", "",
             f"Stand-alone recipe: `arch.model(n_features, n_classes, seed=s)` trained by `train_model(model, X, y, "
             f"epochs={args.epochs}, seed=s)` (its defaults: {defaults}) on the training split standardised per "
             "feature with its own mean and deviation (what the estimator does), scored on the test split; "
             f"the stand-alone test accuracy is the mean over the seeds s = {seeds}.", ""]
    rows_summary = [
        ("Kendall's tau, search val error vs stand-alone test error", f"{fmt(tau, 3)} (p {fmt(corr['kendall_p'], 3)})",
         f">= {TAU_GOAL}: {verdict(tau >= TAU_GOAL)}"),
        ("Spearman's rho", f"{fmt(corr['spearman_rho'], 3)} (p {fmt(corr['spearman_p'], 3)})", ""),
        ("candidates trained stand-alone", str(n_rows), ""),
        (f"chosen `{chosen.architecture.key}`: test accuracy (`est.score`)", fmt(c["chosen_score"]), ""),
        ("chosen: stand-alone test accuracy, rank among the stand-alone results",
         f"{fmt(c['chosen_standalone'])}, rank {rank} of {n_rows}", ""),
        (f"random search at equal wall time ({len(random_search['trials'])} architectures in "
         f"{random_search['wall_s']:.0f} s): best by validation, test accuracy",
         f"{fmt(random_search['best']['test_accuracy'])} (`{random_search['best']['architecture'].key}`)",
         f"chosen at least as good: {verdict(c['chosen_score'] >= random_search['best']['test_accuracy'])}"),
        (f"re-evaluated before choosing (`reevaluations={est.reevaluations}`): validation errors -> mean",
         "; ".join(f"`{r.architecture.key}` {' / '.join(fmt(e) for e in r.val_errors)} -> {fmt(r.val_error)}"
                   for r in est.result_.candidates if r.val_errors) or "none", ""),
        (f"classical ablation of equal width ({chosen.architecture.n_qubits}), test accuracy",
         fmt(ablation["test_accuracy"]),
         f"chosen {100 * (c['chosen_score'] - ablation['test_accuracy']):+.2f} points"),
        ("families whose best search-time val error is within "
         f"{FAMILY_GAP} of their best stand-alone test error",
         f"{sum(abs(f['gap']) <= FAMILY_GAP for f in c['families'].values() if 'gap' in f)} of "
         f"{sum('gap' in f for f in c['families'].values())}", "")]
    lines += ["## Summary", "", "| measure | value | check |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {v} |" for a, b, v in rows_summary]
    lines += ["", "## Candidates: search estimate vs stand-alone training", "",
              f"{len(c['rows'])} of the {c['n_evaluated']} evaluated candidates ({c['n_failed']} failed): "
              f"{min(args.n_candidates, c['n_evaluated'] - c['n_failed'])} at evenly spaced ranks of validation "
              "error, plus the best of every embedding family and the chosen one (marked *).", "",
              "| architecture | generation | search val error | stand-alone test accuracy | per seed | test error | "
              "training time per seed |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in c["rows"]:
        mark = " *" if r["architecture"] == chosen.architecture else ""
        lines.append(f"| `{r['architecture'].key}`{mark} | {r['generation']} | {fmt(r['val_error'])} | "
                     f"{fmt(r['test_accuracy'])} | {' / '.join(fmt(a) for a in r['seed_accuracies'])} | "
                     f"{fmt(r['test_error'])} | {r['train_s']:.1f} s |")
    lines += ["", "## Per embedding family", "",
              "Search-time figures over every evaluated candidate; stand-alone figures over the candidates above. "
              f"Gap: best search-time val error minus best stand-alone test error (goal: within {FAMILY_GAP}).", "",
              "| embedding | evaluated | best search val error | trained stand-alone | best stand-alone accuracy | "
              "mean stand-alone accuracy | gap | within |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for family, f in c["families"].items():
        gap = f.get("gap")
        lines.append(f"| {family} | {f['evaluated']} | {fmt(f['best_val_error'])} | {f['trained']} | "
                     f"{fmt(f['best_accuracy'])} | {fmt(f['mean_accuracy'])} | {fmt(gap, 3)} | "
                     f"{'' if gap is None else verdict(abs(gap) <= FAMILY_GAP)} |")
    lines += ["", "## Random search at equal wall time", "",
              f"Budget: the search's `fit` time, {random_search['budget_s']:.0f} s; spent "
              f"{random_search['wall_s']:.0f} s. Architectures drawn uniformly from the same space "
              f"(`SearchSpace.sample`, `numpy.random.default_rng({args.seed})`, distinct), trained with the "
              f"stand-alone recipe on the search's training split ({random_search['n_fit']} samples), chosen by "
              f"accuracy on its validation split ({random_search['n_val']} samples), then scored on the test split."
              + ("" if random_search["discarded"] is None else
                 f" One more trial (`{random_search['discarded']['architecture'].key}`) ended after the budget and "
                 "is not counted."), "",
              "| architecture | validation accuracy | test accuracy | training time |", "|---|---:|---:|---:|"]
    for r in random_search["trials"]:
        mark = " *" if r is random_search["best"] else ""
        lines.append(f"| `{r['architecture'].key}`{mark} | {fmt(r['val_accuracy'])} | {fmt(r['test_accuracy'])} | "
                     f"{r['train_s']:.1f} s |")
    lines += ["", "## Classical ablation of equal width", "",
              f"The chosen model's pre-layer (`hidden={est.hidden!r}`, dropout {est.dropout}) -> Linear to "
              f"{chosen.architecture.n_qubits} -> the angle embeddings' normalisation (`EmbeddingNorm`) -> tanh -> "
              f"the same head ({ablation['n_parameters']} trainable parameters), trained with the stand-alone recipe "
              f"in {ablation['train_s']:.1f} s per seed: test accuracy {fmt(ablation['test_accuracy'])} (seeds: "
              f"{' / '.join(fmt(a) for a in ablation['seed_accuracies'])}), against the chosen model's "
              f"{fmt(c['chosen_score'])} "
              f"(`est.score`) and {fmt(c['chosen_standalone'])} (the same architecture stand-alone).", "",
              "## Wall time", "", "| phase | wall time |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.1f} s |" for name, seconds in c["times"].items()]
    lines += ["", "Inside `fit`: " + ", ".join(f"{k} {v:.1f} s" for k, v in est.timings_.items()) + ".", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--data-dir", default=None,
                        help="mnist: folder with the IDX .gz files (or its mnist/ subfolder); default "
                             "$QNAS_DATA_DIR, else a download from OpenML")
    parser.add_argument("--n-train", type=int, default=6000, help="mnist: the first N training images (6000)")
    parser.add_argument("--n-test", type=int, default=2000, help="mnist: the first N test images (2000)")
    parser.add_argument("--seed", type=int, default=0, help="the estimator's random_state and the random search's")
    parser.add_argument("--qubits", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"), help="(4, 8)")
    parser.add_argument("--layers", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"), help="(1, 2)")
    parser.add_argument("--qubit-budget", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=None,
                        help="stand-alone training epochs (digits 30, mnist 10)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="stand-alone trainings per candidate, accuracy averaged (digits 2, mnist 1)")
    parser.add_argument("--n-candidates", type=int, default=None,
                        help="candidates at evenly spaced ranks of validation error (12)")
    for name in ESTIMATOR_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help="(estimator default)")
    parser.add_argument("--quick", action="store_true",
                        help="check the pipeline in about a minute: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--out", default=None, help="report path (default benchmarks/results/search_fidelity_...)")
    args = parser.parse_args(argv)
    defaults = dict(qubits=(4, 8), layers=(1, 2), n_candidates=12, **STANDALONE[args.dataset])
    if args.quick:
        defaults.update(QUICK)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tuple(value) if isinstance(value, list) else value)
    if args.dataset == "digits" and args.data_dir is not None:
        parser.error("--data-dir applies to mnist only (digits ships with scikit-learn)")
    if args.dataset == "mnist" and args.data_dir is None:
        args.data_dir = os.environ.get("QNAS_DATA_DIR")
    for name, low in (("epochs", 1), ("seeds", 1), ("n_candidates", 2), ("n_train", 10), ("n_test", 10)):
        if getattr(args, name) < low:
            parser.error(f"invalid --{name.replace('_', '-')} {getattr(args, name)}; allowed: an integer >= {low}")
    try:  # a bad space fails here, before any data is read; the estimator checks its settings before it trains
        args.space = SearchSpace(qubits=tuple(args.qubits), layers=tuple(args.layers))
    except ValueError as exc:
        parser.error(f"--qubits / --layers: {exc}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    space = args.space
    overrides = {k: getattr(args, k) for k in ESTIMATOR_FLAGS if getattr(args, k) is not None}
    load_start, wall_start, times = load_average(), time.perf_counter(), {}

    X_train, y_train, X_test, y_test, description = load_data(args.dataset, args.data_dir, args.n_train, args.n_test)
    print(f"{args.dataset}: {X_train.shape} train, {X_test.shape} test; space {space!r}", flush=True)
    print("[search]", flush=True)
    est, times["search (QNASEstimator.fit)"] = run_search(space, args.qubit_budget, args.seed, overrides,
                                                          X_train, y_train)
    chosen = est.best_candidate_
    chosen_score = float(est.score(X_test, y_test))
    print(f"  chosen {chosen.architecture.key}: val error {chosen.val_error:.4f}, test accuracy {chosen_score:.4f} "
          f"({times['search (QNASEstimator.fit)']:.0f} s)", flush=True)

    Xs_train, Xs_test = standardise(X_train, X_test)
    picked = spread_candidates(est.result_.candidates, args.n_candidates, chosen)
    print(f"[stand-alone] {len(picked)} candidates, {args.epochs} epochs, {args.seeds} seed(s) each", flush=True)
    started = time.perf_counter()
    rows = standalone_phase(picked, Xs_train, y_train, Xs_test, y_test, args.epochs, args.seeds)
    times["stand-alone training of the candidates"] = time.perf_counter() - started

    budget = times["search (QNASEstimator.fit)"]
    print(f"[random search] {budget:.0f} s", flush=True)
    random_search = random_search_phase(space, budget, args.seed, est.validation_size, Xs_train, y_train, Xs_test,
                                        y_test, args.epochs)
    times["random search"] = random_search["wall_s"]

    print("[classical ablation]", flush=True)
    ablation = ablation_phase(chosen.architecture, est.hidden, est.dropout, Xs_train, y_train, Xs_test, y_test,
                              args.epochs, args.seeds)
    times["classical ablation"] = ablation["train_s"]
    times["total"] = time.perf_counter() - wall_start

    context = dict(
        argv=argv, est=est, chosen=chosen, chosen_score=chosen_score, space=space, overrides=overrides, rows=rows,
        description=description, y_train=y_train, y_test=y_test, n_features=X_train.shape[1],
        n_classes=len(np.unique(y_train)), correlations=rank_correlations(rows),
        families=families(est.result_.candidates, rows), rank=standalone_rank(rows, chosen.architecture),
        chosen_standalone=next(r["test_accuracy"] for r in rows if r["architecture"] == chosen.architecture),
        random=random_search, ablation=ablation, times=times, load_start=load_start, load_end=load_average(),
        n_evaluated=len(est.result_.candidates), n_failed=sum(c.failed for c in est.result_.candidates))
    text = markdown(args, context)
    out = Path(args.out) if args.out else (
        ROOT / "results" / f"search_fidelity_{args.dataset}{'_quick' if args.quick else ''}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
