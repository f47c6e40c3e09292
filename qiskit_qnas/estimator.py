"""``QNASEstimator``: quantum neural architecture search behind scikit-learn's classifier API."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._version import __version__
from .cut_execution import cut_expectation_values
from .fidelity import choose_confirmed, confirm_on_device
from .isa import to_isa
from .memory import check_memory, exact_engine_bytes, parse_memory
from .model import HQNN, PREDICT_BATCH, Hidden, check_head, check_hidden, predict_logits
from .noise import TrainingNoise
from .objective import search_objectives
from .objectives import (
    FINETUNE_SAMPLES,
    TARGET_CHUNK_SAMPLES,
    EvaluationContext,
    candidate_seed,
    reevaluate_candidate,
    target_logits,
)
from .parallel import evaluate_generation, resolve_executor
from .qpu_budget import (
    DEVICE_SAMPLES,
    QPUBudgetError,
    QPUPlan,
    billed_seconds,
    check_budget,
    plan_search,
    resolve_fidelity,
)
from .result import Candidate, SearchResult, atomic_write
from .rundir import (
    MODEL,
    SUPERCIRCUIT,
    check_run_directory,
    read_seed,
    read_tensors,
    run_directory_lock,
    write_seed,
)
from .search import run_nsga2
from .selection import SELECTIONS, confirm_leader, contenders, select
from .space import SearchSpace
from .supercircuit import SuperCircuit, finetune, train_supercircuit
from .targets import AER_DEFAULT_SHOTS, ExecutionTarget, aer_state_bytes, check_runtime_options, resolve_target
from .validation import (
    InvalidArgument,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_positive,
    is_integer,
)

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit

logger = logging.getLogger(__name__)

#: optimiser steps the SuperCircuit gets by default (epochs = this / batches per epoch, in [5, 100])
SUPERCIRCUIT_STEPS = 600
TARGET_MODES = ("auto", "exact", "aer", "runtime")


#: settings added after the first release, with their defaults (a run fingerprint includes them only
#: when they differ from these)
LATER_SETTINGS: dict[str, Any] = {"head": "linear", "output_norm": False}
#: the settings a fingerprint leaves out: they change how a run is executed or chosen from, not what it computes
_UNFINGERPRINTED = ("executor", "n_jobs", "max_concurrent_jobs", "verbose", "callback", "checkpoint_dir", "backend",
                    "reference_backend", "search_space", "selection", "reevaluations", "max_subcircuits",
                    "max_runtime", "final_epochs", "max_memory", "max_qpu_seconds", "device_confirmations",
                    "device_samples")


@dataclass
class _Plan:
    """What ``fit`` works from, checked before anything is written: the scaled data and its
    splits, the seed, the target and the run's fingerprint."""

    space: SearchSpace
    target: Any
    seed: int
    encoder: LabelEncoder
    mean: np.ndarray
    std: np.ndarray
    X: np.ndarray  # scaled, float32
    y: np.ndarray  # encoded
    X_train: np.ndarray
    X_val: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    fingerprint: str
    noise: TrainingNoise | None = None  # the target's noise for noise-aware training (None: noiseless)
    fidelity: str = "target"  # "target" or "multi" (qiskit_qnas.qpu_budget)
    qpu_plan: QPUPlan | None = None  # what the search will submit to a device (None off a device)


def _scaled(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(X - mean) / std`` in float32, the model's precision; refused when a value does not fit it."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = ((X - mean) / std).astype(np.float32)
    if not np.all(np.isfinite(scaled)):
        row, column = (int(i[0]) for i in np.nonzero(~np.isfinite(scaled)))
        raise ValueError(f"X[{row}, {column}] = {X[row, column]:.3g} overflows float32 (the model's precision) after "
                         f"scaling; allowed: features whose scaled values stay within +-3.4e38")
    return scaled


def _on_exact(on_target) -> bool:
    """Whether ``predict``'s ``on_target`` asks for the exact engine (False or None)."""
    return on_target is None or (isinstance(on_target, (bool, np.bool_)) and not on_target)


class QNASEstimator(ClassifierMixin, BaseEstimator):
    """Search a space of hybrid quantum-classical networks and keep the best one as a classifier.

    ``fit`` trains one weight-sharing :class:`~qiskit_qnas.supercircuit.SuperCircuit` on the exact
    engine (or under the target's injected noise, see ``noise_aware``), then runs NSGA-II (pymoo)
    over the space on three minimised objectives: validation error (measured on ``backend``), a
    runtime proxy from the ISA circuit and the number of subcircuits circuit cutting needs under
    ``qubit_budget``. The chosen candidate (see ``selection``) is then
    fine-tuned on all of the ``fit`` data and used by ``predict``.

    Args:
        search_space: the :class:`SearchSpace` (default ``SearchSpace()``).
        qubit_budget: largest subcircuit width the cutting objective allows (>= 1).
        backend: ``None`` (exact simulation), a ``qiskit_aer.AerSimulator`` (noise model or not), a
            ``BackendV2`` (fake backend or IBM backend), or an ``ExecutionTarget`` made by
            :func:`qiskit_qnas.targets.resolve_target` (retries, timeouts, your own primitive).
        target_mode: for a fake backend, ``"aer"`` (Aer with its noise model) or ``"runtime"``
            (Runtime's local testing mode); ``"auto"`` picks the default.
        shots: shots per circuit on a sampling target (None: the target's default / exact).
        noise_aware: noise-adaptive training: the SuperCircuit and every fine-tuning train under
            the target backend's gate and readout errors on the ISA circuit's gates and qubits, the
            loss taken on the averaged noisy channel's ``<Z_i>`` (what the target measures; an Aer
            noise model's own errors, else the ``Target``'s error rates as depolarising channels;
            :class:`qiskit_qnas.noise.TrainingNoise`). Needs a noisy target (an ``AerSimulator``
            with a noise model, a fake or real IBM backend); default False (exact training).
        population_size, n_generations: NSGA-II settings (the initial population is generation 1).
        supercircuit_epochs: SuperCircuit training epochs (None: about 600 optimiser steps).
        finetune_epochs: epochs each candidate is fine-tuned after inheriting weights (0 allowed).
        finetune_samples: fine-tuning sees at most this many training samples, one subset drawn from
            the seed for every candidate (None: all); the SuperCircuit and the final model train on all.
        final_epochs: epochs the chosen candidate is fine-tuned on all the data (None: 2 x finetune).
        batch_size, learning_rate: mini-batch size and Adam step size (SuperCircuit and fine-tuning;
            a space with ``learning_rates`` overrides the fine-tuning rate per candidate); the
            defaults are :func:`~qiskit_qnas.model.train_model`'s, so that a candidate trains in the
            search as it does stand-alone.
        hidden, dropout: width of the classical pre-layer (the paper's 64; also a tuple of widths, or
            ``"cnn"`` for a small convolutional trunk on square images, see
            :func:`qiskit_qnas.model.classical_trunk`) and its dropout. ``hidden=None``: no trainable
            layer before the circuit (the literature's quantum-dominant regime): the features enter
            the embedding through a fixed map fitted on the training split, one to one and min-max
            scaled to [0, 1] when the circuit has at least as many inputs as there are features (the
            spare ones get 0), their leading principal components (whitened) otherwise
            (:class:`qiskit_qnas.model.FixedInputMap`).
        head: ``"linear"`` (a trainable ``Linear(n_qubits, n_classes)`` on the read-outs, default) or
            None (the ``<Z>`` of the first ``n_classes`` qubits are the class scores; refused when the
            space's narrowest candidate has fewer qubits than there are classes).
        output_norm: QuantumNAT's post-measurement normalisation (per-qubit batch statistics of the
            read-outs in training, their running estimates at inference, on the target too; see
            :class:`qiskit_qnas.model.ReadoutNorm`). None (default): on with ``noise_aware=True``,
            off otherwise. Trained under the target's noise, its statistics are the noisy read-outs':
            such a model is made for the target (``predict(..., on_target=True)``), and on the
            exact engine its scores are off scale.
        n_random: members trained per step besides the largest and smallest (sandwich rule).
        validation_size: fraction of the ``fit`` data held out (stratified) for ``val_error``.
        scale_inputs: standardise features with the ``fit`` data's mean and deviation.
        runtime_objective: ``"proxy"`` (deterministic, default) or ``"measured"`` (wall clock).
        cutting_objective: ``"subcircuits"`` (partitions, default), ``"subexperiments"`` or
            ``"overhead"`` (both log10).
        cut_time_limit: cap in seconds on every cut-finding call.
        selection: how the model is picked from the front: ``"min_error"`` (lowest validation
            error, ties to the cheaper runtime, then fewer subcircuits, then the lower validation
            loss), ``"min_runtime"``, ``"min_subcircuits"``, or a callable taking the front and
            returning a candidate.
        reevaluations: with ``selection="min_error"``, at most this many candidates are measured
            a second time before the leader (the candidate ``min_error`` would choose) is believed:
            fine-tuned again from its inherited weights with the chosen model's recipe
            (``final_epochs`` on the whole training split) and scored on the validation split on the
            target, the validation error becoming the mean of both measurements. The leader is
            measured first and looked up again, until it is a re-evaluated one; then the candidates
            whose search-time error lies within one binomial standard error of the lowest (on the
            validation split's size) are measured too, so near-ties are decided by the second
            measurement (:func:`qiskit_qnas.selection.confirm_leader`). The front is computed from
            the pooled errors. 0 (or ``final_epochs=0``) turns it off.
        max_subcircuits, max_runtime: constraints applied before ``selection`` (front members that
            satisfy them; the whole front if none does).
        reference_backend, optimization_level: backend and transpiler level of the ISA circuits
            the runtime proxy is computed from (default: the target's backend, or a fake
            heavy-hex IBM backend for exact simulation).
        executor, n_jobs: evaluate a generation's candidates concurrently through a
            ``concurrent.futures.Executor`` (e.g. ``dask.distributed.Client.get_executor()``), or a
            local process pool of ``n_jobs`` workers. Results equal the serial run's.
        max_concurrent_jobs: on IBM Runtime (and its local testing mode), how many candidates'
            jobs are in flight at once in the search's one ``Batch`` (default 1). Results equal the
            one-at-a-time run's.
        runtime_options: IBM Runtime error suppression and mitigation (Runtime targets only), e.g.
            ``{"resilience_level": 1, "twirling": {"enable_gates": True, "num_randomizations": 8},
            "dynamical_decoupling": {"enable": True, "sequence_type": "XY4"}}``; keys and values
            are those of :func:`qiskit_qnas.targets.check_runtime_options`, checked before any
            work. The runtime proxy counts the circuits and shots they add.
        checkpoint_dir: a directory for the SuperCircuit weights, a checkpoint after every
            generation (``checkpoint.json``, data only) and the result; an interrupted ``fit`` with
            the same settings resumes there. ``fit`` holds the directory's lock
            (:func:`qiskit_qnas.rundir.run_directory_lock`): a second process's ``fit`` of it is
            refused at once, naming the holder.
            It must be new, empty or a run of exactly these settings (checked before anything is
            written; see :func:`qiskit_qnas.rundir.check_run_directory`). With
            ``random_state=None`` the seed drawn is recorded there (``seed.json``) so the run resumes.
        max_memory: cap on the memory one candidate's simulation may need (bytes as an int, or a
            string such as ``"4GiB"``; None: the machine's available memory, which also caps it).
            Checked for the widest candidate before any work.
        max_qpu_seconds: a budget of device seconds (as IBM bills them, :mod:`qiskit_qnas.runtime_proxy`)
            for what the search submits to a device (an IBM backend, or a fake one in Runtime's local
            testing mode). Before any job the search's usage is estimated and printed
            (``result_.qpu_plan``); a budget its first step does not fit in is refused with one line
            (:class:`~qiskit_qnas.qpu_budget.QPUBudgetError`, a ``ValueError``), and no job is
            submitted that would take the accounted usage (``result_.qpu_seconds``) past it: the
            search stops after its last complete generation and chooses from what it measured (with
            ``checkpoint_dir``, a fit with a larger budget resumes it). ``predict``/``score`` with
            ``on_target`` on a device keep to what is left. None: no budget (the plan is printed).
        fidelity: how candidates are measured on a device target (:mod:`qiskit_qnas.qpu_budget`):
            ``"multi"`` (the default there, ``"auto"``) measures every candidate on the device's
            emulation (Aer with its noise model) and only the leader and its near-ties on the device
            (``device_confirmations`` of them, on ``device_samples`` validation samples, shots sized
            by the precision the decisions need), choosing among them by their device error;
            ``"target"`` measures every candidate on the target itself (all on the device).
        device_confirmations, device_samples: the multi-fidelity confirmations (see ``fidelity``).
        random_state: seed of everything random (an integer >= 0, a ``numpy.random.RandomState``), or None.
        verbose: 0 silent, 1 progress bars.
        callback: called with (generation, candidates of that generation) after every generation.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels seen by ``fit``, in the order of ``predict_proba``'s columns.
    n_features_in_ : int
        Number of features seen by ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen by ``fit``; only when ``X`` has string column names (a DataFrame).
    model_ : HQNN
        The chosen candidate, fine-tuned on all of the ``fit`` data; ``predict`` runs it.
    supercircuit_ : SuperCircuit
        The trained weight-sharing SuperCircuit every candidate inherited its weights from.
    target_ : ExecutionTarget
        The target the candidates were evaluated on, reused by ``on_target=True`` predictions. A
        Runtime target holds a ``Batch`` (or ``Session``) open: :meth:`close` (or ``with``) ends it.
    result_ : SearchResult
        Every candidate evaluated, the objective names, the search history and the run's settings
        (``result_.config``, with the timings); ``result_.chosen`` indexes the chosen candidate.
    pareto_front_ : list of Candidate
        The non-dominated candidates (``result_.pareto_front``).
    best_candidate_ : Candidate
        The front member ``selection`` chose.
    best_architecture_ : Architecture
        Its architecture (``best_candidate_.architecture``).
    timings_ : dict of str to float
        Wall-clock seconds of the phases of ``fit``: ``supercircuit_training``, ``search`` (of which
        ``candidate_evaluation`` and ``cut_finding``), ``reevaluation`` (see ``reevaluations``),
        ``device_confirmation`` (multi-fidelity searches) and ``final_training``.
    scoring_qpu_seconds_ : float
        Device seconds accounted for ``predict``/``score`` calls with ``on_target`` on a device since
        ``fit`` (the search's own are ``result_.qpu_seconds``).
    """

    def __init__(self, search_space: SearchSpace | None = None, qubit_budget: int = 4, backend=None, *,
                 target_mode: str = "auto", shots: int | None = None, noise_aware: bool = False,
                 population_size: int = 12,
                 n_generations: int = 6, supercircuit_epochs: int | None = None, finetune_epochs: int = 5,
                 finetune_samples: int | None = FINETUNE_SAMPLES,
                 final_epochs: int | None = None, batch_size: int = 32, learning_rate: float = 0.02,
                 hidden: Hidden = 64, dropout: float = 0.1, head: str | None = "linear",
                 output_norm: bool | None = None,
                 n_random: int = 2, validation_size: float = 0.2,
                 scale_inputs: bool = True, runtime_objective: str = "proxy",
                 cutting_objective: str = "subcircuits", cut_time_limit: float = 5.0,
                 selection: str | Callable = "min_error", reevaluations: int = 3,
                 max_subcircuits: int | None = None,
                 max_runtime: float | None = None, reference_backend=None, optimization_level: int = 1,
                 executor=None, n_jobs: int | None = None, max_concurrent_jobs: int = 1,
                 runtime_options: dict | None = None, checkpoint_dir: str | None = None,
                 max_memory: int | str | None = None, max_qpu_seconds: float | None = None,
                 fidelity: str = "auto", device_confirmations: int = 3, device_samples: int = DEVICE_SAMPLES,
                 random_state: int | None = None, verbose: int = 1, callback: Callable | None = None):
        self.search_space = search_space
        self.qubit_budget = qubit_budget
        self.backend = backend
        self.target_mode = target_mode
        self.shots = shots
        self.noise_aware = noise_aware
        self.population_size = population_size
        self.n_generations = n_generations
        self.supercircuit_epochs = supercircuit_epochs
        self.finetune_epochs = finetune_epochs
        self.finetune_samples = finetune_samples
        self.final_epochs = final_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.hidden = hidden
        self.dropout = dropout
        self.head = head
        self.output_norm = output_norm
        self.n_random = n_random
        self.validation_size = validation_size
        self.scale_inputs = scale_inputs
        self.runtime_objective = runtime_objective
        self.cutting_objective = cutting_objective
        self.cut_time_limit = cut_time_limit
        self.selection = selection
        self.reevaluations = reevaluations
        self.max_subcircuits = max_subcircuits
        self.max_runtime = max_runtime
        self.reference_backend = reference_backend
        self.optimization_level = optimization_level
        self.executor = executor
        self.n_jobs = n_jobs
        self.max_concurrent_jobs = max_concurrent_jobs
        self.runtime_options = runtime_options
        self.checkpoint_dir = checkpoint_dir
        self.max_memory = max_memory
        self.max_qpu_seconds = max_qpu_seconds
        self.fidelity = fidelity
        self.device_confirmations = device_confirmations
        self.device_samples = device_samples
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    # --- validation -----------------------------------------------------------------------------
    def _space(self) -> SearchSpace:
        if self.search_space is None:
            return SearchSpace()
        if isinstance(self.search_space, dict):
            return SearchSpace.from_dict(self.search_space)
        if not isinstance(self.search_space, SearchSpace):
            raise InvalidArgument("search_space", self.search_space, "a SearchSpace, its dict, or None")
        return self.search_space

    def _check_params(self) -> None:
        check_int("qubit_budget", self.qubit_budget, 1)
        # (name, lowest value, None allowed)
        for name, low, optional in (("population_size", 2, False), ("n_generations", 1, False),
                                    ("supercircuit_epochs", 1, True), ("finetune_epochs", 0, False),
                                    ("finetune_samples", 2, True), ("final_epochs", 0, True),
                                    ("batch_size", 1, False), ("n_random", 0, False),
                                    ("optimization_level", 0, False), ("n_jobs", 1, True),
                                    ("max_concurrent_jobs", 1, False), ("shots", 1, True),
                                    ("max_subcircuits", 1, True), ("reevaluations", 0, False),
                                    ("device_confirmations", 0, False), ("device_samples", 2, False)):
            check_int(name, getattr(self, name), low, allow_none=optional)
        check_hidden(self.hidden, allow_zero=False)
        check_head(self.head)
        if not isinstance(self.noise_aware, (bool, np.bool_)):
            raise InvalidArgument("noise_aware", self.noise_aware, "True or False")
        if not (self.output_norm is None or isinstance(self.output_norm, (bool, np.bool_))):
            raise InvalidArgument("output_norm", self.output_norm, "None (on with noise_aware=True), True or False")
        check_fraction("validation_size", self.validation_size)
        check_number("dropout", self.dropout, 0, 1, allowed="a number with 0 <= dropout < 1")
        check_positive("learning_rate", self.learning_rate, allowed="a positive finite number")
        check_positive("cut_time_limit", self.cut_time_limit)
        check_positive("max_runtime", self.max_runtime, allow_zero=True, allow_none=True)
        check_number("max_qpu_seconds", self.max_qpu_seconds, 0, high_inclusive=True, allow_none=True,
                     allowed="None (no budget) or a number of device seconds >= 0")
        for name in ("runtime_objective", "cutting_objective", "target_mode", "fidelity"):
            if not isinstance(getattr(self, name), str):
                raise InvalidArgument(name, getattr(self, name), "a string (see the docstring)")
        search_objectives(self.runtime_objective, self.cutting_objective)  # refuses unknown settings
        check_choice("target_mode", self.target_mode, TARGET_MODES)
        if not (callable(self.selection) or (isinstance(self.selection, str) and self.selection in SELECTIONS)):
            raise InvalidArgument("selection", self.selection, f"{', '.join(SELECTIONS)} or a callable")
        if not isinstance(self.scale_inputs, (bool, np.bool_)):
            raise InvalidArgument("scale_inputs", self.scale_inputs, "True, False")
        if self.optimization_level > 3:
            raise InvalidArgument("optimization_level", self.optimization_level, "0, 1, 2, 3")
        if self.reference_backend is not None and not hasattr(self.reference_backend, "target"):
            raise InvalidArgument("reference_backend", self.reference_backend, "None or a BackendV2")
        if self.executor is not None and not callable(getattr(self.executor, "submit", None)):
            raise InvalidArgument("executor", self.executor, "a concurrent.futures.Executor (e.g. "
                                  "dask.distributed.Client.get_executor()) or None")
        if self.executor is not None and self.n_jobs is not None:
            raise ValueError("pass executor= or n_jobs=, not both")
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            raise InvalidArgument("checkpoint_dir", self.checkpoint_dir, "None or a directory path")
        check_runtime_options(self.runtime_options)
        parse_memory(self.max_memory)
        random_state = self.random_state
        if not (random_state is None or isinstance(random_state, np.random.RandomState) or (
                is_integer(random_state) and 0 <= random_state < 2**32)):
            raise InvalidArgument("random_state", random_state, "None, an integer from 0 to 2**32 - 1, "
                                  "or a numpy.random.RandomState")
        if not (isinstance(self.verbose, (bool, np.bool_, int, np.integer)) and self.verbose >= 0):
            raise InvalidArgument("verbose", self.verbose, "0 (silent), 1 (progress bars), or a bool")
        if self.callback is not None and not callable(self.callback):
            raise InvalidArgument("callback", self.callback, "None or a callable")

    def _run_dir(self) -> Path | None:
        """``checkpoint_dir`` as a path (``~`` expanded), or None."""
        return None if self.checkpoint_dir is None else Path(self.checkpoint_dir).expanduser()

    def _seed(self, run_dir: Path | None = None) -> int:
        if is_integer(self.random_state):
            return int(self.random_state)
        if self.random_state is None and run_dir is not None:
            recorded = read_seed(run_dir)  # a run of random_state=None keeps the seed it drew
            if recorded is not None:
                return recorded
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    # --- fit --------------------------------------------------------------------------------------
    def _check_data(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=2)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(f"y has a single class ({encoder.classes_[0]!r}); a classifier needs at least 2 classes")
        counts = np.bincount(encoder.transform(y))
        if counts.min() < 2:
            raise ValueError(f"every class needs at least 2 samples for the stratified validation split; "
                             f"class {encoder.classes_[counts.argmin()]!r} has {counts.min()}")
        return X, y, encoder

    def _n_val(self, n_samples: int, n_classes: int) -> int:
        return max(n_classes, int(round(self.validation_size * n_samples)))

    def _plan(self, X, y, n_predict: int = 0) -> _Plan:
        """Check every setting, the data, the target's width and the memory the widest candidate
        needs (training batch, validation split and ``n_predict`` samples to predict), then scale
        and split the data. Nothing is written."""
        self._check_params()
        space = self._space()
        X, y, encoder = self._check_data(X, y)
        check_head(self.head, space.qubits[0], len(encoder.classes_))
        run_dir = self._run_dir()
        seed = self._seed(run_dir)
        target = self.resolve_target(seed)
        target.check_width(space.max_qubits, what=f"the search space's widest candidate ({space.max_qubits} qubits)")
        noise = TrainingNoise(target) if self.noise_aware else None  # refuses a target without a noise model
        fidelity = resolve_fidelity(self.fidelity, target)
        n_val = self._n_val(len(X), len(encoder.classes_))
        qpu_plan = plan_search(target, space, fidelity=fidelity, population_size=int(self.population_size),
                               n_generations=int(self.n_generations), n_validation=n_val,
                               reevaluations=self._reevaluations(), device_confirmations=int(self.device_confirmations),
                               device_samples=int(self.device_samples), max_qpu_seconds=self.max_qpu_seconds)
        if qpu_plan is not None:
            qpu_plan.check()  # refuses, before any job, a budget the first step does not fit in
        n, batch = space.max_qubits, max(int(self.batch_size), min(int(n_predict), PREDICT_BATCH))
        # training and prediction run on the exact engine; the validation split on the target, or on its
        # emulation here (a noisy Aer simulation) in a multi-fidelity search
        emulated = aer_state_bytes(n, AER_DEFAULT_SHOTS, noisy=True) if fidelity == "multi" else 0
        needed = max(exact_engine_bytes(n, batch), target.memory_bytes(n, n_val), emulated)
        check_memory(needed, f"the widest candidate ({n} qubits) on target {target.name}, {batch} samples at once "
                     f"in training/prediction and a validation split of {n_val}", self.max_memory,
                     argument=("qubits", space.qubits))
        with np.errstate(over="ignore", invalid="ignore"):
            mean = X.mean(0) if self.scale_inputs else np.zeros(X.shape[1])
            std = X.std(0) if self.scale_inputs else np.ones(X.shape[1])
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            column = int(np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))[0])
            raise ValueError(f"X column {column}: its mean or standard deviation overflows float64 (values up to "
                             f"{np.abs(X[:, column]).max():.3g}); allowed: features whose spread stays below about "
                             f"1e154 (rescale them, or pass scale_inputs=False with values within float32 range)")
        std = np.where(std > 0, std, 1.0)
        Xs = _scaled(X, mean, std)
        y_encoded = encoder.transform(y)
        try:
            X_train, X_val, y_train, y_val = train_test_split(Xs, y_encoded, test_size=n_val, stratify=y_encoded,
                                                              random_state=seed)
        except ValueError as exc:
            raise ValueError(f"cannot carve a stratified validation split of {n_val} samples from "
                             f"{len(Xs)}: {exc}") from exc
        return _Plan(space=space, target=target, seed=seed, encoder=encoder, mean=mean, std=std, X=Xs, y=y_encoded,
                     X_train=X_train, X_val=X_val, y_train=y_train, y_val=y_val,
                     fingerprint=self._fingerprint(space, target, Xs, y_encoded, seed), noise=noise, fidelity=fidelity,
                     qpu_plan=qpu_plan)

    def fit(self, X: ArrayLike, y: ArrayLike) -> QNASEstimator:
        """Train the SuperCircuit, search the space, and fine-tune the chosen candidate.

        Every argument, the data, the memory the widest candidate needs and the checkpoint
        directory are checked before any work starts and before anything is written.
        """
        plan = self._plan(X, y)
        run_dir = self._run_dir()
        if run_dir is not None:
            check_run_directory(run_dir, plan.fingerprint, plan.seed)  # before anything is written
        if plan.qpu_plan is not None:
            logger.info("%s", plan.qpu_plan.summary())
            if self.verbose:
                print(plan.qpu_plan.summary(), flush=True)
        with contextlib.nullcontext() if run_dir is None else run_directory_lock(run_dir):
            if run_dir is not None:  # again under the lock: another run may have written it meanwhile
                check_run_directory(run_dir, plan.fingerprint, plan.seed)
            self.close()  # a previous fit's target
            try:
                return self._fit(plan)
            except BaseException:
                if plan.target is not self.backend:  # opened by this fit and unreachable after a failure
                    plan.target.close()
                raise

    def _fit(self, plan: _Plan):
        space, target, seed = plan.space, plan.target, plan.seed
        run_dir = self._run_dir()
        executor, owned_executor = resolve_executor(self.executor, self.n_jobs)
        if run_dir is not None and self.random_state is None:
            write_seed(run_dir, seed)
        self.classes_ = plan.encoder.classes_
        self._encoder = plan.encoder
        self._mean, self._std = plan.mean, plan.std
        self._fingerprint_value = plan.fingerprint
        Xs, y_encoded = plan.X, plan.y
        X_train, X_val, y_train, y_val = plan.X_train, plan.X_val, plan.y_train, plan.y_val
        fingerprint, noise = plan.fingerprint, plan.noise
        timings: dict[str, float] = {}
        emulator = target.emulator() if plan.fidelity == "multi" else None
        try:
            supercircuit = self._train_supercircuit(space, X_train, y_train, seed, run_dir, fingerprint, timings,
                                                    noise)
            context = EvaluationContext(
                supercircuit=supercircuit, X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val,
                target=target if emulator is None else emulator, cost_target=None if emulator is None else target,
                qubit_budget=int(self.qubit_budget), finetune_epochs=int(self.finetune_epochs),
                finetune_samples=None if self.finetune_samples is None else int(self.finetune_samples),
                batch_size=int(self.batch_size), learning_rate=float(self.learning_rate), seed=seed,
                cut_time_limit=float(self.cut_time_limit), runtime_objective=self.runtime_objective,
                cutting_objective=self.cutting_objective)
            state = self._search(space, context, executor, seed, run_dir, fingerprint, timings)
        finally:
            if owned_executor and executor is not None:
                executor.shutdown()
        candidates = [state.evaluated[k] for k in state.order]
        if not candidates:
            raise QPUBudgetError(f"the search stopped before its first generation ({state.stopped}); nothing was "
                                 "measured")
        if all(c.failed for c in candidates):
            raise RuntimeError("every candidate failed on the target; see result_.candidates for the errors")
        started = time.perf_counter()
        candidates = self._confirm_leader(candidates, context)
        timings["reevaluation"] = time.perf_counter() - started
        config = self._config(space, target, seed)
        config.update(fidelity=plan.fidelity, qpu_plan=None if plan.qpu_plan is None else plan.qpu_plan.to_dict(),
                      stopped=state.stopped)
        best = None
        if emulator is not None:
            started = time.perf_counter()
            candidates = self._confirm_on_device(candidates, context, target, config)
            timings["device_confirmation"] = time.perf_counter() - started
            best = choose_confirmed(candidates)
        result = SearchResult(candidates, context.objectives, config=config, history=state.history)
        if best is None:
            best = select(result.pareto_front, self.selection, self.max_subcircuits, self.max_runtime)
        result.chosen = result.candidates.index(best)
        started = time.perf_counter()
        self.model_ = self._final_model(supercircuit, best, Xs, y_encoded, seed)
        timings["final_training"] = time.perf_counter() - started
        result.config["timings"] = timings
        self.supercircuit_ = supercircuit
        self.target_ = target
        self.result_ = result
        self.pareto_front_ = result.pareto_front
        self.best_candidate_ = best
        self.best_architecture_ = best.architecture
        self.timings_ = timings
        self.scoring_qpu_seconds_ = 0.0
        if run_dir is not None:
            self.save(run_dir)
        return self

    def close(self) -> None:
        """End what the fitted estimator holds open: the Runtime ``Batch`` (or ``Session``) of
        ``target_``, which ``on_target=True`` predictions reuse (a later one opens a new one). Safe to
        call twice and on an unfitted estimator; ``with QNASEstimator(...) as est:`` calls it on exit."""
        target = getattr(self, "target_", None)
        if target is not None:
            target.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def resolve_target(self, seed: int | None = None, backend=None) -> ExecutionTarget:
        """The :class:`~qiskit_qnas.targets.ExecutionTarget` ``fit`` evaluates on (and ``on_target``
        predictions run on): ``backend`` itself when it is a configured target, else
        :func:`~qiskit_qnas.targets.resolve_target` of this estimator's settings. ``seed``: the run's
        seed when already drawn (``fit`` passes it, so a ``RandomState`` is drawn from once); the
        simulator is unseeded for ``random_state=None``. ``backend``: another backend (or target) to
        resolve with these settings instead of the estimator's own (``on_target=<backend>``)."""
        if backend is not None:
            if isinstance(backend, ExecutionTarget):
                return backend
            return resolve_target(backend, mode=self.target_mode, shots=self.shots,
                                  seed=None if self.random_state is None else seed,
                                  optimization_level=self.optimization_level,
                                  max_concurrent_jobs=self.max_concurrent_jobs, runtime_options=self.runtime_options)
        if isinstance(self.backend, ExecutionTarget):  # a target configured by the user (retries, primitive...)
            for name, value, default in (("max_concurrent_jobs", self.max_concurrent_jobs, 1),
                                         ("runtime_options", self.runtime_options, None)):
                if value != default:
                    raise InvalidArgument(name, value, f"{default} (set it on the target: RuntimeTarget(..., "
                                          f"{name}=...))", context=" with a configured target")
            return self.backend
        if self.random_state is None:
            seed = None
        elif seed is None:
            seed = self._seed()
        return resolve_target(self.backend, mode=self.target_mode, shots=self.shots, seed=seed,
                              optimization_level=self.optimization_level, reference_backend=self.reference_backend,
                              max_concurrent_jobs=self.max_concurrent_jobs, runtime_options=self.runtime_options)

    def _output_norm(self) -> bool:
        """``output_norm`` resolved: None means on with noise-aware training."""
        return bool(self.noise_aware) if self.output_norm is None else bool(self.output_norm)

    def _fingerprint(self, space, target, X, y, seed) -> str:
        data = hashlib.sha256(np.ascontiguousarray(X).tobytes() + np.ascontiguousarray(y).tobytes()).hexdigest()
        params = {**self.get_params(), "output_norm": self._output_norm()}
        # settings added after the first release count only when changed, so earlier run directories resume
        settings = {k: v for k, v in params.items()
                    if k not in _UNFINGERPRINTED and not (k in LATER_SETTINGS and LATER_SETTINGS[k] == v)}
        blob = json.dumps({"space": space.to_dict(), "target": target.name, "seed": seed, "data": data,
                           "settings": settings, "version": __version__}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _supercircuit_epochs(self, n_train: int) -> int:
        if self.supercircuit_epochs is not None:
            return int(self.supercircuit_epochs)
        batches = math.ceil(n_train / self.batch_size)
        return int(min(100, max(5, math.ceil(SUPERCIRCUIT_STEPS / batches))))

    def _train_supercircuit(self, space, X_train, y_train, seed, run_dir, fingerprint, timings,
                            noise: TrainingNoise | None = None) -> SuperCircuit:
        supercircuit = SuperCircuit(space, X_train.shape[1], len(self.classes_),
                                    hidden=check_hidden(self.hidden, allow_zero=False), dropout=float(self.dropout),
                                    seed=seed, head=self.head, output_norm=self._output_norm())
        supercircuit.noise = noise  # consulted in training mode only: the fine-tuning copies inherit it
        saved = None if run_dir is None else run_dir / SUPERCIRCUIT
        if saved is not None and saved.exists():
            payload = read_tensors(saved)
            if payload.get("fingerprint") == fingerprint:
                supercircuit.load_state_dict(payload["state"])
                supercircuit.eval()
                logger.info("loaded the trained SuperCircuit from %s", saved)
                timings["supercircuit_training"] = 0.0
                return supercircuit
        epochs = self._supercircuit_epochs(len(X_train))
        bar = self._bar(total=epochs, desc="SuperCircuit", unit="epoch")
        started = time.perf_counter()

        def progress(epoch, loss):
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        try:
            train_supercircuit(supercircuit, X_train, y_train, epochs=epochs, batch_size=int(self.batch_size),
                               lr=float(self.learning_rate), n_random=int(self.n_random), seed=seed, progress=progress)
        finally:
            bar.close()
        timings["supercircuit_training"] = time.perf_counter() - started
        if saved is not None:
            import io

            buffer = io.BytesIO()
            torch.save({"fingerprint": fingerprint, "state": supercircuit.state_dict()}, buffer)
            atomic_write(saved, buffer.getvalue())
        return supercircuit

    def _search(self, space, context, executor, seed, run_dir, fingerprint, timings):
        bar = self._bar(total=int(self.n_generations), desc="NSGA-II", unit="gen")
        started = time.perf_counter()
        evaluation_seconds = [0.0, 0.0]  # candidate evaluation, of which cut finding

        def evaluate(archs, generation):
            t = time.perf_counter()
            found = evaluate_generation(executor, archs, context, generation)
            evaluation_seconds[0] += time.perf_counter() - t
            evaluation_seconds[1] += sum(c.cutting.seconds for c in found if c.cutting is not None)
            return found

        def progress(generation, entry):
            bar.n = generation
            best = entry["best_val_error"]
            bar.set_postfix(best_error="-" if best is None else f"{best:.3f}", evaluated=entry["n_evaluated"])
            bar.refresh()

        def stop_before(archs, generation, state) -> str | None:
            if self.max_qpu_seconds is None or not context.target.on_device:
                return None
            spent = sum(c.qpu_seconds for c in state.evaluated.values())
            planned = sum(context.target.runtime_estimate(a, n_circuits=len(context.X_val)).seconds for a in archs)
            try:
                check_budget(spent, planned, self.max_qpu_seconds, f"generation {generation} ({len(archs)} new "
                             f"candidates on {context.target.name})")
            except QPUBudgetError as exc:
                return str(exc)
            return None

        try:
            state = run_nsga2(space, evaluate, population_size=int(self.population_size),
                              n_generations=int(self.n_generations), seed=seed, checkpoint_dir=run_dir,
                              fingerprint=fingerprint, callback=self.callback, progress=progress,
                              objectives=context.objectives, stop_before=stop_before)
        finally:
            bar.close()
        if state.stopped and self.verbose:
            print(f"the search stopped at its QPU budget before generation {state.generation + 1}: {state.stopped}",
                  flush=True)
        timings["search"] = time.perf_counter() - started
        timings["candidate_evaluation"] = evaluation_seconds[0]
        timings["cut_finding"] = evaluation_seconds[1]
        return state

    def _final_epochs(self) -> int:
        return 2 * int(self.finetune_epochs) if self.final_epochs is None else int(self.final_epochs)

    def _reevaluations(self) -> int:
        """How many re-measurements ``_confirm_leader`` may make (0 when they are off)."""
        if self.selection != "min_error" or not self._final_epochs():
            return 0
        return int(self.reevaluations)

    def _confirm_leader(self, candidates: list[Candidate], context: EvaluationContext) -> list[Candidate]:
        epochs = self._final_epochs()
        if not self._reevaluations():
            return candidates
        spent = [sum(c.qpu_seconds for c in candidates)]

        def reevaluate(candidate: Candidate) -> Candidate:
            if context.target.on_device:  # refuse a re-measurement the budget cannot pay for, before its job
                planned = context.target.runtime_estimate(candidate.architecture, len(context.X_val)).seconds
                check_budget(spent[0], planned, self.max_qpu_seconds, f"re-measuring {candidate.architecture.key}")
            again = reevaluate_candidate(candidate, context, epochs)
            spent[0] += again.qpu_seconds - candidate.qpu_seconds
            return again

        return confirm_leader(candidates, reevaluate, int(self.reevaluations), len(context.X_val),
                              self.max_subcircuits, self.max_runtime)

    def _confirm_on_device(self, candidates: list[Candidate], context: EvaluationContext, device,
                           config: dict[str, Any]) -> list[Candidate]:
        """Multi-fidelity: the front members the emulation cannot separate (``min_error``: the leader
        and its near-ties; another selection: the member it picks), measured on ``device``. Only front
        members: a dominated near-tie is worse on another objective and not measurably better on
        error, and the chosen model stays on the front."""
        on_front = SearchResult(candidates, context.objectives).pareto_mask
        if self.selection == "min_error":
            indices = [i for i in contenders(candidates, len(context.X_val), self.max_subcircuits, self.max_runtime)
                       if on_front[i]][:int(self.device_confirmations)]
        elif self.device_confirmations:
            front = [c for c, on in zip(candidates, on_front) if on]
            indices = [candidates.index(select(front, self.selection, self.max_subcircuits, self.max_runtime))]
        else:
            indices = []
        config["device_confirmations"] = [candidates[i].architecture.key for i in indices]
        return confirm_on_device(candidates, indices, context, device, int(self.device_samples), self.max_qpu_seconds)

    def _final_model(self, supercircuit: SuperCircuit, best: Candidate, X, y, seed) -> HQNN:
        arch = best.architecture
        # the chosen model starts from its inherited weights: 2 x the fine-tuning epochs (4 x took
        # 383 s of a 19-minute MNIST 6k search, for the 8-qubit amplitude model it chose)
        return finetune(supercircuit, arch, X, y, self._final_epochs(), batch_size=int(self.batch_size),
                        lr=arch.learning_rate or float(self.learning_rate), seed=candidate_seed(seed, arch))

    def _config(self, space, target, seed) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params().items()
                  if isinstance(v, (int, float, str, bool, type(None))) and k != "search_space"}
        return {"search_space": space.to_dict(), "target": target.name, "seed": seed,
                "fingerprint": self._fingerprint_value, "n_features": self.n_features_in_,
                "runtime_options": dict(getattr(target, "runtime_options", {})),
                "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_], "params": params,
                "version": __version__}

    def _bar(self, **kwargs):
        if not self.verbose:
            from tqdm import tqdm
        else:
            from tqdm.auto import tqdm
        return tqdm(disable=not self.verbose, leave=False, dynamic_ncols=True, **kwargs)

    # --- prediction -------------------------------------------------------------------------------
    def _scale(self, X: np.ndarray) -> np.ndarray:
        return _scaled(X, self._mean, self._std)

    def _scoring_target(self, on_target) -> tuple[ExecutionTarget | None, bool]:
        """The target ``on_target`` names (None: the exact engine) and whether this call opened it."""
        if _on_exact(on_target):
            return None, False
        if isinstance(on_target, (bool, np.bool_)):
            return self.target_, False
        if isinstance(on_target, ExecutionTarget):
            return on_target, False
        if not hasattr(on_target, "target"):
            raise InvalidArgument("on_target", on_target, "False, True (the fit's target), a backend (fake or IBM "
                                  "backend, AerSimulator) or an ExecutionTarget")
        return self.resolve_target(self.result_.config.get("seed"), backend=on_target), True

    def _qpu_spent(self) -> float:
        return float(self.result_.qpu_seconds) + float(getattr(self, "scoring_qpu_seconds_", 0.0))

    def _target_logits(self, target: ExecutionTarget, X: np.ndarray) -> np.ndarray:
        """:func:`~qiskit_qnas.objectives.target_logits` on ``target``, its device usage estimated and
        checked against what is left of ``max_qpu_seconds`` before any job, and accounted."""
        arch = self.best_architecture_
        n, batch = arch.n_qubits, min(len(X), TARGET_CHUNK_SAMPLES)
        check_memory(target.memory_bytes(n, batch), f"predicting with {n} qubits on target {target.name}, {batch} "
                     f"samples at once", self.max_memory)
        if not target.on_device:
            return target_logits(self.model_, target, X)
        n_jobs = math.ceil(len(X) / TARGET_CHUNK_SAMPLES)
        estimate = target.runtime_estimate(arch, len(X), n_jobs=n_jobs)
        check_budget(self._qpu_spent(), estimate.seconds, self.max_qpu_seconds,
                     f"predicting {len(X)} samples on {target.name}")
        logits = target_logits(self.model_, target, X)
        self.scoring_qpu_seconds_ = getattr(self, "scoring_qpu_seconds_", 0.0) + billed_seconds(target,
                                                                                                estimate.seconds)
        return logits

    def _logits(self, X, cut: bool, on_target=False, **cut_options) -> np.ndarray:
        check_is_fitted(self, "model_")
        if cut and not _on_exact(on_target):
            raise ValueError("invalid cut=True with on_target=True; allowed: one of them (cut runs the pieces "
                             "on a sampler, on_target runs the whole circuit on the search's target)")
        if cut_options and not cut:
            raise ValueError(f"invalid options {sorted(cut_options)} without cut=True; allowed: cut options "
                             f"(shots, sampler, backend, ...) only with cut=True")
        X = self._scale(validate_data(self, X, dtype=np.float64, reset=False))
        target, opened = self._scoring_target(on_target)
        if target is not None:
            try:
                target.check_width(self.best_architecture_)
                return self._target_logits(target, X)
            finally:
                if opened:
                    target.close()
        if not cut:
            n, batch = self.best_architecture_.n_qubits, min(len(X), PREDICT_BATCH)
            check_memory(exact_engine_bytes(n, batch), f"predicting with {n} qubits, {batch} samples at once",
                         self.max_memory)
            return predict_logits(self.model_, X)
        arch = self.best_architecture_
        with torch.no_grad():
            inputs = self.model_.circuit_inputs(torch.as_tensor(X)).to(torch.float64).numpy()
        weights = self.model_.quantum.weight.detach().to(torch.float64).numpy()
        values = cut_expectation_values(arch, inputs, weights, int(self.qubit_budget), **cut_options)
        with torch.no_grad():
            return self.model_.scores(torch.as_tensor(np.asarray(values), dtype=torch.float32)).numpy()

    def predict_proba(self, X: ArrayLike, cut: bool = False, on_target: Any = False, **cut_options: Any) -> np.ndarray:
        """Class probabilities (softmax of the chosen model's logits).

        By default the quantum layer runs on the exact engine. ``on_target=True`` evaluates it on
        the search's execution target (``target_``: Aer with a noise model, Runtime local testing
        mode or an IBM backend), with the target's shots, seed and retries, one broadcast PUB (one
        job) per chunk of :data:`~qiskit_qnas.objectives.TARGET_CHUNK_SAMPLES` samples, exactly as
        the search measured the validation error; the pre-layer and head stay in torch.
        ``on_target=<backend>`` (a fake or IBM backend, an ``AerSimulator``) does the same on that
        backend, resolved as ``backend=`` is in ``fit`` (with this estimator's ``target_mode``,
        ``shots``, ``runtime_options`` and seed; its Runtime ``Batch`` closed afterwards), and
        ``on_target=<ExecutionTarget>`` on that target as configured. On a device, the usage is
        estimated before any job and refused (:class:`~qiskit_qnas.qpu_budget.QPUBudgetError`)
        beyond what is left of ``max_qpu_seconds``, then accounted (``scoring_qpu_seconds_``). ``cut=True``
        evaluates it cut into subcircuits of at most ``qubit_budget`` qubits
        (:func:`qiskit_qnas.cut_execution.cut_expectation_values`, options passed through)."""
        logits = torch.as_tensor(self._logits(X, cut, on_target, **cut_options))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X: ArrayLike, cut: bool = False, on_target: Any = False, **cut_options: Any) -> np.ndarray:
        """Class labels of ``X`` (see :meth:`predict_proba` for ``cut`` and ``on_target``)."""
        logits = self._logits(X, cut, on_target, **cut_options)
        return self.classes_[logits.argmax(1)]

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
              on_target: Any = False) -> float:
        """Accuracy of :meth:`predict` on ``(X, y)``; ``on_target=True``: with the quantum layer on the
        search's execution target (the accuracy the model has where it will run), or on the backend or
        target given (see :meth:`predict_proba`)."""
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X, on_target=on_target), sample_weight=sample_weight))

    # --- persistence --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the result (``result.json``, ``candidates.csv``), ``pareto.png``, the chosen model's
        weights (``model.pt``) and its circuit with trained weights (``best_circuit.qpy``)."""
        check_is_fitted(self, "model_")
        path = Path(path)
        self.result_.save(path)
        self.result_.plot_pareto(path / "pareto.png")
        import matplotlib.pyplot as plt

        plt.close("all")
        import io

        buffer = io.BytesIO()
        torch.save({"fingerprint": self._fingerprint_value,
                    "architecture": self.best_architecture_.to_dict(), "state": self.model_.state_dict(),
                    "mean": self._mean.tolist(), "std": self._std.tolist(),
                    "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_]}, buffer)
        atomic_write(path / MODEL, buffer.getvalue())
        from qiskit import qpy

        buffer = io.BytesIO()
        qpy.dump(self.best_circuit(), buffer)
        atomic_write(path / "best_circuit.qpy", buffer.getvalue())
        return path

    def best_circuit(self, isa: bool = False) -> QuantumCircuit:
        """The chosen model's circuit with its trained weights bound (inputs ``x`` stay parameters);
        ``isa=True``: transpiled for the search target's backend."""
        check_is_fitted(self, "model_")
        arch = self.best_architecture_
        weights = self.model_.quantum.weight.detach().to(torch.float64).numpy()
        qc = arch.circuit().assign_parameters(dict(zip(arch.weight_params, weights)))
        if isa:
            qc = to_isa(qc, self.target_.backend, int(self.optimization_level))
        return qc
