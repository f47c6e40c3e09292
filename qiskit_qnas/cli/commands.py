"""The ``qnas`` commands: ``search``, ``resume``, ``report`` and ``export`` (:data:`COMMANDS`).

``search`` and ``resume`` check that the directory is new, empty or a run of exactly these settings
before writing anything (:func:`qiskit_qnas.rundir.check_run_directory`); a damaged or foreign file
ends ``resume``, ``report`` and ``export`` with one line naming it and the fix (exit code 2), and
nothing is modified. Each command returns its exit code.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shlex
import stat
import sys
import time
from pathlib import Path
from typing import Any

from ..rundir import (
    CONFIG,
    MODEL,
    PARETO,
    RESULT,
    SUMMARY,
    RunDirectoryError,
    completed_generations,
    read_tensors,
    run_directory_lock,
    write_json,
)
from .arguments import PROG, UsageError
from .run_directory import (
    CONFIG_FORMAT,
    _check_directory,
    _load_config,
    _load_result,
    _read_summary,
    _run_dir,
)
from .settings import _settings_from_args, export_backend, load_data, prepare
from .signals import report_interruption

logger = logging.getLogger("qiskit_qnas.cli")  # the command line's one logger, whichever module logs


@contextlib.contextmanager
def _executor(address: str | None = None, workers: int | None = None):
    """The Dask executor of ``--dask-scheduler`` / ``--workers`` (:func:`qiskit_qnas.parallel.dask_executor`,
    which imports Dask), or ``None`` for serial evaluation."""
    if address is None and workers is None:
        yield None
        return
    from ..parallel import dask_executor

    with dask_executor(address=address, workers=workers) as executor:
        yield executor


def _check_dask(args) -> None:
    if getattr(args, "dask_scheduler", None) is None and getattr(args, "workers", None) is None:
        return
    import importlib.util

    if importlib.util.find_spec("dask") is None or importlib.util.find_spec("distributed") is None:
        flag = "--dask-scheduler" if args.dask_scheduler is not None else "--workers"
        raise UsageError(f"{flag}: needs Dask; allowed only with dask[distributed] installed "
                         "(pip install 'qiskit-qnas[dask]')")


def _lock(held: contextlib.ExitStack, run_dir: Path, flag: str) -> None:
    """Hold ``run_dir``'s lock until ``held`` closes (:func:`qiskit_qnas.rundir.run_directory_lock`);
    a directory another run holds is a usage error naming the holder."""
    try:
        held.enter_context(run_directory_lock(run_dir))
    except RunDirectoryError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def os_error_line(exc: OSError) -> str:
    """An ``OSError`` as the one line a command ends with: what failed, on which path."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or ' '.join(str(exc).split())}{where}"


def _fit_and_score(estimator, data, run_dir: Path, args, started: float, fingerprint: str) -> int:
    """Fit and score into ``run_dir``; an interruption or an OS error (a full disk) ends it in one line with
    the command that continues the run (every file is written atomically: nothing is half-written)."""
    resume = f"continue with: qnas resume {shlex.quote(str(run_dir))}"
    try:
        return _fit_and_score_once(estimator, data, run_dir, args, started, fingerprint)
    except KeyboardInterrupt as exc:
        return report_interruption(exc, resume)
    except OSError as exc:
        print(f"{PROG}: error: {os_error_line(exc)}; {resume} once that is fixed", file=sys.stderr)
        return 2


def _fit_and_score_once(estimator, data, run_dir: Path, args, started: float, fingerprint: str) -> int:
    with _executor(getattr(args, "dask_scheduler", None), getattr(args, "workers", None)) as executor:
        estimator.set_params(checkpoint_dir=str(run_dir), verbose=0 if args.quiet else 1, executor=executor)
        estimator.fit(data.X_train, data.y_train)
    test_accuracy = float(estimator.score(data.X_test, data.y_test))
    result = estimator.result_
    best = estimator.best_candidate_
    front = result.pareto_front
    summary = {
        "test_accuracy": test_accuracy,
        "n_train": int(len(data.X_train)), "n_test": int(len(data.X_test)), "n_features": int(data.X_train.shape[1]),
        "dataset": getattr(data, "name", None),
        "chosen": best.architecture.key, "chosen_index": front.index(best),
        "chosen_objectives": dict(zip(result.objective_names, best.objectives)),
        "val_error": best.val_error, "n_candidates": len(result.candidates), "front_size": len(front),
        "qpu_seconds": result.qpu_seconds, "stopped": result.config.get("stopped"),
        "timings": {**{k: float(v) for k, v in estimator.timings_.items()}, "total": time.perf_counter() - started},
        "command": [PROG, *args.argv],
        "command_line": shlex.join([PROG, *args.argv]),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
    }
    write_json(run_dir / SUMMARY, summary)
    if not args.quiet:
        _print_report(run_dir, result, summary)
    return 0


def _shown(value) -> str:
    """A value read from a run file, as text a terminal shows as it is: control characters (escape
    sequences that would move the cursor or recolour the terminal) written as Python escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


def _seconds(value) -> str:
    """``value`` read from a run file, as seconds, or ``?`` when it is not a number."""
    return f"{value:,.1f} s" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _print_report(run_dir: Path, result, summary: dict | None, front_only: bool = True) -> None:
    print(result.format_table(front_only=front_only))
    best = result.best
    if best is not None:
        device = "" if best.device_error is None else f", on the device {best.device_error:.4f}"
        print(f"chosen: {best.architecture.key}  (validation error {best.val_error:.4f}{device})")
    plan = result.qpu_plan
    if isinstance(plan, dict):  # data from result.json: a value of another type is shown as "?"
        budget = plan.get("max_qpu_seconds")
        print(f"QPU usage: {result.qpu_seconds:,.1f} s accounted on {_shown(plan.get('device'))} "
              f"({_shown(plan.get('fidelity'))}-fidelity; planned at most {_seconds(plan.get('seconds'))}"
              f"{'' if budget is None else f', budget {_seconds(budget)}'})")
    if result.config.get("stopped"):
        print(f"the search stopped early: {_shown(result.config['stopped'])}")
    if summary is not None:
        print(f"test accuracy: {summary['test_accuracy']:.4f}  ({_shown(summary.get('n_test', '?'))} samples)")
        if "test_accuracy_on_target" in summary:
            print(f"test accuracy on {_shown(summary['on_target'])}: {summary['test_accuracy_on_target']:.4f}")
    else:
        print("test accuracy: not scored yet (the run is not finished: `qnas resume DIR` completes it)")
    print(f"run directory: {run_dir}")


def _print_plan(plan) -> None:
    """What the search would submit to a device (``--dry-run``): its QPU plan, or that it submits nothing."""
    if plan.qpu_plan is None:
        print(f"{plan.target.name} is not a device: the search submits nothing to a QPU (0 QPU s)")
    else:
        print(plan.qpu_plan.summary())


def cmd_search(args) -> int:
    _check_dask(args)
    config = _settings_from_args(args)
    if args.dry_run:
        _print_plan(prepare(config, args.max_memory)[2])
        return 0
    run_dir = args.out
    if run_dir is None:
        name = config["dataset"].get("name") or Path(config["dataset"]["csv"]).stem
        run_dir = Path("runs") / f"{name}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CONFIG).exists():
        raise UsageError(f"--out: invalid value {str(run_dir)!r}: it already holds a run; allowed: a new or empty "
                         f"directory (continue that run with `qnas resume {run_dir}`)")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out: invalid value {str(run_dir)!r}; allowed: a directory path")
    started = time.perf_counter()
    estimator, data, plan = prepare(config, args.max_memory)
    fingerprint = plan.fingerprint
    # a directory another run wrote (the Python API writes no config.json) is refused untouched
    _check_directory(run_dir, fingerprint, estimator.random_state, "--out")
    from .._version import __version__

    config = {"format": CONFIG_FORMAT, "version": __version__, **config,
              "command": [PROG, *args.argv], "fingerprint": fingerprint,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with contextlib.ExitStack() as held:
        _lock(held, run_dir, "--out")
        if (run_dir / CONFIG).exists():  # a run that started meanwhile
            raise UsageError(f"--out: invalid value {str(run_dir)!r}: it already holds a run; allowed: a new or "
                             f"empty directory")
        _check_directory(run_dir, fingerprint, estimator.random_state, "--out")
        write_json(run_dir / CONFIG, config)
        logger.info("run directory %s", run_dir)
        return _fit_and_score(estimator, data, run_dir, args, started, fingerprint)


def _confirm_paid_backend(run_dir: Path, config: dict[str, Any], assume_yes: bool) -> None:
    """A run on an IBM backend spends its account's quota: show the backend and what the rest of
    the search may submit to it, in jobs, shots and QPU seconds as IBM bills them, and ask before the
    account is reached (``--yes`` answers for a script; no terminal: refused). The seconds count
    every shot's repetition delay at IBM's 250 us and the per-job overhead (the circuits' own
    durations add a few percent; the plan printed when the search starts counts them)."""
    if not config["target"].startswith("ibm:"):
        return
    from ..estimator import QNASEstimator
    from ..runtime_proxy import DEFAULT_JOB_OVERHEAD, DEFAULT_REP_DELAY, Schedule, estimate_runtime
    from ..targets import DEFAULT_RUNTIME_SHOTS

    try:
        settings = QNASEstimator(**config["estimator"])
        settings._check_params()
        data = load_data(config["dataset"])
        remaining = max(0, int(settings.n_generations) - completed_generations(run_dir))
    except (TypeError, ValueError, OSError, KeyError, RunDirectoryError) as exc:
        raise UsageError(f"DIR: {run_dir / CONFIG}: cannot estimate the run's QPU usage "
                         f"({' '.join(str(exc).split())}); fix: restore the file, or start a new run") from None
    n_val = settings._n_val(len(data.X_train), len(set(data.y_train.tolist())))
    shots = int(settings.shots or DEFAULT_RUNTIME_SHOTS)
    if settings.fidelity == "target":
        jobs, circuits, what = remaining * int(settings.population_size), n_val, (
            f"{settings.population_size} candidates x {n_val} circuits x {shots} shots per generation")
    else:  # multi-fidelity (a device's default): the device confirms the leader and its near-ties
        jobs, circuits = int(settings.device_confirmations), min(n_val, int(settings.device_samples))
        what = f"multi-fidelity: {jobs} confirmations x {circuits} circuits x at most {shots} shots"
    # the runtime objective's formula with the circuits' own durations left out (no backend is built here)
    instant = Schedule(critical_path_seconds=0.0, measure_seconds=0.0, depth=0, two_qubit_depth=0, n_two_qubit_gates=0)
    seconds = jobs * estimate_runtime(instant, shots=shots, n_circuits=circuits, backend_name=config["target"],
                                      rep_delay=DEFAULT_REP_DELAY, job_overhead=DEFAULT_JOB_OVERHEAD).seconds
    budget = "" if settings.max_qpu_seconds is None else f"; budget {settings.max_qpu_seconds:g} QPU s"
    backend = _shown(config["target"])  # text from the run directory
    print(f"{PROG}: {run_dir} runs on the paid backend {backend}: {remaining} generations remain, up to "
          f"{jobs} jobs and {jobs * circuits * shots} shots, about {seconds:,.0f} QPU s ({what}){budget}",
          file=sys.stderr)
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"--yes: required to resume a run on the paid backend {backend} without a terminal "
                         "to confirm it; allowed: --yes, or run it in a terminal")
    print("continue? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError(f"--yes: not confirmed; nothing was submitted to {backend}")


def cmd_resume(args) -> int:
    from ..search import read_checkpoint

    run_dir = args.run_dir
    config = _load_config(run_dir)
    try:  # an older (pickled) or damaged checkpoint is reported before the run is set up
        read_checkpoint(run_dir)
    except ValueError as exc:
        raise UsageError(f"DIR: {' '.join(str(exc).split())}") from None
    finished = (run_dir / SUMMARY).exists() and (run_dir / RESULT).exists()
    if finished:
        result = _load_result(run_dir)  # a damaged file is reported, even with --quiet
        _read_summary(run_dir / SUMMARY)
        finished = not result.config.get("stopped")  # a search stopped at its QPU budget goes on
    if finished:
        if not args.quiet:
            print(f"{PROG}: the run is complete; nothing to resume", file=sys.stderr)
            return cmd_report(args)
        return 0
    _check_dask(args)
    if getattr(args, "max_qpu_seconds", None) is not None:  # a new budget: not one of the settings it must match
        config["estimator"]["max_qpu_seconds"] = args.max_qpu_seconds
    _confirm_paid_backend(run_dir, config, args.yes)
    started = time.perf_counter()
    estimator, data, plan = prepare(config, args.max_memory)
    fingerprint = plan.fingerprint
    _check_directory(run_dir, fingerprint, estimator.random_state, "DIR")
    with contextlib.ExitStack() as held:
        _lock(held, run_dir, "DIR")  # one resume at a time: two would submit every job twice
        _check_directory(run_dir, fingerprint, estimator.random_state, "DIR")
        return _fit_and_score(estimator, data, run_dir, args, started, fingerprint)


def on_target_accuracy(run_dir: Path, spec: str | None = None, qpu_spent: float = 0.0) -> tuple[float, str]:
    """Test accuracy of a finished run's chosen model (``model.pt``) with its quantum layer on the
    run's target (or on the target ``spec``, e.g. ``"runtime:fez"``), and the target's name: the
    target is resolved from ``config.json`` as the search resolved it; the pre-layer and head run in
    torch (:func:`qiskit_qnas.objectives.target_logits`). On a device the usage is estimated first and
    refused beyond what is left of the run's ``max_qpu_seconds`` after ``qpu_spent``."""
    import numpy as np

    from ..backends import target_backend
    from ..model import HQNN
    from ..objectives import TARGET_CHUNK_SAMPLES, target_logits
    from ..qpu_budget import QPUBudgetError, check_budget
    from ..space import Architecture

    _run_dir(run_dir, MODEL)
    estimator, data, _ = prepare(_load_config(run_dir))
    try:
        saved = read_tensors(run_dir / MODEL)
    except RunDirectoryError as exc:
        raise UsageError(f"DIR: {exc}") from None
    mean, std, classes = np.asarray(saved["mean"]), np.asarray(saved["std"]), np.asarray(saved["classes"])
    model = HQNN(Architecture.from_dict(saved["architecture"]), len(mean), len(classes), hidden=estimator.hidden,
                 dropout=estimator.dropout, head=estimator.head, output_norm=estimator._output_norm())
    model.load_state_dict(saved["state"])
    X = ((np.asarray(data.X_test, dtype=np.float64) - mean) / std).astype(np.float32)
    backend = None
    if spec is not None:
        try:
            backend, mode = target_backend(spec)
        except Exception as exc:  # noqa: BLE001 - e.g. no saved IBM Quantum account
            raise UsageError(f"--on-target: cannot use {spec!r}: {' '.join(str(exc).split())}") from None
        estimator.set_params(target_mode=mode)
    with estimator.resolve_target(estimator.random_state, backend=backend) as target:
        try:
            target.check_width(model.arch)
            if target.on_device:
                estimate = target.runtime_estimate(model.arch, len(X), n_jobs=-(-len(X) // TARGET_CHUNK_SAMPLES))
                check_budget(qpu_spent, estimate.seconds, estimator.max_qpu_seconds,
                             f"scoring {len(X)} test samples on {target.name}")
        except (QPUBudgetError, ValueError) as exc:
            raise UsageError(f"--on-target: {' '.join(str(exc).split())}") from None
        logits = target_logits(model, target, X)
        name = target.name
    return float(np.mean(classes[logits.argmax(1)] == np.asarray(data.y_test))), name


def cmd_report(args) -> int:
    run_dir = _run_dir(args.run_dir, RESULT)
    if not getattr(args, "on_target", False) and ((run_dir / PARETO).exists() or not os.access(run_dir, os.W_OK)):
        return _report(run_dir, args)  # writes nothing: no lock, and a read-only run directory is reported
    _load_result(run_dir)  # a damaged file is refused before the lock is taken: nothing is modified
    if (run_dir / SUMMARY).exists():
        _read_summary(run_dir / SUMMARY)
    with contextlib.ExitStack() as held:
        _lock(held, run_dir, "DIR")  # it writes pareto.png (and summary.json)
        return _report(run_dir, args)


def _report(run_dir: Path, args) -> int:
    result = _load_result(run_dir)  # read again under the lock: what is rewritten is what is current
    summary = _read_summary(run_dir / SUMMARY) if (run_dir / SUMMARY).exists() else None
    if getattr(args, "on_target", False):
        if summary is None:
            raise UsageError("--on-target: the run is not finished (no summary.json: `qnas resume DIR` completes "
                             "it); allowed: a finished run")
        spec = None if args.on_target is True else args.on_target
        summary["test_accuracy_on_target"], summary["on_target"] = on_target_accuracy(run_dir, spec,
                                                                                      result.qpu_seconds)
        write_json(run_dir / SUMMARY, summary)
    if not (run_dir / PARETO).exists():  # the plot the run wrote is kept as it is
        if os.access(run_dir, os.W_OK):
            import matplotlib.pyplot as plt

            result.plot_pareto(run_dir / PARETO)
            plt.close("all")
        else:
            print(f"{PROG}: {PARETO} not written: {run_dir} is read-only", file=sys.stderr)
    _print_report(run_dir, result, summary, front_only=not getattr(args, "all", False))
    return 0


def _check_output(output: Path) -> None:
    """Refuse an ``--output`` that is not a new path, a regular file or a link (which is replaced): a
    device, a FIFO, a socket or a directory in its place would be replaced or fail the write."""
    if str(output) == "-":
        return
    try:
        mode = os.lstat(output).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"--output: invalid value {str(output)!r}: {exc.strerror}; allowed: a writable file "
                         "path") from None
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        kind = "a directory" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
        raise UsageError(f"--output: invalid value {str(output)!r}: it is {kind}; allowed: a new path or a regular "
                         "file, or - for stdout")


def cmd_export(args) -> int:
    run_dir = _run_dir(args.run_dir, RESULT)
    result = _load_result(run_dir)
    front = result.pareto_front
    if args.candidate is None:
        if result.best is None:
            raise UsageError("--candidate: required (the run has no chosen candidate); "
                             f"allowed: 0..{len(front) - 1}")
        index = front.index(result.best)
    else:
        index = args.candidate
    if not 0 <= index < len(front):
        raise UsageError(f"--candidate: invalid value {index}; allowed: 0..{len(front) - 1} (the # column of "
                         "`qnas report`)")
    output = args.output or run_dir / f"candidate_{index}.{'qpy' if args.format == 'qpy' else 'qasm'}"
    _check_output(output)
    backend = None
    optimization_level = 1
    if not args.logical:
        config = _load_config(run_dir)
        optimization_level = int(config.get("estimator", {}).get("optimization_level", 1))
        try:
            backend = export_backend(config)
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"--logical: the run's backend ({_shown(config['target'])}) is not available "
                             f"({' '.join(str(exc).split())}); allowed: --logical for the logical circuit") from None
    if str(output) == "-":  # the circuit itself on stdout
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = result.export(Path(tmp) / "circuit", index=index, format=args.format, backend=backend,
                                 optimization_level=optimization_level)
            data = path.read_bytes()
        sys.stdout.flush()
        stream = getattr(sys.stdout, "buffer", None)
        if stream is not None:
            stream.write(data)
            stream.flush()
        else:
            sys.stdout.write(data.decode("latin-1") if args.format == "qpy" else data.decode())
        return 0
    path = result.export(output, index=index, format=args.format, backend=backend,
                         optimization_level=optimization_level)
    # the path goes to stderr: stdout stays free for data (``--output -``)
    print(path, file=sys.stderr)
    return 0


COMMANDS = {"search": cmd_search, "resume": cmd_resume, "report": cmd_report, "export": cmd_export}
