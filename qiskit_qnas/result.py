"""Search results: every evaluated candidate, the Pareto front, plots, save/load and circuit export."""

from __future__ import annotations

import itertools
import json
import math
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .cutting import CuttingCost
from .isa import to_isa
from .objective import CUTTING_OBJECTIVES as CUTTING_OBJECTIVES  # re-exported: where they were defined before
from .objective import OBJECTIVE_NAMES, Objective, as_objectives
from .objective import RUNTIME_OBJECTIVES as RUNTIME_OBJECTIVES
from .run_schema import MEASUREMENT, RESULT, RunFileError, check
from .runtime_proxy import RuntimeEstimate
from .space import Architecture, SearchSpace

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure
    from qiskit.circuit import QuantumCircuit

#: the largest run file read (a result of thousands of candidates is a few MB): a larger one is refused
MAX_RUN_FILE_BYTES = 256 * 2**20


def read_run_file(path: str | os.PathLike, explicit: bool = False) -> bytes:
    """The bytes of a run file, which may come from anyone: only a regular file (a FIFO, a device or a
    socket in its place, or a link to one, is refused rather than waited on or streamed) of at most
    :data:`MAX_RUN_FILE_BYTES`, and not a link out of its directory (which could make a command read,
    and quote in its error, a file of yours, like a saved token) unless the user named the file itself
    (``explicit``). Raises ``ValueError`` for what it refuses, ``OSError`` as reading does."""
    if not explicit and os.path.islink(path):
        directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if os.path.dirname(os.path.realpath(path)) != directory:
            raise ValueError("a link out of the run directory (never followed)")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file (a FIFO, device or socket is never read)")
        if info.st_size > MAX_RUN_FILE_BYTES:
            raise ValueError(f"larger than the {MAX_RUN_FILE_BYTES // 2**20} MiB a run file may have")
        with os.fdopen(os.dup(fd), "rb") as handle:  # its size, not the cap: read(n) allocates n bytes first
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:  # it grew while read
                data += handle.read(MAX_RUN_FILE_BYTES + 1 - len(data))
    finally:
        os.close(fd)
    if len(data) > MAX_RUN_FILE_BYTES:
        raise ValueError(f"larger than the {MAX_RUN_FILE_BYTES // 2**20} MiB a run file may have")
    return data


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: a reader (or a crash) never
    sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; keep the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Candidate:
    """One evaluated architecture: its three objectives and what they were computed from.

    Attributes:
        architecture: the candidate.
        val_error: ``1 - accuracy`` on the validation split, measured on the search's target.
        runtime_proxy: estimated seconds to evaluate the validation split on the target's backend
            (see :func:`qiskit_qnas.targets.ExecutionTarget.runtime_estimate`).
        n_subcircuits: devices of ``qubit_budget`` qubits the cut circuit's pieces need, pieces that fit
            together sharing one (1 if it fits; ``cutting.n_pieces`` counts the pieces).
        objectives: the minimised values the search used, in the order of
            ``SearchResult.objectives`` (by default ``(val_error, runtime_proxy, n_subcircuits)``).
        val_accuracy, val_loss: accuracy and mean cross-entropy on the validation split (the loss
            breaks ties between candidates of equal objectives when a model is selected).
        val_errors: the validation error of each evaluation of a re-evaluated candidate (the
            search's first; see :func:`qiskit_qnas.selection.confirm_leader`), whose ``val_error``,
            ``val_accuracy``, ``val_loss`` and error objective are then the means; empty for a
            candidate evaluated once.
        weights: the candidate's circuit weights after fine-tuning (ordered as ``arch.weight_params``).
        runtime, cutting: the ingredients, a :class:`~qiskit_qnas.runtime_proxy.RuntimeEstimate` and a
            :class:`~qiskit_qnas.cutting.CuttingCost` (None for a candidate built without them).
        measured_seconds, job_seconds: wall clock of the validation evaluation, and what the
            simulator or service reported as job time (None where it reports none).
        failed, error: a candidate whose evaluation failed carries the error and worst-case objectives.
        qpu_seconds: the device seconds accounted for what was submitted to a device (an IBM backend,
            or one in Runtime's local testing mode) to measure this candidate: the runtime estimate of
            every attempt, or the usage the service reported where that is more; 0 for measurements
            on a simulator or an emulator.
        measurements: where each validation measurement came from, in order: ``{"source": target
            name, "kind": "emulator" | "device" | "simulator", "val_error", "n_samples", "shots",
            "qpu_seconds"}``.
    """

    architecture: Architecture
    val_error: float
    runtime_proxy: float
    n_subcircuits: int
    objectives: tuple[float, ...]
    val_accuracy: float = float("nan")
    val_loss: float = float("nan")
    val_errors: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    runtime: RuntimeEstimate | None = None
    cutting: CuttingCost | None = None
    measured_seconds: float = float("nan")
    job_seconds: float | None = None
    finetune_seconds: float = 0.0
    attempts: int = 1
    generation: int = 0
    failed: bool = False
    error: str | None = None
    qpu_seconds: float = 0.0
    measurements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def device_error(self) -> float | None:
        """The validation error of the candidate's last measurement on a device (None if it has none)."""
        on_device = [m for m in self.measurements if m.get("kind") == "device"]
        return float(on_device[-1]["val_error"]) if on_device else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; :meth:`from_dict` reads it back to an equal candidate."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["architecture"] = self.architecture.to_dict()
        data["objectives"] = list(self.objectives)
        data["weights"] = list(self.weights)
        data["val_errors"] = list(self.val_errors)
        data["measurements"] = [dict(m) for m in self.measurements]
        data["runtime"] = None if self.runtime is None else self.runtime.to_dict()
        data["cutting"] = None if self.cutting is None else self.cutting.to_dict()
        for key in _UNMEASURED_IS_NAN:  # "not measured" is null in the file (JSON has no NaN)
            data[key] = None if math.isnan(data[key]) else data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["architecture"] = Architecture.from_dict(data["architecture"])
        data["objectives"] = tuple(float(v) for v in data["objectives"])
        data["val_errors"] = [float(v) for v in data.get("val_errors", ())]
        data["qpu_seconds"] = float(data.get("qpu_seconds", 0.0))
        data["measurements"] = [_measurement(m) for m in data.get("measurements", ())]
        if not data.get("failed") and not all(map(math.isfinite, data["objectives"])):
            raise RunFileError(f"objectives are {list(data['objectives'])}, expected finite numbers (only a failed "
                               "candidate scores Infinity)")
        for key in _UNMEASURED_IS_NAN:
            if data.get(key, 0.0) is None:
                data[key] = float("nan")
        # an empty dict is what results written before these were typed hold for "none"
        data["runtime"] = RuntimeEstimate.from_dict(data["runtime"]) if data.get("runtime") else None
        data["cutting"] = CuttingCost.from_dict(data["cutting"]) if data.get("cutting") else None
        return cls(**data)

    def summary(self) -> str:
        upper_bound = self.cutting is not None and not self.cutting.exact
        pooled = f" (mean of {len(self.val_errors)})" if self.val_errors else ""
        state = f"FAILED: {self.error}" if self.failed else (
            f"error {self.val_error:.4f}{pooled}  runtime {self.runtime_proxy:.4g} s  subcircuits {self.n_subcircuits}"
            f"{' (upper bound)' if upper_bound else ''}")
        return f"{self.architecture.key}: {state}"


#: the candidate's fields that are NaN when not measured
_UNMEASURED_IS_NAN = ("val_accuracy", "val_loss", "measured_seconds")

#: the fields of a measurement record (:attr:`Candidate.measurements`, :data:`qiskit_qnas.run_schema.MEASUREMENT`)
MEASUREMENT_FIELDS = ("source", "kind", "val_error", "n_samples", "shots", "qpu_seconds")


def _measurement(data: Any) -> dict[str, Any]:
    """A measurement record read back as data: checked against its schema, its known fields only."""
    check(MEASUREMENT, data)
    record = {key: data[key] for key in MEASUREMENT_FIELDS}
    record["val_error"], record["qpu_seconds"] = float(record["val_error"]), float(record["qpu_seconds"])
    return record


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` in every objective and better in one (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_mask(objectives: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an ``(N, M)`` array (minimisation)."""
    objectives = np.asarray(objectives, dtype=float)
    mask = np.zeros(len(objectives), dtype=bool)
    mask[NonDominatedSorting().do(objectives, only_non_dominated_front=True)] = True
    return mask


class SearchResult:
    """Every candidate a search evaluated, its Pareto front and the chosen one.

    Args:
        candidates: in evaluation order.
        objective_names: the objectives, in order: :class:`~qiskit_qnas.objective.Objective` values
            or their names (a name this version does not know is plotted under its name).
        chosen: index (into ``candidates``) of the selected candidate, or None.
        config: the settings of the search (JSON-serialisable).
        history: one dict per generation (evaluations so far, best error...).
    """

    def __init__(self, candidates: Sequence[Candidate], objective_names: Sequence[str | Objective] = OBJECTIVE_NAMES,
                 chosen: int | None = None, config: dict[str, Any] | None = None,
                 history: list[dict[str, Any]] | None = None):
        self.candidates = list(candidates)
        #: the objectives every candidate's ``objectives`` holds, in order
        self.objectives = as_objectives(objective_names)
        self.objective_names = tuple(o.name for o in self.objectives)
        self.chosen = chosen
        self.config = dict(config or {})
        self.history = list(history or [])
        ok = np.array([not c.failed for c in self.candidates], dtype=bool)
        self.pareto_mask = np.zeros(len(self.candidates), dtype=bool)
        if ok.any():
            self.pareto_mask[ok] = pareto_mask(np.array([c.objectives for c in self.candidates])[ok])

    # --- views ----------------------------------------------------------------------------------
    @property
    def pareto_front(self) -> list[Candidate]:
        """The non-dominated candidates (failed ones excluded), by increasing validation error."""
        front = [c for c, on in zip(self.candidates, self.pareto_mask) if on]
        return sorted(front, key=lambda c: (c.objectives, c.architecture))

    @property
    def qpu_seconds(self) -> float:
        """Device seconds accounted for everything the search submitted to a device (the sum of the
        candidates' :attr:`Candidate.qpu_seconds`; 0 for a search on simulators)."""
        return float(sum(c.qpu_seconds for c in self.candidates))

    @property
    def qpu_plan(self) -> dict[str, Any] | None:
        """The device-usage plan the search printed before any job
        (:meth:`qiskit_qnas.qpu_budget.QPUPlan.to_dict`), None for a search on simulators."""
        return self.config.get("qpu_plan")

    @property
    def best(self) -> Candidate | None:
        return None if self.chosen is None else self.candidates[self.chosen]

    def __len__(self) -> int:
        return len(self.candidates)

    def table(self, front_only: bool = True) -> list[dict[str, Any]]:
        """One flat row per candidate (the front, or every candidate)."""
        rows = []
        chosen = self.best
        items = self.pareto_front if front_only else self.candidates
        for c in items:
            a = c.architecture
            rows.append({
                "candidate": a.key, "n_qubits": a.n_qubits, "n_layers": a.n_layers, "embedding": a.embedding,
                "rotation": a.rotation, "entangler": "/".join(a.entangler),
                "entangle_range": "/".join(map(str, a.entangle_range)),
                "val_error": c.val_error, "val_evaluations": max(1, len(c.val_errors)),
                "runtime_proxy": c.runtime_proxy, "n_subcircuits": c.n_subcircuits,
                **{f"objective_{k}": v for k, v in zip(self.objective_names, c.objectives)},
                "depth": getattr(c.runtime, "depth", None),
                "n_two_qubit_gates": getattr(c.runtime, "n_two_qubit_gates", None),
                "n_subexperiments": getattr(c.cutting, "n_subexperiments", None),
                "sampling_overhead": getattr(c.cutting, "sampling_overhead", None),
                "cut_exact": getattr(c.cutting, "exact", None), "measured_seconds": c.measured_seconds,
                "qpu_seconds": c.qpu_seconds, "device_error": c.device_error,
                "generation": c.generation, "pareto": bool(self.pareto_mask[self.candidates.index(c)]),
                "chosen": c is chosen, "failed": c.failed, "error": c.error,
            })
        return rows

    def to_dataframe(self, front_only: bool = False) -> pandas.DataFrame:
        """Every candidate (or only the front) as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas ships with the test extra
            raise ImportError("to_dataframe() needs pandas: pip install pandas") from exc
        return pd.DataFrame(self.table(front_only=front_only))

    def format_table(self, front_only: bool = True) -> str:
        """A plain-text table of the front (or of every candidate) for terminals. The ``#`` column is a
        candidate's index in the front, the one :meth:`export` and ``qnas export --candidate`` take
        (``-`` for a candidate off the front); ``*`` marks the chosen one."""
        header = f"{'#':>3}  {'candidate':<44} {'val_error':>9} {'runtime_s':>10} {'subcirc':>7} {'depth':>6}"
        lines = [header, "-" * len(header)]
        front_index = {c.architecture.key: k for k, c in enumerate(self.pareto_front)}
        for row in self.table(front_only=front_only):
            mark = "*" if row["chosen"] else " "
            number = front_index.get(row["candidate"], "-")
            lines.append(f"{number:>3}{mark} {row['candidate']:<44} {row['val_error']:>9.4f} "
                         f"{row['runtime_proxy']:>10.4g} "
                         f"{row['n_subcircuits']:>7} {row['depth'] if row['depth'] is not None else '-':>6}")
        return "\n".join(lines)

    # --- plots ----------------------------------------------------------------------------------
    def plot_pareto(self, path: str | os.PathLike | None = None) -> Figure:
        """Every 2-D projection of the objectives (three for three objectives); the front
        highlighted, the chosen one starred and labelled by its architecture key. Each axis is drawn
        as its :class:`~qiskit_qnas.objective.Objective` says: its label and unit, integer ticks on a
        count, and a log10 objective (sub-experiments, overhead) as the count itself on a log axis.

        Returns the matplotlib ``Figure`` (also saved to ``path`` when given)."""
        n_objectives = len(self.objectives)
        if n_objectives < 2:
            raise ValueError(f"plot_pareto draws pairs of objectives; this result has {n_objectives}: "
                             f"{', '.join(self.objective_names) or 'none'}")
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        ok = [c for c in self.candidates if not c.failed]
        stored = np.array([c.objectives for c in ok], dtype=float).reshape(len(ok), n_objectives)
        front = np.array([self.pareto_mask[self.candidates.index(c)] for c in ok], dtype=bool)
        best = None if self.best is None or self.best.failed else self.best
        values = np.column_stack([o.drawn(stored[:, k]) for k, o in enumerate(self.objectives)])
        chosen = None if best is None else values[ok.index(best)]
        pairs = list(itertools.combinations(range(n_objectives), 2))
        fig, grid = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
        axes = list(grid[0])
        for ax, (i, j) in zip(axes, pairs):
            ax.scatter(values[~front, i], values[~front, j], s=18, c="lightgray", label="evaluated")
            ax.scatter(values[front, i], values[front, j], s=30, c="tab:blue", label="Pareto front")
            if best is not None and chosen is not None:
                ax.scatter([chosen[i]], [chosen[j]], s=160, marker="*", c="tab:red", label="chosen")
                ax.annotate(best.architecture.key, (chosen[i], chosen[j]), xytext=(7, 7),
                            textcoords="offset points", fontsize=8, color="tab:red")
            for k, axis in ((i, ax.xaxis), (j, ax.yaxis)):
                objective = self.objectives[k]
                axis.set_label_text(objective.axis_label)
                if objective.log10:
                    (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
                elif objective.count:
                    axis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[0].legend(loc="best", fontsize=8)
        fig.suptitle(f"QNAS: {len(ok)} candidates, {int(front.sum())} on the front")
        fig.tight_layout()
        if path is not None:
            import io

            buffer = io.BytesIO()
            fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
            atomic_write(path, buffer.getvalue())
        return fig

    # --- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"objective_names": list(self.objective_names), "chosen": self.chosen, "config": self.config,
                "history": self.history, "candidates": [c.to_dict() for c in self.candidates]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        """The result :meth:`to_dict` wrote, checked as data that may come from anyone
        (:data:`qiskit_qnas.run_schema.RESULT`, then indices, lengths and membership of the search
        space): raises :class:`~qiskit_qnas.run_schema.RunFileError` (a ValueError) naming the field."""
        check(RESULT, data)
        n_objectives, n_candidates = len(data["objective_names"]), len(data["candidates"])
        if data.get("chosen") is not None and data["chosen"] >= n_candidates:
            raise RunFileError(f"chosen is {data['chosen']}, expected an index below {n_candidates} (the candidates)")
        recorded = (data.get("config") or {}).get("search_space")
        space = None if recorded is None else SearchSpace.from_dict(recorded)
        candidates = [Candidate.from_dict(c) for c in data["candidates"]]
        for index, candidate in enumerate(candidates):
            where = f"candidates[{index}]"
            if len(candidate.objectives) != n_objectives:
                raise RunFileError(f"{where}.objectives has {len(candidate.objectives)} values, expected "
                                   f"{n_objectives} (objective_names)")
            if candidate.weights and len(candidate.weights) != candidate.architecture.n_weights:
                raise RunFileError(f"{where}.weights has {len(candidate.weights)} values, expected "
                                   f"{candidate.architecture.n_weights} ({candidate.architecture.key})")
            if space is not None and candidate.architecture not in space:
                raise RunFileError(f"{where}.architecture {candidate.architecture.key} is not in the search space")
        return cls(candidates, data["objective_names"], data.get("chosen"), data.get("config"), data.get("history"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``result.json`` (and ``candidates.csv``) into the directory ``path``, atomically."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write(path / "result.json", json.dumps(self.to_dict(), indent=1, default=json_default))
        rows = self.table(front_only=False)
        if rows:
            import csv
            import io

            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            atomic_write(path / "candidates.csv", buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchResult:
        """Read a result written by :meth:`save` (a directory or its ``result.json``)."""
        path = Path(path)
        explicit = not path.is_dir()  # a file the caller named may be a link anywhere
        if not explicit:
            path = path / "result.json"
        if not path.exists():
            raise FileNotFoundError(f"no search result at {path}")
        return cls.from_dict(json.loads(read_run_file(path, explicit).decode("utf-8")))

    # --- circuits ---------------------------------------------------------------------------------
    def circuit(self, index: int | None = None, bind_weights: bool = True) -> QuantumCircuit:
        """The logical circuit of front member ``index`` (default: the chosen candidate), with its
        fine-tuned weights bound; the inputs ``x`` stay parameters."""
        candidate = self._pick(index)
        qc = candidate.architecture.circuit()
        if bind_weights and candidate.weights:
            qc = qc.assign_parameters(dict(zip(candidate.architecture.weight_params, candidate.weights)))
        return qc

    def export(self, path: str | os.PathLike, index: int | None = None, format: str = "qpy",
               backend=None, optimization_level: int = 1, seed_transpiler: int = 0) -> Path:
        """Write the circuit of front member ``index`` (default: the chosen one) as QPY or OpenQASM 3.

        With ``backend`` it is the ISA circuit for that backend (:func:`qiskit_qnas.isa.to_isa`);
        without, the logical circuit."""
        if format not in ("qpy", "qasm3"):
            raise ValueError(f"invalid format={format!r}; allowed: qpy, qasm3")
        qc = self.circuit(index)
        if backend is not None:
            qc = to_isa(qc, backend, optimization_level, seed_transpiler)
        import io

        if format == "qpy":
            from qiskit import qpy

            buffer = io.BytesIO()
            qpy.dump(qc, buffer)
            atomic_write(path, buffer.getvalue())
        else:
            from qiskit import qasm3

            atomic_write(path, qasm3.dumps(qc))
        return Path(path)

    def _pick(self, index: int | None) -> Candidate:
        if index is None:
            if self.best is None:
                raise ValueError("this result has no chosen candidate; pass index=")
            return self.best
        front = self.pareto_front
        if not 0 <= index < len(front):
            raise ValueError(f"invalid candidate index={index!r}; allowed: 0..{len(front) - 1} (the Pareto front)")
        return front[index]

    def __repr__(self) -> str:
        return f"SearchResult({len(self.candidates)} candidates, {int(self.pareto_mask.sum())} on the front)"


def json_default(value: Any):
    """``json.dumps(default=...)`` for numpy values, search spaces and architectures (by key)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, SearchSpace):
        return value.to_dict()
    if isinstance(value, Architecture):
        return value.key
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
