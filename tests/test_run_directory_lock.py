"""One run at a time in a run directory: ``fit``, ``qnas search``, ``resume`` and ``report`` hold its advisory
lock; a second process is refused at once with one line naming the holder, and the lock of a process that
died is taken over. Real processes hold the lock (``subprocess``), not a simulated one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from sklearn.datasets import load_iris

from qiskit_qnas import QNASEstimator, SearchSpace
from qiskit_qnas.cli import main
from qiskit_qnas.rundir import LOCK, RunDirectoryError, run_directory_lock

X, Y = load_iris(return_X_y=True)
TINY = dict(search_space=SearchSpace(qubits=(2, 2), layers=(1, 1)), qubit_budget=2, population_size=2,
            n_generations=1, supercircuit_epochs=1, finetune_epochs=0, final_epochs=0, verbose=0, random_state=0)


@pytest.fixture
def holder(tmp_path):
    """``holder(directory)``: another process holding ``directory``'s lock until it is killed."""
    started = []

    def hold(directory):
        code = textwrap.dedent(f"""
            import sys, time
            from qiskit_qnas.rundir import run_directory_lock
            with run_directory_lock({str(directory)!r}):
                print("held", flush=True)
                time.sleep(600)
        """)
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_a_second_fit_is_refused_while_a_run_holds_the_directory(tmp_path, holder):
    run_dir = tmp_path / "run"
    process = holder(run_dir)
    est = QNASEstimator(checkpoint_dir=str(run_dir), **TINY)
    with pytest.raises(RunDirectoryError) as refused:
        est.fit(X, Y)
    message = str(refused.value)
    assert "\n" not in message and "in use by another qnas run" in message and f"pid {process.pid}" in message
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK]  # nothing written
    # the holder dies (as a killed run does): its lock is taken over by the next run
    process.send_signal(signal.SIGKILL)
    process.wait()
    est.fit(X, Y)
    assert (run_dir / "result.json").is_file()
    assert f"pid {os.getpid()}" in (run_dir / LOCK).read_text()


def test_the_command_line_refuses_a_held_directory_in_one_line(tmp_path, holder, capsys):
    run_dir = tmp_path / "run"
    args = ["--dataset", "iris", "--qubits", "2", "--layers", "1", "--population", "2", "--generations", "1",
            "--supercircuit-epochs", "1", "--finetune-epochs", "0", "--qubit-budget", "2", "--quiet"]
    assert main(["search", *args, "--out", str(run_dir)]) == 0
    process = holder(run_dir)
    assert main(["report", str(run_dir)]) == 0  # reading takes no lock
    capsys.readouterr()
    (run_dir / "pareto.png").unlink()  # report would write it
    for command in (["resume", str(run_dir)], ["report", str(run_dir)]):
        (run_dir / "summary.json").unlink(missing_ok=command[0] == "report")
        with pytest.raises(SystemExit) as info:
            main(command)
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and len(err.splitlines()) == 1, err
        assert "in use by another qnas run" in err and f"pid {process.pid}" in err


def test_the_lock_is_reentrant_in_its_process_and_refuses_what_is_not_a_file(tmp_path):
    run_dir = tmp_path / "run"
    with run_directory_lock(run_dir):  # the command line holds it around fit, which takes it too
        QNASEstimator(checkpoint_dir=str(run_dir), **TINY).fit(X, Y)
    other = tmp_path / "other"
    other.mkdir()
    os.mkfifo(other / LOCK)
    with pytest.raises(RunDirectoryError, match="not a regular file"):
        with run_directory_lock(other):
            pass
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / LOCK).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunDirectoryError, match="cannot be opened"):
        with run_directory_lock(linked):
            pass
    assert not (tmp_path / "elsewhere").exists()
