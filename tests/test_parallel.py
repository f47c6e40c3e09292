"""Concurrent candidate evaluation: Dask, process pools, threads and concurrent Runtime jobs all give
exactly the serial run's candidates (same order, same bits)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from qiskit_qnas import Architecture, QNASEstimator, SearchSpace, parallel
from qiskit_qnas.objectives import EvaluationContext
from qiskit_qnas.parallel import dask_executor, evaluate_generation, max_concurrent_jobs, resolve_executor
from qiskit_qnas.supercircuit import SuperCircuit, finetune

X, Y = load_iris(return_X_y=True)
SMALL = dict(search_space=SearchSpace(qubits=(2, 3), layers=(1, 2)), qubit_budget=2, population_size=6,
             n_generations=2, supercircuit_epochs=5, finetune_epochs=1, verbose=0, random_state=3)
TIMING = ("measured_seconds", "job_seconds", "finetune_seconds")


def fingerprint(candidates):
    """Everything a candidate holds except wall-clock timings."""
    rows = []
    for c in candidates:
        data = c.to_dict()
        for key in TIMING:
            data.pop(key)
        data["cutting"] = {k: v for k, v in data["cutting"].items() if k != "seconds"}
        rows.append(data)
    return rows


def search(**kwargs):
    est = QNASEstimator(**SMALL, **kwargs).fit(X, Y)
    return fingerprint(est.result_.candidates), est.predict_proba(X).tobytes()


@pytest.fixture(scope="module")
def serial():
    return search()


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as client:
        yield client


def test_serial_run_is_reproducible_and_nontrivial(serial):
    candidates, _ = serial
    assert len(candidates) >= 6 and {c["generation"] for c in candidates} == {1, 2}
    assert len({tuple(c["objectives"]) for c in candidates}) > 1


def test_dask_local_cluster_gives_the_serial_result(serial, dask_client):
    assert search(executor=dask_client.get_executor()) == serial


def test_process_pool_gives_the_serial_result(serial):
    assert search(n_jobs=2) == serial


def test_thread_pool_gives_the_serial_result(serial):
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert search(executor=pool) == serial


# --- the mechanics, on a prepared context ------------------------------------------------------------
@pytest.fixture(scope="module")
def context():
    from qiskit_qnas.targets import resolve_target

    space = SearchSpace(qubits=(2, 3), layers=(1, 2))
    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    return EvaluationContext(supercircuit=SuperCircuit(space, 4, 3, seed=0), X_train=Xs[:30], y_train=y[:30],
                             X_val=Xs[30:], y_val=y[30:], target=resolve_target(None), qubit_budget=2,
                             finetune_epochs=1, seed=5)


ARCHS = [Architecture(n_qubits=n, n_layers=layers, embedding="angle_y", rotation="ry", entangler="odd")
         for n in (2, 3) for layers in (1, 2)]


def test_dask_scatters_the_context_once_per_generation(context, dask_client):
    calls = {"scatter": 0, "submit_args": []}
    scatter, submit = dask_client.scatter, dask_client.submit

    def counting_scatter(*args, **kwargs):
        calls["scatter"] += 1
        assert kwargs.get("broadcast") is True
        return scatter(*args, **kwargs)

    def recording_submit(fn, *args, **kwargs):
        if fn.__name__ == "_evaluate":  # not the executor's scheduler probe
            calls["submit_args"].append(args)
        return submit(fn, *args, **kwargs)

    dask_client.scatter, dask_client.submit = counting_scatter, recording_submit
    try:
        found = evaluate_generation(dask_client.get_executor(), ARCHS, context, 1)
        again = evaluate_generation(dask_client, ARCHS, context, 1)  # a Client is accepted as well
    finally:
        del dask_client.scatter, dask_client.submit
    assert calls["scatter"] == 2 and len(calls["submit_args"]) == 2 * len(ARCHS)
    assert not any(isinstance(a, EvaluationContext) for args in calls["submit_args"] for a in args)
    expected = fingerprint(evaluate_generation(None, ARCHS, context, 1))
    assert fingerprint(found) == fingerprint(again) == expected
    assert [c.architecture for c in found] == ARCHS


def test_workers_run_torch_on_one_thread(dask_client):
    def threads_in_task(caller):
        torch.set_num_threads(2)  # whatever the worker was started with
        parallel._single_thread_in_workers(caller)
        return torch.get_num_threads()

    caller = parallel._caller()
    assert dask_client.gather([dask_client.submit(threads_in_task, caller, pure=False) for _ in range(4)]) == [1] * 4
    before = torch.get_num_threads()
    try:
        assert threads_in_task(caller) == 2  # the submitting process is left alone
    finally:
        torch.set_num_threads(before)


def test_torch_results_do_not_depend_on_the_thread_count():
    """Workers run on 1 thread, a serial run above 2**18 amplitudes on all cores: same bits."""
    space = SearchSpace(qubits=(2, 12), layers=(1, 2), embeddings=("angle_y",))
    supercircuit = SuperCircuit(space, 4, 3, seed=0)
    rng = np.random.default_rng(1)
    Xs, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    arch = Architecture(n_qubits=12, n_layers=2, embedding="angle_y", rotation="rxryrz", entangler="all")
    before, weights = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = finetune(supercircuit, arch, Xs, y, 1, batch_size=64, seed=1)
            with torch.no_grad():
                logits = model(torch.as_tensor(Xs))
            weights.append(torch.cat([p.detach().flatten().double() for p in model.parameters()] +
                                     [logits.flatten().double()]).numpy())
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(weights[0], weights[1])


def test_runtime_jobs_run_concurrently_under_the_cap(monkeypatch):
    """Runtime's local testing mode (FakeManilaV2): a target allowing 2 jobs in flight gets a thread
    pool, at most 2 jobs overlap in its one Batch, and the search equals the serial one."""
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qiskit_qnas.targets import RuntimeTarget

    # reevaluations=0: the leader's re-measurement after the search runs on the calling thread;
    # fidelity="target": every candidate's job on the device (not on its emulation)
    runtime = dict(backend=FakeManilaV2(), target_mode="runtime", shots=256, reevaluations=0, fidelity="target")
    one_at_a_time = search(**runtime)
    state = {"now": 0, "peak": 0, "threads": set(), "batches": set()}
    lock = threading.Lock()
    original = RuntimeTarget.expectation_values

    def counting(self, *args, **kwargs):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            state["threads"].add(threading.current_thread().name)
        try:
            time.sleep(0.1)  # make the overlap observable
            return original(self, *args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1
                state["batches"].add(id(self._mode))

    monkeypatch.setattr(RuntimeTarget, "expectation_values", counting)
    assert search(**runtime, max_concurrent_jobs=2) == one_at_a_time
    assert state["peak"] == 2 and all(name.startswith("qnas-job") for name in state["threads"])
    assert len(state["batches"]) == 1  # one Batch for the whole search
    assert not any(c["failed"] for c in one_at_a_time[0])


def test_a_failure_among_concurrent_jobs_replaces_the_batch_once(monkeypatch):
    """Two jobs in flight on the same primitive both fail: the target opens one new Batch, not one per
    failed thread (a thread that closed the other's fresh Batch would make it fail again)."""
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qiskit_qnas.targets import RuntimeTarget, resolve_target

    target = resolve_target(FakeManilaV2(), mode="runtime", shots=64, seed=1, retry_backoff=0,
                            max_concurrent_jobs=2)
    assert isinstance(target, RuntimeTarget) and target.max_concurrent_jobs == 2
    made, closed, barrier = [], [], threading.Barrier(2)
    make = RuntimeTarget._make_estimator

    def making(self):
        estimator = make(self)
        made.append(self._mode)
        if len(made) == 1:  # the first primitive: both threads' jobs fail on it, together
            def failing(pubs):
                barrier.wait(timeout=30)
                raise RuntimeError("job failed")
            estimator.run = failing
        mode = self._mode
        mode_close = mode.close
        mode.close = lambda: (closed.append(mode), mode_close())[1]
        return estimator

    monkeypatch.setattr(RuntimeTarget, "_make_estimator", making)
    arch = Architecture(2, 1, "angle_y", "ry", "chain")
    x, w = np.full((3, 2), 0.3), np.full(arch.n_weights, 0.2)
    with ThreadPoolExecutor(2) as pool:
        evaluations = list(pool.map(lambda _: target.expectation_values(arch, x, w), range(2)))
    assert [e.attempts for e in evaluations] == [2, 2]
    assert len(made) == 2 and closed == [made[0]]  # one replacement; the new Batch stays open
    np.testing.assert_allclose(evaluations[0].values, evaluations[1].values, atol=0.5)
    target.close()
    assert closed == made


def test_max_concurrent_jobs_is_checked_before_work():
    from qiskit_qnas.targets import resolve_target

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_concurrent_jobs"):
            resolve_target(None, max_concurrent_jobs=bad)
    with pytest.raises(ValueError, match="non-Runtime target"):
        resolve_target(None, max_concurrent_jobs=2)
    with pytest.raises(ValueError, match="max_concurrent_jobs"):
        QNASEstimator(**SMALL, max_concurrent_jobs=0).fit(X, Y)
    with pytest.raises(ValueError, match="non-Runtime target"):
        QNASEstimator(**SMALL, max_concurrent_jobs=2).fit(X, Y)


# --- arguments ------------------------------------------------------------------------------------
def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="executor"):
        resolve_executor(object(), None)
    with pytest.raises(ValueError, match="n_jobs"):
        resolve_executor(None, 0)
    assert resolve_executor(None, 1) == (None, False)
    with pytest.raises(ValueError, match="not both"):
        with dask_executor(address="tcp://127.0.0.1:1", workers=2):
            pass
    with pytest.raises(ValueError, match="workers"):
        with dask_executor(workers=0):
            pass
    with pytest.raises(ValueError, match="address"):
        with dask_executor(address=8786):
            pass

    class Target:
        max_concurrent_jobs = 0

    with pytest.raises(ValueError, match="max_concurrent_jobs"):
        max_concurrent_jobs(Target())
    assert max_concurrent_jobs(object()) == 1


def test_dask_executor_makes_and_closes_a_local_cluster():
    pytest.importorskip("distributed")
    with dask_executor(workers=1) as executor:
        client = executor._client
        assert len(client.scheduler_info()["workers"]) == 1
        assert executor.submit(pow, 2, 5).result() == 32
        cluster = client.cluster
    assert client.status == "closed" and cluster.status.name == "closed"
