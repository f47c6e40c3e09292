"""A run's settings: from the command line to ``config.json``, and from ``config.json`` to the
checked estimator, data and backend of the run (``search`` and ``resume`` share this).

:func:`prepare` checks everything a run needs before anything is written: a setting the library
refuses ends the command with one line under the flag that sets it.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

from ..backends import target_backend
from .arguments import DATASETS, UsageError, _library_error


def _flatten(values: list[list[str]] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(dict.fromkeys(v for group in values for v in group))


def _dataset_settings(args) -> dict[str, Any]:
    if args.csv is not None:
        if not args.target_column:
            raise UsageError("--target-column: required with --csv; allowed: the name of a column of the CSV header")
        path = args.csv.expanduser().resolve()
        if not path.is_file():
            raise UsageError(f"--csv: invalid value {str(args.csv)!r}; allowed: an existing CSV file")
        try:  # the header, read as load_csv reads the file
            with open(path, newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), [])
        except UnicodeDecodeError as exc:
            raise UsageError(f"--csv: invalid value {str(args.csv)!r}: not UTF-8 text (byte "
                             f"{exc.object[exc.start]:#04x} at offset {exc.start}); allowed: a UTF-8 CSV file "
                             "(convert it, e.g. iconv -f latin1 -t utf-8)") from None
        if args.target_column not in header:
            raise UsageError(f"--target-column: invalid value {args.target_column!r}; allowed: "
                             f"{', '.join(header) or 'a column of the CSV header'}")
        settings = {"csv": str(path), "target_column": args.target_column}
    elif args.dataset is None:
        raise UsageError(f"--dataset: required (or --csv PATH --target-column NAME); allowed: {', '.join(DATASETS)}")
    else:
        if args.target_column:
            raise UsageError("--target-column: only with --csv; allowed: omit it with --dataset")
        settings = {"name": args.dataset}
    data_dir = None if args.data_dir is None else str(args.data_dir.expanduser().resolve())
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir: invalid value {str(args.data_dir)!r}; allowed: an existing directory")
    settings.update(data_dir=data_dir, n_components=args.pca, image_size=args.image_size, subset=args.subset,
                    random_state=args.seed)
    return settings


def load_data(settings: dict[str, Any]):
    """The train/test split described by the ``dataset`` section of ``config.json``."""
    from .. import datasets

    options = {k: settings.get(k) for k in ("data_dir", "n_components", "image_size", "subset")}
    options = {k: v for k, v in options.items() if v is not None}
    if "csv" in settings:
        return _call_accepting(datasets.load_csv, settings["csv"], settings["target_column"],
                               random_state=settings.get("random_state", 0), **options)
    return datasets.load_dataset(settings["name"], random_state=settings.get("random_state", 0), **options)


def _call_accepting(function, *args, **kwargs):
    """Call ``function`` with the keyword arguments its signature accepts (``None`` ones dropped)."""
    import inspect

    parameters = inspect.signature(function).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        unknown = [k for k in kwargs if k not in parameters]
        for key in unknown:
            if key != "random_state":
                raise UsageError(f"--{key.replace('_', '-')}: not supported with --csv; allowed: omit it")
            kwargs.pop(key)
    return function(*args, **kwargs)


def _settings_from_args(args) -> dict[str, Any]:
    from ..space import SearchSpace

    space_args = {"qubits": args.qubits, "layers": args.layers, "embeddings": _flatten(args.embeddings),
                  "rotations": _flatten(args.rotations), "entanglers": _flatten(args.entanglers),
                  "ranges": args.ranges, "learning_rates": args.learning_rates}
    try:
        space = SearchSpace(**{k: v for k, v in space_args.items() if v is not None})
    except ValueError as exc:
        raise UsageError(_library_error(exc)) from None
    estimator = {
        "qubit_budget": args.qubit_budget, "shots": args.shots, "population_size": args.population,
        "n_generations": args.generations, "supercircuit_epochs": args.supercircuit_epochs,
        "finetune_epochs": args.finetune_epochs,
        "finetune_samples": args.finetune_samples, "final_epochs": args.final_epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "cut_time_limit": args.cut_time_limit,
        "cutting_objective": args.cutting_objective, "runtime_objective": args.runtime_objective,
        "selection": args.selection, "reevaluations": args.reevaluations, "random_state": args.seed,
        "max_concurrent_jobs": args.max_concurrent_jobs,
        "noise_aware": args.noise_aware, "max_qpu_seconds": args.max_qpu_seconds, "fidelity": args.fidelity,
    }
    # written only when set, so that config.json reads as before for the defaults
    for name, default in (("hidden", 64), ("head", "linear")):
        value = None if getattr(args, name) == "none" else getattr(args, name)
        if value != default:
            estimator[name] = list(value) if isinstance(value, tuple) else value
    if args.output_norm is not None:
        estimator["output_norm"] = args.output_norm == "on"
    runtime_options = _runtime_options(args)
    if runtime_options:
        estimator["runtime_options"] = runtime_options
    return {"dataset": _dataset_settings(args), "search_space": space.to_dict(), "target": args.target,
            "estimator": estimator}


def _runtime_options(args) -> dict[str, Any]:
    """``QNASEstimator(runtime_options=...)`` of the mitigation flags (only the flags given)."""
    options: dict[str, Any] = {}
    if args.resilience_level is not None:
        options["resilience_level"] = int(args.resilience_level)
    twirling: dict[str, Any] = {}
    if args.twirling is not None:
        twirling = {"enable_gates": args.twirling in ("gates", "all"),
                    "enable_measure": args.twirling in ("measure", "all")}
    if args.twirling_randomizations is not None:
        twirling["num_randomizations"] = args.twirling_randomizations
    if twirling:
        options["twirling"] = twirling
    if args.dynamical_decoupling is not None:
        options["dynamical_decoupling"] = {"enable": True, "sequence_type": args.dynamical_decoupling}
    if options and not args.target.startswith(("runtime:", "ibm:")):
        raise UsageError(f"--resilience-level/--twirling/--twirling-randomizations/--dynamical-decoupling: not "
                         f"supported with --target {args.target}; allowed: a Runtime target (runtime:<fake backend>, "
                         f"ibm:<name>)")
    return options


def make_estimator(config: dict[str, Any], run_dir: Path | None, verbose: int = 1, executor=None):
    """The :class:`QNASEstimator` of a run (backend resolved from the ``target`` setting)."""
    from ..estimator import QNASEstimator
    from ..space import SearchSpace

    backend, mode = target_backend(config["target"])
    return QNASEstimator(search_space=SearchSpace.from_dict(config["search_space"]), backend=backend,
                         target_mode=mode, checkpoint_dir=None if run_dir is None else str(run_dir),
                         verbose=verbose, executor=executor, **config["estimator"])


def prepare(config: dict[str, Any], max_memory: str | None = None):
    """Everything a run needs, checked: ``(estimator, dataset, plan)``; raises :class:`UsageError`.

    The plan is the fit's (its target closed): ``plan.fingerprint`` identifies the run's settings and data
    (what every file of its directory records), ``plan.qpu_plan`` is what it would submit to a device."""
    from ..noise import check_noise_aware_target
    from ..qpu_budget import QPUBudgetError

    try:
        estimator = make_estimator(config, None, verbose=0)
        estimator.set_params(max_memory=max_memory)
    except ValueError as exc:
        raise UsageError(_library_error(exc, "--target")) from None
    except Exception as exc:  # noqa: BLE001 - e.g. no saved IBM Quantum account, unknown backend
        raise UsageError(f"--target: cannot use {config['target']!r}: {' '.join(str(exc).split())}") from None
    try:
        estimator._check_params()
    except ValueError as exc:
        raise UsageError(_library_error(exc)) from None
    space = estimator._space()
    if config["target"] == "statevector" and estimator.shots is not None:
        raise UsageError(f"--shots: invalid value {estimator.shots} with --target statevector (exact simulation); "
                         "allowed: omit it, or a sampling target (aer, aer:<fake>, runtime:<fake>, ibm:<name>)")
    try:
        target = estimator.resolve_target()
    except ValueError as exc:
        message = _library_error(exc, "--target")
        raise UsageError(message if message.startswith("--") else f"--target: {message}") from None
    if estimator.noise_aware:
        try:
            check_noise_aware_target(target)
        except ValueError as exc:
            with contextlib.suppress(Exception):
                target.close()
            raise UsageError(f"--noise-aware: {' '.join(str(exc).split())} (--target {config['target']})") from None
    try:
        target.check_width(space.max_qubits, what=f"the widest candidate ({space.max_qubits} qubits)")
    except ValueError as exc:
        raise UsageError(f"--qubits: {' '.join(str(exc).split())} (--target {config['target']})") from None
    finally:
        with contextlib.suppress(Exception):
            target.close()
    flag = "--csv" if "csv" in config["dataset"] else "--dataset"
    try:
        data = load_data(config["dataset"])
    except UsageError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        if isinstance(exc, OSError) and config["dataset"].get("data_dir") and "csv" not in config["dataset"]:
            flag = "--data-dir"
        message = _library_error(exc, flag)
        raise UsageError(message if message.startswith("--") else f"{flag}: {message}") from None
    try:  # the memory the widest candidate needs (training, validation, scoring the test split), the QPU plan
        plan = estimator._plan(data.X_train, data.y_train, n_predict=len(data.X_test))
    except QPUBudgetError as exc:
        raise UsageError(f"--max-qpu-seconds: {' '.join(str(exc).split())}") from None
    except ValueError as exc:
        raise UsageError(_library_error(exc, flag)) from None
    with contextlib.suppress(Exception):
        plan.target.close()
    return estimator, data, plan


def export_backend(config: dict[str, Any]):
    """The backend whose ISA circuits a run's exports are: its target's backend (the reference
    backend of ``resolve_target(None)`` for exact runs)."""
    from ..targets import resolve_target

    backend, mode = target_backend(config["target"])
    return resolve_target(backend, mode=mode).backend
