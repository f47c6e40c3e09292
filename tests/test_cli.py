"""The ``qnas`` command line: search / report / export / resume on Iris, bad arguments, and a search
killed with SIGKILL then resumed to the same front as an uninterrupted run."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qiskit_qnas.cli import main
from qiskit_qnas.result import SearchResult
from qiskit_qnas.search import CHECKPOINT, LEGACY_CHECKPOINT, read_checkpoint

TINY = ["--dataset", "iris", "--qubits", "2:3", "--layers", "1:2", "--population", "6", "--generations", "2",
        "--supercircuit-epochs", "5", "--finetune-epochs", "1", "--qubit-budget", "2", "--seed", "0"]
#: ~5 generations: long enough to be killed in the middle
KILLED = ["--dataset", "iris", "--qubits", "2:3", "--layers", "1:2", "--population", "6", "--generations", "5",
          "--supercircuit-epochs", "5", "--finetune-epochs", "1", "--qubit-budget", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny search run in-process; returns (run dir, stdout)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["search", *TINY, "--out", str(out)]) == 0
    return out, buffer.getvalue()


def front_of(run_dir):
    result = SearchResult.load(run_dir)
    return ([c.architecture.key for c in result.candidates],
            [(c.architecture.key, c.objectives) for c in result.pareto_front])


# --- search / report / export --------------------------------------------------------------------
def test_search_writes_the_run_directory(run):
    out, stdout = run
    for name in ("config.json", "summary.json", "result.json", "candidates.csv", "pareto.png", "model.pt",
                 "best_circuit.qpy", "supercircuit.pt", CHECKPOINT):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["name"] == "iris" and config["target"] == "statevector"
    assert config["estimator"]["population_size"] == 6 and config["estimator"]["n_generations"] == 2
    assert config["search_space"]["qubits"] == [2, 3] and config["search_space"]["layers"] == [1, 2]
    # config.json is written before the search starts
    assert (out / "config.json").stat().st_mtime <= (out / "supercircuit.pt").stat().st_mtime
    summary = json.loads((out / "summary.json").read_text())
    result = SearchResult.load(out)
    assert 0 <= summary["test_accuracy"] <= 1
    assert summary["chosen"] == result.best.architecture.key
    assert result.pareto_front[summary["chosen_index"]] is result.best
    assert summary["command"][:2] == ["qnas", "search"] and summary["timings"]["total"] > 0
    # the front table was printed, the chosen row starred
    assert "val_error" in stdout and "test accuracy" in stdout
    assert result.best.architecture.key in stdout and "*" in stdout


def test_a_quantum_dominant_search_records_its_settings_and_its_model_runs_on_a_target(tmp_path, capsys):
    out = tmp_path / "qd"
    settings = [*TINY[:2], "--qubits", "3:4", *TINY[4:], "--hidden", "none", "--head", "none", "--output-norm", "on"]
    assert main(["search", *settings, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["estimator"]
    assert config["hidden"] is None and config["head"] is None and config["output_norm"] is True
    capsys.readouterr()
    assert main(["report", str(out), "--on-target", "aer:FakeManilaV2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["test_accuracy_on_target"] <= 1
    assert main(["export", str(out), "--logical", "--output", str(tmp_path / "chosen.qpy")]) == 0
    assert main(["resume", str(out)]) == 0  # a finished run rebuilds the same estimator and only reports
    with pytest.raises(SystemExit) as info:
        main(["search", *settings[:-6], "--hidden", "wide", "--out", str(tmp_path / "bad")])
    assert info.value.code == 2 and "--hidden" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_report_prints_the_front_and_writes_a_missing_plot(run, capsys):
    out, _ = run
    (out / "pareto.png").unlink()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert f"{summary['test_accuracy']:.4f}" in text and summary["chosen"] in text
    assert (out / "pareto.png").stat().st_size > 0


def test_report_on_target_scores_the_chosen_model_on_the_runs_target(run, capsys):
    out, _ = run
    assert main(["report", str(out), "--on-target"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    # the run's target is the exact one: the quantum layer there gives the plain test accuracy
    assert summary["on_target"] == "statevector"
    assert summary["test_accuracy_on_target"] == summary["test_accuracy"]
    assert f"test accuracy on statevector: {summary['test_accuracy']:.4f}" in text


def test_report_on_target_scores_the_chosen_model_on_another_target(run, capsys):
    out, _ = run
    assert main(["report", str(out), "--on-target", "aer:FakeManilaV2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["on_target"] == "aer:fake_manila" and 0 <= summary["test_accuracy_on_target"] <= 1
    assert "test accuracy on aer:fake_manila" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["report", str(out), "--on-target", "runtime:nowhere"])
    assert info.value.code == 2 and "--on-target" in capsys.readouterr().err


def test_a_qpu_budget_is_refused_in_one_line_and_a_dry_run_prints_the_plan(tmp_path, capsys):
    out = tmp_path / "device"
    args = ["search", *TINY, "--target", "runtime:manila", "--out", str(out)]
    with pytest.raises(SystemExit) as info:
        main([*args, "--max-qpu-seconds", "1"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    assert len(err.splitlines()) == 1 and "--max-qpu-seconds: invalid max_qpu_seconds=1:" in err
    assert not out.exists()
    assert main([*args, "--max-qpu-seconds", "600", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "QPU plan on runtime-local:fake_manila (multi-fidelity search)" in printed and "budget 600 s" in printed
    assert not out.exists()  # nothing trained, submitted or written
    assert main(["search", *TINY, "--dry-run"]) == 0
    assert "submits nothing to a QPU" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main([*args, "--max-qpu-seconds", "-1"])
    assert info.value.code == 2 and "--max-qpu-seconds" in capsys.readouterr().err


def test_report_on_target_of_an_aer_run_records_the_noisy_accuracy(tmp_path, capsys):
    out = tmp_path / "aer"
    args = [*TINY, "--population", "2", "--generations", "1", "--target", "aer:fake_manila", "--shots", "1024"]
    assert main(["search", *args, "--out", str(out), "--quiet"]) == 0
    assert main(["report", str(out), "--on-target"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["on_target"] == "aer:fake_manila" and 0 <= summary["test_accuracy_on_target"] <= 1
    first = summary["test_accuracy_on_target"]
    assert main(["report", str(out), "--on-target"]) == 0  # seeded shots: the same accuracy again
    assert json.loads((out / "summary.json").read_text())["test_accuracy_on_target"] == first
    capsys.readouterr()


def test_runtime_mitigation_flags_are_recorded_in_the_config(tmp_path, capsys):
    out = tmp_path / "runtime"
    args = ["--dataset", "iris", "--qubits", "2:2", "--layers", "1:1", "--population", "2", "--generations", "1",
            "--supercircuit-epochs", "1", "--finetune-epochs", "0", "--final-epochs", "0", "--qubit-budget", "2",
            "--target", "runtime:fake_manila", "--shots", "256", "--resilience-level", "1", "--twirling", "all",
            "--twirling-randomizations", "4", "--dynamical-decoupling", "XY4", "--reevaluations", "2"]
    assert main(["search", *args, "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["estimator"]["reevaluations"] == 2
    assert config["estimator"]["runtime_options"] == {
        "resilience_level": 1, "twirling": {"enable_gates": True, "enable_measure": True, "num_randomizations": 4},
        "dynamical_decoupling": {"enable": True, "sequence_type": "XY4"}}
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["runtime_options"] == config["estimator"]["runtime_options"]
    assert all(c["runtime"]["calibration_executions"] == 4 * 64 for c in result["candidates"])
    capsys.readouterr()


def test_resume_of_a_complete_run_only_reports(run, capsys):
    out, _ = run
    before = (out / "result.json").stat().st_mtime_ns
    assert main(["resume", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert (out / "result.json").stat().st_mtime_ns == before


def test_export_qpy_isa_and_qasm3_logical(run, capsys, tmp_path):
    from qiskit import qasm3, qpy

    from qiskit_qnas.targets import resolve_target

    out, _ = run
    result = SearchResult.load(out)
    front = result.pareto_front
    last = len(front) - 1
    assert main(["export", str(out), "--candidate", str(last)]) == 0
    path = Path(capsys.readouterr().err.strip())
    assert path == out / f"candidate_{last}.qpy"
    with open(path, "rb") as f:
        (isa,) = qpy.load(f)
    reference = resolve_target(None).backend
    assert isa.num_qubits == reference.num_qubits  # laid out on the reference device
    assert set(isa.count_ops()) - {"measure", "barrier"} <= set(reference.operation_names)
    assert {p.name.split("[")[0] for p in isa.parameters} <= {"x"}  # weights bound, inputs free

    target = tmp_path / "c0.qasm"
    assert main(["export", str(out), "--candidate", "0", "--format", "qasm3", "--logical",
                 "--output", str(target)]) == 0
    assert Path(capsys.readouterr().err.strip()) == target
    loaded = qasm3.loads(target.read_text())
    arch = front[0].architecture
    assert loaded.num_qubits == arch.n_qubits
    assert loaded.num_parameters == len(arch.input_params)

    # "--output -": the program itself on stdout
    assert main(["export", str(out), "--candidate", "0", "--format", "qasm3", "--logical", "--output", "-"]) == 0
    assert qasm3.loads(capsys.readouterr().out).num_qubits == arch.n_qubits

    # default candidate: the chosen one
    assert main(["export", str(out), "--logical"]) == 0
    index = front.index(result.best)
    assert Path(capsys.readouterr().err.strip()) == out / f"candidate_{index}.qpy"

    with pytest.raises(SystemExit) as info:
        main(["export", str(out), "--candidate", str(len(front))])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--candidate" in err and f"0..{last}" in err


# --- bad arguments --------------------------------------------------------------------------------
BAD = [
    (["--qubit-budget", "0"], "--qubit-budget: invalid value 0; allowed: an integer >= 1"),
    (["--dataset", "cifar"], "--dataset"),
    (["--qubits", "3:2"], "--qubits"),
    (["--qubits", "two"], "--qubits"),
    (["--layers", "0:2"], "--layers"),
    (["--ranges", "1:x"], "--ranges"),
    (["--embeddings", "angle_y,bogus"], "--embeddings"),
    (["--entanglers", "odd", "spiral"], "--entanglers"),
    (["--rotations", "rz"], "--rotations"),
    (["--target", "aer:fake_atlantis"], "--target"),
    (["--target", "quantum"], "--target"),
    (["--population", "1"], "--population"),
    (["--generations", "0"], "--generations"),
    (["--shots", "-5"], "--shots"),
    (["--cutting-objective", "gates"], "--cutting-objective"),
    (["--runtime-objective", "fast"], "--runtime-objective"),
    (["--reevaluations", "-1"], "--reevaluations"),
    (["--log-level", "loud"], "--log-level"),
    (["--workers", "0"], "--workers"),
    (["--max-concurrent-jobs", "0"], "--max-concurrent-jobs"),
    (["--max-concurrent-jobs", "2"], "--max-concurrent-jobs: invalid value 2 for a non-Runtime target"),
    (["--target", "aer:fake_manila", "--qubits", "2:8"], "--qubits"),
    (["--resilience-level", "3", "--target", "runtime:fake_manila"], "--resilience-level: invalid value '3'"),
    (["--twirling", "some", "--target", "runtime:fake_manila"], "--twirling"),
    (["--dynamical-decoupling", "XZ", "--target", "runtime:fake_manila"], "--dynamical-decoupling"),
    (["--twirling-randomizations", "0", "--target", "runtime:fake_manila"], "--twirling-randomizations"),
    (["--resilience-level", "1"], "not supported with --target statevector; allowed: a Runtime target"),
    (["--twirling", "all", "--target", "aer:fake_manila"], "not supported with --target aer:manila"),
    (["--noise-aware"], "--noise-aware: invalid noise_aware=True with target 'statevector'"),
    (["--target", "aer", "--noise-aware"], "--noise-aware: invalid noise_aware=True"),
]


def _search_args(extra):
    args = list(TINY)
    for flag in [e for e in extra if e.startswith("--")]:
        if flag in args:  # drop the default of a flag the case overrides
            i = args.index(flag)
            del args[i:i + 2]
    return args + list(extra)


@pytest.mark.parametrize("extra, expected", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_search_arguments_exit_2_with_one_line(extra, expected, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["search", *_search_args(extra), "--out", str(out)])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("qnas: error: ") and captured.err.count("\n") == 1, captured.err
    assert expected in captured.err and "allowed" in captured.err
    assert not out.exists()  # checked before any work


def test_csv_arguments(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("a,b,label\n1,2,x\n3,4,y\n")
    cases = [(["--csv", str(tmp_path / "nope.csv"), "--target-column", "label"], "--csv"),
             (["--csv", str(data), "--target-column", "species"], "--target-column"),
             (["--csv", str(data)], "--target-column"),
             (["--dataset", "iris", "--csv", str(data), "--target-column", "label"], "--csv")]
    for extra, flag in cases:
        with pytest.raises(SystemExit) as info:
            main(["search", *extra, "--out", str(tmp_path / "run")])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["resume", "report", "export"])
def test_missing_run_dir_exits_2(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, str(tmp_path / "missing")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("qnas: error: DIR") and err.count("\n") == 1


def test_search_refuses_an_existing_run(run, capsys):
    out, _ = run
    with pytest.raises(SystemExit) as info:
        main(["search", *TINY, "--out", str(out)])
    assert info.value.code == 2
    assert "qnas resume" in capsys.readouterr().err


def _interrupted_copy(run, tmp_path) -> Path:
    """A copy of the finished run that looks interrupted (no summary, no checkpoint)."""
    copy = tmp_path / "run"
    shutil.copytree(run[0], copy)
    (copy / "summary.json").unlink()
    (copy / CHECKPOINT).unlink()
    return copy


@pytest.mark.parametrize("damage", ["pickled", "truncated"])
def test_resume_refuses_a_pickled_or_malformed_checkpoint_and_changes_nothing(damage, run, tmp_path, capsys,
                                                                               crafted_pickle):
    run_dir = _interrupted_copy(run, tmp_path)
    marker = tmp_path / "pwned"
    if damage == "pickled":  # an older version's checkpoint, or a crafted one: never unpickled
        name, words = LEGACY_CHECKPOINT, ("older qiskit-qnas", "start a new run directory")
        (run_dir / name).write_bytes(crafted_pickle(marker))
    else:
        name, words = CHECKPOINT, ("not a readable",)
        (run_dir / name).write_text('{"format": "qiskit-qnas-search-checkpoint", "version": 2, "popul')
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(SystemExit) as info:
        main(["resume", str(run_dir), "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("qnas: error: DIR: ") and err.count("\n") == 1
    assert str(run_dir / name) in err and all(word in err for word in words)
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_python_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "qiskit_qnas", "search", "--qubit-budget", "0", "--dataset", "iris"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "qnas: error: --qubit-budget: invalid value 0; allowed: an integer >= 1"


def test_workers_and_scheduler_go_through_dask_executor(tmp_path, monkeypatch):
    """--workers N / --dask-scheduler ADDRESS reach qiskit_qnas.parallel.dask_executor, whose executor
    evaluates the candidates (a thread pool stands in for the Dask cluster here)."""
    from concurrent.futures import ThreadPoolExecutor

    import qiskit_qnas.parallel as parallel

    calls, submitted = [], []

    class Counting(ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            submitted.append(args[0])
            return super().submit(*args, **kwargs)

    @contextlib.contextmanager
    def fake_dask_executor(address=None, workers=None):
        calls.append((address, workers))
        with Counting(max_workers=1) as executor:
            yield executor

    monkeypatch.setattr(parallel, "dask_executor", fake_dask_executor)
    tiny = ["--dataset", "iris", "--qubits", "2", "--layers", "1", "--population", "3", "--generations", "1",
            "--supercircuit-epochs", "1", "--finetune-epochs", "0", "--quiet"]
    assert main(["search", *tiny, "--workers", "2", "--out", str(tmp_path / "a")]) == 0
    assert main(["search", *tiny, "--dask-scheduler", "tcp://127.0.0.1:8786", "--out", str(tmp_path / "b")]) == 0
    assert calls == [(None, 2), ("tcp://127.0.0.1:8786", None)]
    assert submitted  # candidates were evaluated on the executor
    assert front_of(tmp_path / "a") == front_of(tmp_path / "b")


# --- kill -9, resume, same front -------------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    reference = tmp_path_factory.mktemp("reference") / "run"
    assert main(["search", *KILLED, "--quiet", "--out", str(reference)]) == 0
    return reference


@pytest.mark.parametrize("moment", ["supercircuit training", "supercircuit.pt written", "first checkpoint"])
def test_sigkill_then_resume_gives_the_uninterrupted_front(tmp_path, uninterrupted, moment):
    """SIGKILL while the SuperCircuit trains (only config.json written), right after its weights
    are saved, and in the middle of the search: ``qnas resume`` ends where the uninterrupted run does."""
    killed = tmp_path / "killed"
    marker = {"supercircuit training": "config.json", "supercircuit.pt written": "supercircuit.pt",
              "first checkpoint": CHECKPOINT}[moment]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "stdout", "wb") as stdout, open(tmp_path / "stderr", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "qiskit_qnas.cli", "search", *KILLED, "--quiet",
                                 "--out", str(killed)], stdout=stdout, stderr=stderr, env=env)
        try:
            deadline = time.monotonic() + 240
            while not (killed / marker).exists():
                assert proc.poll() is None, (tmp_path / "stderr").read_text()
                assert time.monotonic() < deadline, f"no {marker} within 240 s"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (killed / "config.json").exists()
    assert not (killed / "summary.json").exists() and not (killed / "result.json").exists()
    if moment == "first checkpoint":
        assert 1 <= read_checkpoint(killed).generation < 5  # killed in the middle of the search

    assert main(["resume", str(killed), "--quiet"]) == 0
    resumed_keys, resumed_front = front_of(killed)
    reference_keys, reference_front = front_of(uninterrupted)
    assert resumed_keys == reference_keys
    assert resumed_front == reference_front
    summaries = [json.loads((d / "summary.json").read_text()) for d in (killed, uninterrupted)]
    assert summaries[0]["chosen"] == summaries[1]["chosen"]
    assert summaries[0]["test_accuracy"] == summaries[1]["test_accuracy"]
    assert (killed / "model.pt").read_bytes() == (uninterrupted / "model.pt").read_bytes()


@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, 143, "terminated"),
                                               (signal.SIGINT, 130, "interrupted")])
def test_sigterm_and_ctrl_c_end_a_search_in_one_line_with_the_resume_command(tmp_path, signum, code, word):
    """SIGTERM ends a search as Ctrl-C does: one line with the resume command (no traceback), exit 143
    (130 for Ctrl-C), and the run resumes."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "stderr", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "qiskit_qnas.cli", "search", *KILLED, "--quiet",
                                 "--out", str(out)], stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        try:
            deadline = time.monotonic() + 240
            while not (out / "config.json").exists():
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
                time.sleep(0.02)
            proc.send_signal(signum)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = (tmp_path / "stderr").read_text().strip()
    assert proc.returncode == code and "Traceback" not in err, err
    assert err.splitlines()[-1] == f"qnas: {word}; continue with: qnas resume {out}"


# --- run directories: checked before writing, data only, one-line errors ------------------------------
def _hashes(directory):
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(directory).iterdir())}


def _copy_run(run, tmp_path, name="copy"):
    import shutil

    out, _ = run
    copy = tmp_path / name
    shutil.copytree(out, copy)
    return copy


def test_search_into_a_directory_of_other_settings_changes_no_byte(run, tmp_path, capsys):
    """A directory an API run wrote (no config.json) with other settings is refused untouched."""
    other = _copy_run(run, tmp_path)
    (other / "config.json").unlink()
    before = _hashes(other)
    changed = [a if a != "0" else "1" for a in TINY]  # --seed 1: other settings
    with pytest.raises(SystemExit) as info:
        main(["search", *changed, "--quiet", "--out", str(other)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("qnas: error: --out: ") and err.count("\n") == 1 and "another run" in err, err
    assert _hashes(other) == before


def test_memory_is_refused_before_any_directory(tmp_path, capsys):
    out = tmp_path / "big"
    with pytest.raises(SystemExit) as info:
        main(["search", "--dataset", "iris", "--qubits", "30:30", "--embeddings", "angle_y", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--qubits" in err and "30 qubits" in err and "bytes" in err, err
    assert not out.exists()
    with pytest.raises(SystemExit) as info:  # the cap: a 2-qubit search does not fit in 1 KiB
        main(["search", *TINY, "--max-memory", "1KiB", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "1024 bytes, max_memory" in err and not out.exists(), err


CORRUPT = {"empty": b"", "truncated": None, "foreign": b'["not", "a", "run"]'}


@pytest.mark.parametrize("name", ["supercircuit.pt", "config.json", "result.json", "summary.json", "model.pt",
                                  "best_circuit.qpy"])
@pytest.mark.parametrize("kind", list(CORRUPT))
def test_damaged_files_give_one_line_and_modify_nothing(run, tmp_path, capsys, name, kind):
    copy = _copy_run(run, tmp_path)
    if name not in ("result.json", "summary.json"):
        (copy / "summary.json").unlink()  # an unfinished run: resume reads every file
    content = (copy / name).read_bytes()
    (copy / name).write_bytes(content[: len(content) // 2] if CORRUPT[kind] is None else CORRUPT[kind])
    before = _hashes(copy)
    commands = [["resume", str(copy), "--quiet"]]
    if name in ("result.json", "summary.json"):
        commands.append(["report", str(copy)])
    if name == "result.json":
        commands.append(["export", str(copy), "--format", "qasm3", "--logical"])
    for command in commands:
        with pytest.raises(SystemExit) as info:
            main(command)
        assert info.value.code == 2, command
        err = capsys.readouterr().err
        assert err.startswith("qnas: error: ") and err.count("\n") == 1, err
        assert name in err and "fix:" in err, err
        assert _hashes(copy) == before, command


@pytest.mark.parametrize("name", ["supercircuit.pt", "model.pt", "best_circuit.qpy"])
def test_a_crafted_pickle_is_refused_without_running(run, tmp_path, capsys, name):
    import pickle

    copy = _copy_run(run, tmp_path)
    (copy / "summary.json").unlink()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (copy / name).write_bytes(pickle.dumps(Payload()))
    for command in (["resume", str(copy), "--quiet"], ["report", str(copy)],
                    ["export", str(copy), "--candidate", "0", "--logical", "--output", str(tmp_path / "c.qpy")]):
        with contextlib.suppress(SystemExit):
            main(command)
    assert not marker.exists()
    assert name in capsys.readouterr().err


def test_no_unrestricted_unpickling_on_run_directory_paths():
    import re

    package = Path(__file__).resolve().parent.parent / "qiskit_qnas"
    for path in package.rglob("*.py"):
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
    for path in [*(package / "cli").glob("*.py"), *(package / name for name in ("rundir.py", "estimator.py",
                                                                                 "result.py"))]:
        assert "pickle.load" not in path.read_text(), path


def test_resume_on_a_paid_backend_asks_first(run, tmp_path, capsys, monkeypatch):
    copy = _copy_run(run, tmp_path)
    (copy / "summary.json").unlink()
    config = json.loads((copy / "config.json").read_text())
    config["target"] = "ibm:ibm_torino"
    config["estimator"]["shots"] = 100
    config["estimator"]["fidelity"] = "target"  # every candidate on the device
    (copy / "config.json").write_text(json.dumps(config))
    before = _hashes(copy)

    import qiskit_qnas.cli.settings as settings

    def no_account(spec):
        raise AssertionError("the account was reached")

    monkeypatch.setattr(settings, "target_backend", no_account)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    with pytest.raises(SystemExit) as info:
        main(["resume", str(copy), "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "ibm:ibm_torino" in err and "--yes" in err and err.strip().splitlines()[-1].startswith("qnas: error:")
    # the checkpoint records both generations of the search: none remain to submit
    assert "0 generations remain, up to 0 jobs and 0 shots, about 0 QPU s" in err, err
    assert _hashes(copy) == before
    (copy / CHECKPOINT).unlink()  # interrupted before its first generation
    before = _hashes(copy)
    with pytest.raises(SystemExit) as info:
        main(["resume", str(copy), "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    # 2 generations x 6 candidates = 12 jobs; Iris 105 training samples -> 21 validation circuits x 100 shots,
    # each shot followed by 250 us, and 1 s a job: 12 x (21 x 100 x 250e-6 + 1) = 18.3 QPU s
    assert "2 generations remain, up to 12 jobs and 25200 shots, about 18 QPU s" in err, err
    assert _hashes(copy) == before


# --- run directories and paths the filesystem makes awkward ---------------------------------------------
def test_export_refuses_an_output_that_is_a_fifo_a_device_or_a_directory(run, tmp_path, capsys):
    import stat

    out, _ = run
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outputs = [str(fifo), str(tmp_path), ""]
    null = tmp_path / "null"  # a character device like /dev/null (making one needs root)
    with contextlib.suppress(PermissionError):
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        outputs.append(str(null))
    for output in outputs:
        with pytest.raises(SystemExit) as info:
            main(["export", str(out), "--logical", "--output", output])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and len(err.splitlines()) == 1 and "--output" in err, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not replaced
    assert not null.exists() or stat.S_ISCHR(os.lstat(null).st_mode)


def test_report_all_numbers_candidates_as_export_does(run, capsys):
    out, _ = run
    assert main(["report", str(out), "--all"]) == 0
    result = SearchResult.load(out)
    lines = capsys.readouterr().out.splitlines()[2:2 + len(result.candidates)]
    rows = [(line.split()[0].rstrip("*"), line.split()[1]) for line in lines]
    assert sorted(key for _, key in rows) == sorted(c.architecture.key for c in result.candidates)
    front = result.pareto_front
    numbered = [(int(number), key) for number, key in rows if number != "-"]
    assert sorted(number for number, _ in numbered) == list(range(len(front)))
    for number, key in numbered:
        assert front[number].architecture.key == key  # `qnas export --candidate number` writes this one


def test_a_directory_named_like_a_run_output_is_refused_before_work(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "pareto.png").mkdir(parents=True)
    with pytest.raises(SystemExit) as info:
        main(["search", *TINY, "--out", str(run_dir)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "pareto.png" in err and "not a file of a qnas run" in err
    assert sorted(p.name for p in run_dir.iterdir()) == ["pareto.png"]


def test_a_latin1_csv_is_refused_in_one_line(tmp_path, capsys):
    csv = tmp_path / "data.csv"
    csv.write_bytes("caf\xe9,label\n1,0\n2,1\n3,0\n4,1\n".encode("latin-1"))
    with pytest.raises(SystemExit) as info:
        main(["search", "--csv", str(csv), "--target-column", "label", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "not UTF-8" in err, err


def test_a_tilde_in_a_path_is_the_home_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["search", *TINY, "--population", "2", "--generations", "1", "--out=~/run", "--quiet"]) == 0
    assert (tmp_path / "run" / "result.json").is_file() and not (tmp_path / "~").exists()
    from qiskit_qnas import QNASEstimator, SearchSpace

    est = QNASEstimator(search_space=SearchSpace(qubits=(2, 2), layers=(1, 1)), qubit_budget=2, population_size=2,
                        n_generations=1, supercircuit_epochs=1, finetune_epochs=0, final_epochs=0, verbose=0,
                        random_state=0, checkpoint_dir="~/api")
    from sklearn.datasets import load_iris

    est.fit(*load_iris(return_X_y=True))
    assert (tmp_path / "api" / "result.json").is_file() and not (tmp_path / "~").exists()
    capsys.readouterr()


def test_strings_read_from_a_run_directory_reach_the_terminal_escaped(run, tmp_path, capsys):
    copy = _copy_run(run, tmp_path)
    summary = json.loads((copy / "summary.json").read_text())
    summary.update(test_accuracy_on_target=0.5, on_target="\x1b[2J\x1b[31mred")
    (copy / "summary.json").write_text(json.dumps(summary))
    result = json.loads((copy / "result.json").read_text())
    result["config"]["stopped"] = "budget\x07"
    (copy / "result.json").write_text(json.dumps(result))
    assert main(["report", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "test accuracy on \\x1b[2J\\x1b[31mred: 0.5000" in out and "stopped early: budget\\x07" in out


@pytest.mark.parametrize("damage", ["fifo", "dev-zero", "deep"])
def test_a_special_endless_or_absurdly_nested_result_is_refused_at_once(run, tmp_path, damage):
    """A FIFO (would hang), a link to /dev/zero (would read until memory runs out) or 100,000 nested
    brackets (RecursionError) in place of result.json: `report` and `export` exit 2 with one line."""
    copy = _copy_run(run, tmp_path)
    result = copy / "result.json"
    result.unlink()
    if damage == "fifo":
        os.mkfifo(result)
    elif damage == "dev-zero":
        result.symlink_to("/dev/zero")
    else:
        result.write_text("[" * 100_000 + "]" * 100_000)
    for command in (["report", str(copy)], ["export", str(copy), "--logical", "--output", str(tmp_path / "c.qpy")]):
        proc = subprocess.run([sys.executable, "-m", "qiskit_qnas.cli", *command], capture_output=True, text=True,
                              timeout=120)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and "result.json" in err, err


# --- the filesystem misbehaving: one line, exit 2, the run resumable -----------------------------------
def test_a_full_disk_ends_a_search_in_one_line_and_the_run_resumes_to_the_same_front(run, tmp_path, monkeypatch,
                                                                                     capsys):
    """ENOSPC injected at the third file the search writes (its first checkpoint): one line with the resume
    command, exit 2, no half-written file; once there is space, ``resume`` reaches the uninterrupted front."""
    import errno

    out = tmp_path / "full"
    real_fsync, calls = os.fsync, []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["search", *TINY, "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"qnas: error: No space left on device; continue with: qnas resume {out} once that is fixed\n"
    assert not list(out.glob(".*.tmp")) and not (out / "summary.json").exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(["resume", str(out), "--quiet"]) == 0
    assert front_of(out) == front_of(run[0])


@pytest.mark.parametrize("where", ["name too long", "under a regular file"])
def test_an_output_path_that_cannot_be_made_is_one_line(run, tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    out = tmp_path / ("x" * 300) if where == "name too long" else tmp_path / "file" / "run"
    for argv in (["search", *TINY, "--quiet", "--out", str(out)],
                 ["export", str(run[0]), "--logical", "--output", str(out / "c.qpy")]):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("qnas: ") and err.count("\n") == 1, err
        assert ("File name too long" if where == "name too long" else "Not a directory") in err, err


@pytest.fixture
def read_only(tmp_path):
    """``read_only(directory)``: the directory mounted read-only (bind mount) for the test; skipped where
    this process may not mount (root ignores file permissions, so a chmod would prove nothing)."""
    mounts = []

    def make(directory: Path) -> Path:
        view = tmp_path / "read-only"
        view.mkdir()
        if os.geteuid() != 0:
            pytest.skip("a read-only bind mount needs root (file permissions do not bind the owner's tests)")
        for command in (["mount", "--bind", str(directory), str(view)],
                        ["mount", "-o", "remount,ro,bind", str(view)]):
            if subprocess.run(command, capture_output=True).returncode != 0:
                if mounts:
                    subprocess.run(["umount", str(view)], check=False)
                pytest.skip(f"cannot mount here: {' '.join(command)}")
            mounts.append(view)
        return view

    yield make
    for view in mounts[:1]:
        subprocess.run(["umount", str(view)], check=False)


def test_report_of_a_finished_run_on_a_read_only_filesystem_prints_its_table(run, tmp_path, read_only, capsys):
    copy = _copy_run(run, tmp_path)
    (copy / "pareto.png").unlink()
    view = read_only(copy)
    assert main(["report", str(view)]) == 0
    captured = capsys.readouterr()
    assert "chosen:" in captured.out and "test accuracy:" in captured.out
    assert captured.err == f"qnas: pareto.png not written: {view} is read-only\n"
    with pytest.raises(SystemExit) as info:  # what must write (the score on a target) says why it cannot
        main(["report", str(view), "--on-target"])
    assert info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_while_the_library_loads_is_one_line(tmp_path, signum, code, word):
    """Half a second in, ``qnas`` is still importing torch and Qiskit (seconds): one line, the shell's
    exit code, no traceback, no run directory."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "qiskit_qnas.cli", "search", *TINY, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and err == f"qnas: {word}\n", err
    assert not out.exists()


@pytest.mark.parametrize("absurd", [{"n_layers": 1_000_000_000}, {"n_qubits": 20_000, "entangler": ["full"]}])
def test_an_absurdly_large_candidate_is_refused_under_a_memory_cap(run, tmp_path, absurd):
    """A 7 KB result.json whose chosen candidate has a billion layers, or 20,000 qubits all entangled, would
    have ``report`` / ``export --logical`` build it: refused at once, under a 1 GiB address-space cap."""
    import resource

    copy = _copy_run(run, tmp_path)
    result = json.loads((copy / "result.json").read_text())
    result["candidates"][result["chosen"]]["architecture"].update(absurd)
    (copy / "result.json").write_text(json.dumps(result))
    cap = 2**30

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    for command in (["report", str(copy)], ["export", str(copy), "--logical", "--output", str(tmp_path / "c.qpy")]):
        proc = subprocess.run([sys.executable, "-m", "qiskit_qnas.cli", *command], capture_output=True, text=True,
                              timeout=120, preexec_fn=limit_memory)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and "result.json" in err, err
        assert "n_layers" in err or "n_qubits" in err, err
    assert not (tmp_path / "c.qpy").exists()


def test_a_run_file_linked_out_of_its_directory_is_not_read(run, tmp_path, capsys):
    """A received directory whose summary.json links to a file of yours (a saved token, say) is refused
    before the file is read or quoted; a link inside the directory is followed."""
    copy = _copy_run(run, tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"test_accuracy": "token-abc123"}))
    (copy / "summary.json").rename(copy / "summary-kept.json")
    (copy / "summary.json").symlink_to(secret)
    with pytest.raises(SystemExit) as info:
        main(["report", str(copy)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "link out of the run directory" in err and "token" not in err, err
    (copy / "summary.json").unlink()
    (copy / "summary.json").symlink_to("summary-kept.json")
    assert main(["report", str(copy)]) == 0
