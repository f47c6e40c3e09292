"""Run directories: what they hold, reading them as data only, and the check before anything is written.

A run directory (``QNASEstimator(checkpoint_dir=...)``, ``qnas search --out``) may come from someone
else, so its files are data: JSON is parsed, tensors are read with ``torch.load(weights_only=True)``
(an unpickler restricted to tensors and plain containers: it refuses any other object instead of
building it), QPY files must start with the QPY header, and pickles are never loaded.

Every file that a run's settings shape records the run's fingerprint (a hash of the data, the space,
the target, the seed and the training settings). :func:`check_run_directory` reads them all before
a run writes anything, and refuses a directory that is not new, empty or a run of exactly these
settings, or that holds a damaged or foreign file: one :class:`RunDirectoryError` naming the file
and the fix, with nothing modified.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import io
import json
import os
import pickle
import re
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .result import SearchResult, atomic_write, read_run_file
from .run_schema import RunFileError, Schema, check
from .search import CHECKPOINT, LEGACY_CHECKPOINT, read_checkpoint

CONFIG = "config.json"
SUMMARY = "summary.json"
RESULT = "result.json"
CANDIDATES = "candidates.csv"
PARETO = "pareto.png"
SUPERCIRCUIT = "supercircuit.pt"
MODEL = "model.pt"
BEST_CIRCUIT = "best_circuit.qpy"
#: the seed drawn for ``random_state=None``, so that the run can resume
SEED = "seed.json"
#: the advisory lock a run holds on its directory (:func:`run_directory_lock`): who holds it, as text
LOCK = ".qnas.lock"
#: every QPY file starts with these bytes (``qiskit.qpy`` file header)
QPY_MAGIC = b"QISKIT"

_COMPLETED = "it is written again when the run completes (`qnas resume DIR`, or fit with the same settings)"
#: what to do about a damaged or foreign file, by name
FIXES = {
    CONFIG: "it holds the run's settings and cannot be rebuilt: restore it, or start a new run in another directory",
    SUPERCIRCUIT: "delete it and the SuperCircuit is trained again",
    CHECKPOINT: "delete it and the search starts again from its first generation",
    SEED: "restore it, or pass its seed as random_state, or use another directory",
    RESULT: f"delete it: {_COMPLETED}",
    SUMMARY: f"delete it: {_COMPLETED}",
    MODEL: f"delete it: {_COMPLETED}",
    BEST_CIRCUIT: f"delete it: {_COMPLETED}",
}
#: files of a run that record no settings (outputs written again when the run completes)
_UNRECORDED = {CANDIDATES, PARETO}
_EXPORT = re.compile(r"^candidate_\d+\.(qpy|qasm)$")
_PARTIAL = re.compile(r"^\..+\.tmp$")  # what a run killed inside atomic_write leaves behind


class RunDirectoryError(ValueError):
    """A run directory (or one of its files) that a run must not read or write: the message is one
    line naming the file, the problem and the fix."""

    def __init__(self, path: Path, problem: str, fix: str):
        super().__init__(f"{path}: {problem}; fix: {fix}")
        self.path = Path(path)


def _fix(path: Path) -> str:
    return FIXES.get(path.name, "delete it, or use another directory")


def read_json(path: Path) -> Any:
    """The parsed JSON of a run file (a damaged or foreign file raises :class:`RunDirectoryError`)."""
    path = Path(path)
    try:
        data = read_run_file(path)
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(path, f"cannot be read as a run file ({exc})", _fix(path)) from None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        problem = "is empty" if not data else f"is not valid JSON ({' '.join(str(exc).split())[:200]})"
        raise RunDirectoryError(path, f"{problem}, it is damaged or not a file of a qnas run", _fix(path)) from None


def read_json_object(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise RunDirectoryError(path, "is not a JSON object of a qnas run", _fix(path))
    return data


def read_checked(path: Path, schema: Schema, what: str) -> dict[str, Any]:
    """A run file's JSON object that ``schema`` allows (:mod:`qiskit_qnas.run_schema`), else
    :class:`RunDirectoryError` naming the field."""
    data = read_json_object(path)
    try:
        check(schema, data)
    except RunFileError as exc:
        raise RunDirectoryError(path, f"is not {what} ({exc})", _fix(path)) from None
    return data


def read_tensors(path: Path) -> dict[str, Any]:
    """A dict saved with ``torch.save``, loaded with ``weights_only=True`` (tensors and plain
    containers only: a crafted pickle is refused, never run)."""
    path = Path(path)
    try:
        data = io.BytesIO(read_run_file(path))
        payload = torch.load(data, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError, zipfile.BadZipFile,
            AttributeError, TypeError, IndexError, KeyError) as exc:
        problem = "is empty" if path.exists() and path.stat().st_size == 0 else (
            f"is not a torch tensor file ({' '.join(str(exc).split())[:200]})")
        raise RunDirectoryError(path, f"{problem}, it is damaged or not a file of a qnas run", _fix(path)) from None
    if not isinstance(payload, dict):
        raise RunDirectoryError(path, "does not hold the tensors of a qnas run", _fix(path))
    return payload


def check_qpy(path: Path) -> None:
    """Refuse a file that does not start with the QPY header (``qiskit.qpy.load`` is never reached
    with anything else) or that ``qiskit.qpy.load`` cannot parse."""
    path = Path(path)
    try:
        data = read_run_file(path)
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(path, f"cannot be read ({exc})", _fix(path)) from None
    if data[:len(QPY_MAGIC)] != QPY_MAGIC:
        raise RunDirectoryError(path, "is not a QPY file, it is damaged or not a file of a qnas run", _fix(path))
    from qiskit import qpy  # QPY is a binary format of its own: qpy.load unpickles nothing

    try:
        qpy.load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a damaged file
        raise RunDirectoryError(path, f"is a damaged QPY file ({type(exc).__name__})", _fix(path)) from None


def recorded_fingerprint(path: Path) -> str | None:
    """The fingerprint a run file records (None: the file records none)."""
    name = path.name
    if name in (CONFIG, SUMMARY, CHECKPOINT):
        return read_json_object(path).get("fingerprint")
    if name == RESULT:
        config = read_json_object(path).get("config")
        return config.get("fingerprint") if isinstance(config, dict) else None
    if name in (SUPERCIRCUIT, MODEL):
        return read_tensors(path).get("fingerprint")
    return None


def read_seed(directory: Path) -> int | None:
    """The seed recorded in ``directory`` for ``random_state=None`` (None: none recorded)."""
    path = Path(directory) / SEED
    if not path.is_file():
        return None
    seed = read_json_object(path).get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise RunDirectoryError(path, f"records no valid seed ({seed!r})", _fix(path))
    return seed


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a run file's JSON atomically (values JSON does not know are written as their text)."""
    atomic_write(path, json.dumps(data, indent=1, default=str) + "\n")


def write_seed(directory: Path, seed: int) -> None:
    atomic_write(Path(directory) / SEED, json.dumps({"seed": int(seed)}) + "\n")


def check_run_directory(directory: str | Path, fingerprint: str, seed: int) -> None:
    """Raise :class:`RunDirectoryError` unless ``directory`` is missing, empty, or holds only files
    of the run of ``fingerprint`` (and ``seed``), all readable. Reads, never writes."""
    directory = Path(directory)
    if not directory.exists():
        return
    if not directory.is_dir():
        raise RunDirectoryError(directory, "is not a directory", "pass a directory path")
    allowed = "use a new or empty directory, or the settings of the run it holds (same data, space, target, seed"
    legacy = directory / LEGACY_CHECKPOINT
    if legacy.exists():  # refused first: the search reads no checkpoint beside it
        raise RunDirectoryError(legacy, "is a pickled search checkpoint of an older qiskit-qnas version, which is "
                                "never loaded (a pickle can run code)",
                                "delete it (the search starts again from its first generation), or use "
                                "another directory")
    for path in sorted(directory.iterdir()):
        name = path.name
        # outputs written again at the end: a directory in the way would fail the run only then
        if (_PARTIAL.match(name) or name in _UNRECORDED or _EXPORT.match(name) or name == LOCK) and not path.is_dir():
            continue
        if path.is_dir() or name not in FIXES:
            raise RunDirectoryError(path, "is not a file of a qnas run",
                                    "move it away, or use a new or empty directory")
        if name == SEED:
            recorded_seed = read_seed(directory)
            if recorded_seed != seed:
                raise RunDirectoryError(path, f"records the seed {recorded_seed} of another run (this one: {seed})",
                                        f"{allowed}; random_state=None resumes it)")
            continue
        if name == BEST_CIRCUIT:
            check_qpy(path)
            continue
        if name == CHECKPOINT:
            _check_checkpoint(directory)
        recorded = recorded_fingerprint(path)
        if recorded != fingerprint:
            what = "records no settings fingerprint" if recorded is None else f"records settings {recorded}"
            raise RunDirectoryError(path, f"{what}, not these ({fingerprint}): the directory holds another run",
                                    f"{allowed} and training settings)")


#: the lock files this process holds, so that a run holding its directory (the command line) can call
#: ``fit``, which takes the same lock, without waiting for itself; the outermost holder releases it
_HELD: set[Path] = set()
_HELD_GUARD = threading.Lock()


def _holder(fd: int) -> str:
    """Who a lock file says holds it (its first 200 bytes, printable characters only)."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", errors="replace")
    except OSError:
        return "another process"
    return "".join(c for c in text if c.isprintable()).strip() or "another process"


@contextlib.contextmanager
def run_directory_lock(directory: str | Path) -> Iterator[Path]:
    """Hold the advisory lock of the run directory ``directory`` (created if missing) while the block
    runs: ``fcntl.flock`` on ``directory/.qnas.lock``, which records the holder's pid, host and start.

    A second process (a ``fit``, ``qnas search``, ``resume`` or ``report`` of the same directory) gets
    :class:`RunDirectoryError` naming the holder, at once. The kernel releases the lock when its
    process ends, however it ends, so the lock of a dead process is taken over by the next run.
    Re-entrant within a process (the command line holds it around ``fit``, which takes it too)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory.resolve() / LOCK  # a link in place of the lock file is refused, not followed
    with _HELD_GUARD:
        held = path in _HELD
    if held:
        yield path
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise RunDirectoryError(path, f"cannot be opened as the run directory's lock ({exc.strerror})",
                                "remove what is in its place, or use another directory") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunDirectoryError(path, "is not a regular file", "remove it, or use another directory")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(directory, f"is in use by another qnas run ({_holder(fd)})",
                                    "wait for it to end or stop it, or use another directory") from None
        since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode(), 0)
        with _HELD_GUARD:
            _HELD.add(path)
        try:
            yield path
        finally:
            with _HELD_GUARD:
                _HELD.discard(path)
    finally:
        os.close(fd)  # releases the lock


def _check_checkpoint(directory: Path) -> None:
    """The search checkpoint read in full (format, version, population, random state), so that a
    damaged one is refused here rather than after the SuperCircuit's training (its fingerprint is
    compared with the directory's other files)."""
    try:
        read_checkpoint(directory)
    except ValueError as exc:
        path = directory / CHECKPOINT
        problem = str(exc).removeprefix(f"{path}: ").split("; delete it")[0]
        raise RunDirectoryError(path, problem, _fix(path)) from None


def load_result(directory: str | Path) -> SearchResult:
    """The :class:`~qiskit_qnas.result.SearchResult` of ``directory/result.json``, parsed as data
    (a damaged or foreign file raises :class:`RunDirectoryError`)."""
    path = Path(directory) / RESULT
    data = read_json_object(path)
    try:
        return SearchResult.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise RunDirectoryError(path, f"is not the search result of a qnas run ({' '.join(str(exc).split())[:200]})",
                                _fix(path)) from None


def completed_generations(directory: str | Path) -> int:
    """Generations the search checkpoint of ``directory`` records (0 when it has none it can read)."""
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        return 0
    history = read_json_object(path).get("history")
    return len(history) if isinstance(history, list) else 0
