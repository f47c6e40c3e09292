"""A received run directory is data: every JSON file of a finished run, mutated (truncated, wrong types,
NaN / Infinity, huge numbers, missing keys, absurd nesting), makes ``qnas report``, ``resume`` and
``export`` end with one line naming the file and exit code 2 where they read it, never a traceback,
and changes nothing in the directory."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qiskit_qnas.cli import main
from qiskit_qnas.rundir import LOCK

TINY = ["--dataset", "iris", "--qubits", "2:3", "--layers", "1:2", "--population", "4", "--generations", "2",
        "--supercircuit-epochs", "2", "--finetune-epochs", "1", "--qubit-budget", "2", "--seed", "0"]
#: what reads each file (a command that does not read a file may succeed whatever it holds)
READERS = {"result.json": ("report", "resume", "export"), "summary.json": ("report", "resume"),
           "config.json": ("resume",), "checkpoint.json": ("resume",)}
#: keys a file written by an earlier version may lack (read with a default): their absence is not damage
OPTIONAL = {"qpu_seconds", "measurements", "val_errors", "history", "config", "chosen", "stopped", "qpu_plan",
            "timings", "runtime", "cutting", "learning_rate", "fidelity", "max_qpu_seconds", "test_accuracy_on_target",
            "on_target", "dataset", "version", "created", "command", "command_line", "finished", "job_seconds",
            "finetune_seconds", "attempts", "generation", "failed", "error", "measured_seconds", "val_accuracy",
            "val_loss", "weights", "params", "runtime_options", "classes", "n_features", "seed", "search_space",
            "target", "fingerprint", "learning_rates", "first_step", "first_step_seconds", "n_train", "n_test",
            "chosen_index", "chosen_objectives", "n_candidates", "front_size", "executions_per_circuit",
            "calibration_executions", "rep_delay", "n_jobs", "job_overhead", "search_overhead"}
#: settings as a search recorded them, for the user (any JSON scalar; nothing is built from them): there
#: a NaN or an infinity is damage, another value is not
RECORDS = ("config/params/", "config/classes/", "config/runtime_options/")
#: objects of any keys (one entry each): an entry's absence is not damage
MAPPINGS = {"timings", "chosen_objectives", "runtime_options", "params", "gene", "estimator"}
#: values that are not damage: a failed population member scores Infinity, a boundary one's crowding
#: distance is Infinity, and any 128-bit integer is a PCG64 state
LEGITIMATE = (r"population/\d+/objectives/\d+: Infinity", r"population/\d+/crowding: Infinity",
              r"random_state/state/\w+: huge")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["search", *TINY, "--out", str(out), "--quiet"]) == 0
    return out


def _paths(data: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every container and leaf of ``data`` (a list by its first and last item)."""
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*path, key))
    elif isinstance(data, list) and data:
        for index in sorted({0, len(data) - 1}):
            yield from _paths(data[index], (*path, index))


def _get(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


def _set(data: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "x"
    if isinstance(value, (int, float)):
        return "x"
    if isinstance(value, str):
        return 12345
    if value is None:
        return {"x": [1]}
    return "x"  # a list or an object


def mutations(text: str) -> Iterator[tuple[str, str, bool]]:
    """(description, new text, whether it is damage) for every mutation of a JSON file's ``text``."""
    yield "truncated", text[: len(text) // 2], True
    yield "nested", "[" * 100_000 + "]" * 100_000, True
    data = json.loads(text)
    for path in _paths(data):
        value = _get(data, path)
        name = "/".join(map(str, path)) or "(root)"
        record = name.startswith(RECORDS)
        mutated = [("wrong type", _wrong_type(value), not record)]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            mutated += [("NaN", math.nan, True), ("Infinity", math.inf, True),
                        ("huge", 10**30 if isinstance(value, int) else 1e300, not record)]
        for kind, new, damage in mutated:
            description = f"{name}: {kind}"
            damage = damage and not any(re.fullmatch(pattern, description) for pattern in LEGITIMATE)
            yield description, json.dumps(_set(json.loads(text), path, new)), damage
        if path and isinstance(path[-1], str):
            copy = json.loads(text)
            del _get(copy, path[:-1])[path[-1]]
            free = path[-1] in OPTIONAL or (len(path) > 1 and path[-2] in MAPPINGS)
            yield f"{name}: missing", json.dumps(copy), not (free or record)


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.name != LOCK}  # the lock file records its holder: it is the lock's own state


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


@pytest.mark.parametrize("name", list(READERS))
def test_every_mutation_of_a_run_file_is_refused_in_one_line(finished, tmp_path, name):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    original = (copy / name).read_text()
    out = tmp_path / "exported.qasm"
    commands = {"report": ["report", str(copy), "--all"], "resume": ["resume", str(copy), "--quiet"],
                "export": ["export", str(copy), "--logical", "--format", "qasm3", "--output", str(out)]}
    problems = []
    n = 0
    for description, text, damage in mutations(original):
        n += 1
        (copy / name).write_text(text)
        before = _hashes(copy)
        for command, argv in commands.items():
            try:
                code, err = _run(argv)
            except Exception as exc:  # noqa: BLE001 - a traceback is what this test looks for
                problems.append(f"{description}: {command}: {type(exc).__name__}: {exc}"[:300])
                continue
            if damage and command in READERS[name]:
                if code != 2 or err.count("\n") != 1 or name not in err:
                    problems.append(f"{description}: {command}: exit {code}: {err.strip()[:200]}")
            elif code not in (0, 2):
                problems.append(f"{description}: {command}: exit {code}: {err.strip()[:200]}")
            if _hashes(copy) != before:
                problems.append(f"{description}: {command}: changed the directory")
                shutil.rmtree(copy)
                shutil.copytree(finished, copy)
                (copy / name).write_text(text)
    assert n > 20
    assert not problems, f"{len(problems)} of {n} mutations:\n" + "\n".join(problems[:60])


def test_a_result_whose_candidates_all_failed_saves_and_loads(tmp_path):
    """What a search writes when a whole generation fails (Infinity objectives, no best error, nothing
    measured) is what the schema allows: nothing a search writes is refused when read back."""
    from qiskit_qnas import Architecture, Candidate, SearchResult
    from qiskit_qnas.objective import DEFAULT_OBJECTIVES

    failed = Candidate(Architecture(2, 1), val_error=1.0, runtime_proxy=1.5, n_subcircuits=1, failed=True,
                       objectives=tuple(o.failed_value for o in DEFAULT_OBJECTIVES), error="backend refused")
    history = [{"generation": 1, "n_evaluated": 1, "n_new": 1, "best_val_error": None, "n_failed": 1}]
    SearchResult([failed], history=history).save(tmp_path)
    loaded = SearchResult.load(tmp_path)
    assert loaded.candidates[0].failed and loaded.candidates[0].objectives == failed.objectives
    assert math.isnan(loaded.candidates[0].val_accuracy) and loaded.history == history
