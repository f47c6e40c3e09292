"""Evaluating a generation's candidates concurrently: any ``concurrent.futures.Executor``, a local
process pool (``n_jobs``), a Dask cluster, or concurrent jobs on an IBM Runtime target.

What a task needs besides its architecture is the :class:`~qiskit_qnas.objectives.EvaluationContext`
(SuperCircuit weights, training and validation data, target): the large part. It travels to the
workers **once per generation**, never once per candidate:

* Dask (``Client.get_executor()`` or a ``Client``): scattered to every worker with
  ``client.scatter(context, broadcast=True)``; every task refers to that one copy.
* ``concurrent.futures.ProcessPoolExecutor`` (and ``n_jobs``): pickled once into a temporary file;
  every worker process reads it once and keeps it (keyed by the pickle's digest, which does not
  change between the generations of a search, so later generations read nothing).
* ``ThreadPoolExecutor``: shared in memory.
* any other executor (e.g. ``mpi4py.futures``, ``loky``): its workers may be on other machines, so the
  pickle goes with every task and each worker process unpickles it once.

Results are identical to the serial run's, candidate for candidate and bit for bit:
:func:`~qiskit_qnas.objectives.evaluate_candidate` is a pure function of (seed, architecture,
context), results are gathered in submission order, and

* within one process, candidates' torch work (fine-tuning, the head) runs one at a time under a
  per-process lock: fine-tuning seeds torch's *global* generator for its dropout masks, which
  threads would otherwise share. Only the target's own work (an Aer simulation, a Runtime job)
  runs outside that lock, so threads overlap jobs in flight, not torch work; use processes (``n_jobs``,
  Dask workers with ``threads_per_worker=1``, one per core) to spread torch work over cores;
* worker processes run torch on one intra-op thread (``torch.set_num_threads(1)``), so ``w``
  single-threaded workers on ``w`` cores do not oversubscribe them. The torch operations used give the
  same bits on any number of threads (checked in ``tests/test_parallel.py``).

Runtime targets that allow several jobs in flight (``target.max_concurrent_jobs > 1``) get, when no
executor is given, a thread pool of that many threads: a generation's candidates are then submitted
concurrently into the target's one Runtime ``Batch``, at most ``max_concurrent_jobs`` jobs at a time.
(With a process pool or Dask instead, every worker process gets its own copy of the target and opens
its own ``Batch``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import pickle
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from .objectives import EvaluationContext, evaluate_candidate
from .result import Candidate
from .space import Architecture
from .validation import InvalidArgument, check_int, is_integer

#: one candidate's torch work at a time in a process (see the module docstring)
_TORCH_LOCK = threading.Lock()
_CONTEXTS: dict[str, EvaluationContext] = {}  # per worker process: digest -> unpickled context
_CONTEXTS_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------------
# executors
# ------------------------------------------------------------------------------------------------
def resolve_executor(executor: Executor | None, n_jobs: int | None) -> tuple[Executor | None, bool]:
    """The executor to use and whether this call owns it (and must shut it down).

    ``executor``: any ``concurrent.futures.Executor`` (a Dask ``Client`` is accepted too), used as
    given. ``n_jobs`` > 1: a local pool of that many worker processes (``spawn`` start method).
    """
    if executor is not None:
        if not callable(getattr(executor, "submit", None)):
            raise InvalidArgument("executor", executor, "a concurrent.futures.Executor (e.g. "
                                  "dask.distributed.Client.get_executor()) or None")
        return executor, False
    if n_jobs is None or n_jobs == 1:
        return None, False
    n_jobs = check_int("n_jobs", n_jobs, 1, allow_none=True)
    # spawn: torch and OpenMP are not fork-safe once their thread pools exist
    return ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn")), True


@contextlib.contextmanager
def dask_executor(address: str | None = None, workers: int | None = None, **cluster_options: Any) -> Iterator[Executor]:
    """A ``concurrent.futures.Executor`` on Dask, closing what it created on exit.

    Args:
        address: a running scheduler (``"tcp://host:8786"``); the client is closed on exit, the
            cluster is left running.
        workers: otherwise, a ``LocalCluster`` of this many single-threaded worker processes
            (default: one per CPU core), shut down on exit.
        cluster_options: passed to ``LocalCluster`` (e.g. ``dashboard_address=":8787"`` instead of
            any free port, ``memory_limit=``).

    Example::

        with dask_executor(workers=2) as executor:
            QNASEstimator(executor=executor).fit(X, y)
    """
    if address is not None and workers is not None:
        raise ValueError("pass address= (a running Dask scheduler) or workers= (a local cluster), not both")
    if address is not None and not isinstance(address, str):
        raise InvalidArgument("address", address, "a Dask scheduler address such as 'tcp://host:8786', or None")
    workers = check_int("workers", workers, 1, allow_none=True)
    if address is not None and cluster_options:
        raise ValueError(f"cluster options {sorted(cluster_options)} apply to a local cluster, not to address=")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask is an optional dependency
        raise ImportError("Dask is not installed; pip install 'qiskit-qnas[dask]' (dask[distributed])") from exc
    if address is not None:
        with Client(address) as client:
            yield client.get_executor()
        return
    options = dict(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                   dashboard_address=":0")  # any free port (the dashboard itself needs bokeh)
    options.update(cluster_options)
    with LocalCluster(**options) as cluster, Client(cluster) as client:
        yield client.get_executor()


def _scheduler_address() -> str:
    """Run as a Dask task: the address of the scheduler the worker serves."""
    return _distributed().get_client().scheduler_info()["address"]


def _distributed():
    """``dask.distributed`` when the caller has imported it (an executor of Dask can exist only then),
    else None: the library does not import the optional dependency itself."""
    return sys.modules.get("distributed")


def _dask_client(executor) -> tuple[Any, Any]:
    """``(client, executor)``: the Dask ``Client`` to scatter the context with and the executor to
    submit tasks through (which keeps the submit options ``Client.get_executor(**options)`` was
    given), for a ``Client`` or one of its executors; ``(None, executor)`` for any other executor.

    A ``ClientExecutor`` exposes no client, so the current client (``Client.current()``) is used when
    the executor's own tasks report the same scheduler (one small task); otherwise the context
    travels with every task, as for any other executor."""
    if all(callable(getattr(executor, name, None)) for name in ("scatter", "gather", "get_executor")):
        return executor, executor.get_executor()
    distributed = _distributed()
    if distributed is None or not isinstance(executor, distributed.cfexecutor.ClientExecutor):
        return None, executor
    try:
        client = distributed.Client.current()
    except ValueError:  # no client in this process
        return None, executor
    if executor.submit(_scheduler_address, pure=False).result() != client.scheduler_info()["address"]:
        return None, executor
    return client, executor


def max_concurrent_jobs(target) -> int:
    """How many jobs ``target`` allows in flight at once (``target.max_concurrent_jobs``, default 1)."""
    cap = getattr(target, "max_concurrent_jobs", None)
    if cap is None:
        return 1
    if not is_integer(cap) or cap < 1:
        raise InvalidArgument("max_concurrent_jobs", cap, "an integer >= 1", context=f" on target {target!r}")
    return int(cap)


# ------------------------------------------------------------------------------------------------
# the task (runs in the worker)
# ------------------------------------------------------------------------------------------------
def _caller() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def _single_thread_in_workers(caller: tuple[str, int] | None) -> None:
    """In a worker process (not the process that submitted the task), run torch on one thread."""
    if caller is None or caller == _caller():
        return
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


class _TargetOutsideLock:
    """The target of a context, its ``expectation_values`` (the job) run without the torch lock."""

    def __init__(self, target, lock: threading.Lock):
        self._target, self._lock = target, lock

    def __getattr__(self, name: str):
        return getattr(self._target, name)

    def expectation_values(self, *args, **kwargs):
        self._lock.release()
        try:
            return self._target.expectation_values(*args, **kwargs)
        finally:
            self._lock.acquire()


def _evaluate(arch: Architecture, context: EvaluationContext, generation: int,
              caller: tuple[str, int] | None = None) -> Candidate:
    _single_thread_in_workers(caller)
    with _TORCH_LOCK:
        if not getattr(context.target, "exact", False):
            context = dataclasses.replace(context, target=_TargetOutsideLock(context.target, _TORCH_LOCK))
        return evaluate_candidate(arch, context, generation)


def _cached_context(digest: str, load) -> EvaluationContext:
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(digest)
        if context is None:
            _CONTEXTS.clear()  # one search's context at a time
            context = _CONTEXTS[digest] = load()
        return context


def _evaluate_pickled(arch: Architecture, digest: str, blob: bytes, generation: int,
                      caller: tuple[str, int] | None = None) -> Candidate:
    return _evaluate(arch, _cached_context(digest, lambda: pickle.loads(blob)), generation, caller)


def _load(path: str) -> EvaluationContext:
    with open(path, "rb") as f:
        return pickle.load(f)


def _evaluate_from_file(arch: Architecture, digest: str, path: str, generation: int,
                        caller: tuple[str, int] | None = None) -> Candidate:
    return _evaluate(arch, _cached_context(digest, lambda: _load(path)), generation, caller)


# ------------------------------------------------------------------------------------------------
# a generation
# ------------------------------------------------------------------------------------------------
def _results(futures: list[Future]) -> list[Candidate]:
    """The futures' results in order; on the first failure the rest are cancelled and it is raised."""
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _pickled(context: EvaluationContext) -> tuple[bytes, str]:
    blob = pickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)
    return blob, hashlib.sha256(blob).hexdigest()


def evaluate_generation(executor: Executor | None, archs: Sequence[Architecture], context: EvaluationContext,
                        generation: int) -> list[Candidate]:
    """Evaluate ``archs`` serially or on ``executor``; the candidates come back in ``archs`` order,
    identical to the serial run's.

    With ``executor=None`` and a target allowing several jobs in flight
    (:func:`max_concurrent_jobs` > 1), a thread pool of that size submits them concurrently.
    """
    archs = list(archs)
    if not archs:
        return []
    if executor is None:
        cap = min(max_concurrent_jobs(context.target), len(archs))
        if cap <= 1:
            return [_evaluate(a, context, generation) for a in archs]
        with ThreadPoolExecutor(max_workers=cap, thread_name_prefix="qnas-job") as pool:
            return _results([pool.submit(_evaluate, a, context, generation) for a in archs])
    caller = _caller()
    # a Dask executor's submit takes Dask's own options (pure=) besides the function's arguments
    client, dask_submitter = _dask_client(executor)
    if client is not None:
        shared = client.scatter(context, broadcast=True, hash=False)
        return _results([dask_submitter.submit(_evaluate, a, shared, generation, caller, pure=False) for a in archs])
    if isinstance(executor, ThreadPoolExecutor):
        return _results([executor.submit(_evaluate, a, context, generation, caller) for a in archs])
    blob, digest = _pickled(context)
    if isinstance(executor, ProcessPoolExecutor):  # local workers: one file, read once per process
        with tempfile.TemporaryDirectory(prefix="qnas-context-") as directory:
            path = os.path.join(directory, "context.pkl")
            with open(path, "wb") as f:
                f.write(blob)
            return _results([executor.submit(_evaluate_from_file, a, digest, path, generation, caller)
                             for a in archs])
    return _results([executor.submit(_evaluate_pickled, a, digest, blob, generation, caller) for a in archs])


__all__ = ["dask_executor", "evaluate_generation", "max_concurrent_jobs", "resolve_executor"]
