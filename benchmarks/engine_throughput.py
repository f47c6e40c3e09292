"""Training throughput of the torch statevector engine against EstimatorQNN, and peak memory.

For (qubits, layers) in (4, 2), (8, 2), (10, 3), the HQNN ``arch.model(n, 10, hidden=0)`` (a Linear
pre-layer, the quantum layer through ``TorchConnector`` (``StatevectorConnector``, the subclass that
trains our engine by vector-Jacobian products) with input gradients, ``<Z_i>`` into
``Linear(n, 10)``) of ``Architecture(n, layers, "angle_y", "ry", "chain")`` is trained with Adam on
random batches of 32 (forward + backward + step). The same model is built twice, with
``engine="statevector"`` (our ``StatevectorQNN``) and ``engine="estimator"`` (qiskit-machine-learning's
``EstimatorQNN`` over ``StatevectorEstimator`` with ``default_precision=0``, parameter-shift
gradients), and timed in one run: ours for many steps, the baseline for a few (it takes seconds to
minutes per step). A plain gate-by-gate torch statevector of the same circuit (autograd) is the floor;
PennyLane rows (``lightning.qubit`` with adjoint and ``default.qubit`` with backprop, through
``qml.qnn.TorchLayer``) are added when the ``bench`` extra installed PennyLane. Then the peak
resident-memory increase of one forward
and backward pass at batch 256, 10 qubits, measured in a fresh subprocess.

    python benchmarks/engine_throughput.py [--quick] [--threads 1] [--out benchmarks/results/engine_throughput.md]

``--quick``: fewer steps, and the baseline at batch 4 (per-sample time is what is compared; the
baseline's cost is linear in the batch). Torch (and numpy's BLAS) run on ``--threads`` threads
(default 1: on a small shared machine, OpenMP workers waiting for a busy core dominate small models).
Throughput is reported per wall-clock second and per CPU-second (process time); the ratios per
CPU-second do not depend on what else the machine is running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch

from qiskit_qnas import Architecture

SIZES = ((4, 2), (8, 2), (10, 3))
N_CLASSES = 10
BATCH = 32
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "engine_throughput.md")


def architecture(n_qubits: int, n_layers: int) -> Architecture:
    return Architecture(n_qubits, n_layers, embedding="angle_y", rotation="ry", entangler="chain")


def build(arch: Architecture, engine: str) -> torch.nn.Module:
    return arch.model(n_features=arch.n_qubits, n_classes=N_CLASSES, hidden=0, dropout=0.0, engine=engine, seed=0)


def time_training(model: torch.nn.Module, n_features: int, batch: int, min_steps: int, min_seconds: float,
                  warmup: int = 1, warmup_batch: int | None = None) -> dict:
    """Samples per second of forward + cross-entropy backward + Adam step on random batches."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(size: int) -> None:
        x = torch.randn(size, n_features, generator=generator)
        y = torch.randint(0, N_CLASSES, (size,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    model.train()
    for _ in range(warmup):
        step(warmup_batch or batch)
    steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while steps < min_steps or time.perf_counter() - start < min_seconds:
        step(batch)
        steps += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"samples_per_s": steps * batch / elapsed, "samples_per_cpu_s": steps * batch / cpu,
            "steps": steps, "batch": batch, "seconds": elapsed, "cpu_seconds": cpu}


class PlainTorchStatevector(torch.nn.Module):
    """The issue's floor: a plain gate-by-gate torch statevector of the same circuit, trained by
    autograd. States are real float64 tensors (B, 2, ..., 2), one axis per qubit (the circuit has only
    RY and CX, so real arithmetic is exact and already the fastest plain choice); RY mixes the two
    slices of its axis, CX flips the target axis of the control's 1-slice."""

    def __init__(self, n_qubits: int, n_layers: int):
        super().__init__()
        self.n_qubits, self.n_layers = n_qubits, n_layers
        self.weights = torch.nn.Parameter(torch.rand(n_layers, n_qubits, dtype=torch.float64) * 2 * torch.pi)

    @staticmethod
    def _ry(psi, theta, q):
        c, s = torch.cos(theta / 2), torch.sin(theta / 2)
        if c.dim():  # one angle per sample
            c, s = (t.reshape(-1, *[1] * (psi.dim() - 2)) for t in (c, s))
        a0, a1 = psi.select(q + 1, 0), psi.select(q + 1, 1)
        return torch.stack((c * a0 - s * a1, s * a0 + c * a1), q + 1)

    @staticmethod
    def _cx(psi, control, target):
        a0, a1 = psi.select(control + 1, 0), psi.select(control + 1, 1)
        axis = target + 1 if target < control else target  # the target's axis once the control's is gone
        return torch.stack((a0, a1.flip(axis)), control + 1)

    def forward(self, angles):
        n, batch = self.n_qubits, angles.shape[0]
        psi = torch.zeros(batch, 2**n, dtype=torch.float64)
        psi[:, 0] = 1.0
        psi = psi.reshape(batch, *[2] * n)
        angles = angles.to(torch.float64)
        for q in range(n):
            psi = self._ry(psi, angles[:, q], q)
        for layer in range(self.n_layers):
            for q in range(n):
                psi = self._ry(psi, self.weights[layer, q], q)
            for q in range(n - 1):
                psi = self._cx(psi, q, q + 1)
        probs = psi * psi
        return torch.stack([probs.select(q + 1, 0).reshape(batch, -1).sum(1)
                            - probs.select(q + 1, 1).reshape(batch, -1).sum(1) for q in range(n)], 1)


class WrappedLayer(torch.nn.Module):
    """The benchmark's HQNN around any quantum layer: Linear pre-layer, pi * tanh angles, Linear head."""

    def __init__(self, n_qubits: int, quantum: torch.nn.Module):
        super().__init__()
        self.pre = torch.nn.Linear(n_qubits, n_qubits)
        self.quantum = quantum
        self.head = torch.nn.Linear(n_qubits, N_CLASSES)

    def forward(self, x):
        return self.head(self.quantum(torch.pi * torch.tanh(self.pre(x))).float())


#: PennyLane devices compared (device, differentiation method), as in the issue's table
PENNYLANE = (("lightning.qubit", "adjoint"), ("default.qubit", "backprop"))


def pennylane_model(n_qubits: int, n_layers: int, device_name: str, diff_method: str):
    """The same HQNN with the quantum layer in PennyLane on ``device_name``, or None."""
    try:
        import pennylane as qml

        device = qml.device(device_name, wires=n_qubits)
    except Exception:  # noqa: BLE001 - PennyLane or this device not installed
        return None

    @qml.qnode(device, interface="torch", diff_method=diff_method)
    def circuit(inputs, weights):
        for i in range(n_qubits):
            qml.RY(inputs[..., i], wires=i)
        for layer in range(n_layers):
            for i in range(n_qubits):
                qml.RY(weights[layer, i], wires=i)
            for i in range(n_qubits - 1):
                qml.CNOT(wires=[i, i + 1])
        return [qml.expval(qml.PauliZ(i)) for i in range(n_qubits)]

    return WrappedLayer(n_qubits, qml.qnn.TorchLayer(circuit, {"weights": (n_layers, n_qubits)}))


def table_row(n: int, layers: int, name: str, result: dict, base: dict) -> list:
    return [n, layers, name, f"{result['samples_per_s']:.4g}", f"{result['samples_per_cpu_s']:.4g}",
            f"{1e3 * result['seconds'] / result['steps']:.4g} ({result['batch']})", result["steps"],
            f"{result['samples_per_s'] / base['samples_per_s']:.0f}x",
            f"{result['samples_per_cpu_s'] / base['samples_per_cpu_s']:.0f}x"]


MEMORY_SCRIPT = """
import json, resource, sys, time
import torch
torch.set_num_threads({threads})
sys.path.insert(0, {root!r})
from qiskit_qnas import Architecture
arch = Architecture(10, 3, embedding="angle_y", rotation="ry", entangler="chain")
model = arch.model(n_features=10, n_classes=10, hidden=0, dropout=0.0, seed=0)
x, y = torch.randn(256, 10), torch.randint(0, 10, (256,))
small_x = torch.randn(2, 10)
torch.nn.functional.cross_entropy(model(small_x), y[:2]).backward()  # import and compile lazily-built parts
model.zero_grad()
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
before = rss()
start = time.perf_counter()
torch.nn.functional.cross_entropy(model(x), y).backward()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({{"before_kib": before, "peak_kib": peak, "seconds": seconds}}))
"""


def peak_memory(threads: int) -> dict:
    """Peak RSS increase of one forward + backward at batch 256, 10 qubits, in a fresh process."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    code = MEMORY_SCRIPT.format(threads=threads, root=root)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["delta_mib"] = (data["peak_kib"] - data["before_kib"]) / 1024
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (baseline at batch 4, few steps)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", default=None,
                        help=f"write the markdown table here (default {os.path.relpath(DEFAULT_OUT)}, "
                             "not written with --quick unless given)")
    parser.add_argument("--sizes", default=None, help="e.g. 4x2,8x2 (default 4x2,8x2,10x3)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:  # numpy's BLAS (StatevectorEstimator) on as many threads as torch
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass
    sizes = SIZES if not args.sizes else tuple(tuple(int(v) for v in s.split("x")) for s in args.sizes.split(","))
    out_path = args.out or (None if args.quick else DEFAULT_OUT)

    # (ours: min steps, min seconds), (baseline: steps, batch) per number of qubits
    ours_budget = (5, 1.0) if args.quick else (30, 5.0)
    baseline_steps = (lambda n: (1, 4)) if args.quick else (lambda n: (3 if n <= 4 else 2 if n <= 8 else 1, BATCH))

    header = ["qubits", "layers", "engine", "samples/s (wall)", "samples per CPU-s", "ms/step (batch)", "steps",
              "vs EstimatorQNN (wall)", "vs EstimatorQNN (CPU)"]
    rows, others, versus_fastest = [], {}, []
    print(" | ".join(header), flush=True)

    def emit(row):
        rows.append(row)
        print(" | ".join(str(v) for v in row), flush=True)

    for n, layers in sizes:
        arch = architecture(n, layers)
        ours = time_training(build(arch, "statevector"), n, BATCH, *ours_budget, warmup=3)
        steps, batch = baseline_steps(n)
        base = time_training(build(arch, "estimator"), n, batch, steps, 0.0, warmup=1, warmup_batch=1)
        emit(table_row(n, layers, "StatevectorQNN (ours)", ours, base))
        emit(table_row(n, layers, "EstimatorQNN + StatevectorEstimator", base, base))
        plain = time_training(WrappedLayer(n, PlainTorchStatevector(n, layers)), n, BATCH, *ours_budget, warmup=2)
        emit(table_row(n, layers, "plain torch statevector (gate by gate, autograd)", plain, base))
        others[(n, layers)] = {"plain torch statevector": plain}
        for device_name, diff_method in PENNYLANE:
            model = pennylane_model(n, layers, device_name, diff_method)
            if model is not None:
                pl = time_training(model, n, BATCH, *ours_budget, warmup=2)
                emit(table_row(n, layers, f"PennyLane {device_name} ({diff_method})", pl, base))
                others[(n, layers)][f"PennyLane {device_name}"] = pl
        fastest = max(others[(n, layers)].items(), key=lambda item: item[1]["samples_per_cpu_s"])
        versus_fastest.append(f"{n}x{layers}: {ours['samples_per_cpu_s'] / fastest[1]['samples_per_cpu_s']:.2f}x "
                              f"the fastest other ({fastest[0]})")
    try:
        import pennylane

        pennylane_note = (f"PennyLane {pennylane.__version__} rows: " + ", ".join(
            f"`{d}` with {m}" for d, m in PENNYLANE) + ", through `qml.qnn.TorchLayer` (same pre-layer and head).")
    except ImportError:
        pennylane_note = "PennyLane is not installed: no PennyLane rows (`pip install pennylane` to add them)."

    memory = peak_memory(args.threads)
    memory_line = (f"Peak memory of one forward + backward at batch 256, 10 qubits, 3 layers (fresh process, "
                   f"resident-set increase): {memory['delta_mib']:.0f} MiB "
                   f"({'within' if memory['delta_mib'] < 1024 else 'OVER'} the 1 GiB limit), "
                   f"{memory['seconds']:.2f} s.")
    print(memory_line)
    print(pennylane_note)
    fastest_line = ("Ours per CPU-second against the fastest other tool at each size, same run: "
                    + "; ".join(versus_fastest) + " (target: above 1 at every size).")
    print(fastest_line)

    if out_path:
        ratios = [f"{r[0]}x{r[1]}: {r[-1]} ({r[-2]} wall-clock)" for r in rows if r[2].startswith("StatevectorQNN")]
        lines = [
            "# Engine training throughput",
            "",
            "Generated by `python benchmarks/engine_throughput.py"
            + (" --quick" if args.quick else "") + f" --threads {args.threads}`"
            + f" on {platform.machine()} / {platform.python_version()}, {os.cpu_count()} CPUs"
            + f" (load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}),"
            + f" torch {torch.__version__}, qiskit {version('qiskit')},"
            + f" qiskit-machine-learning {version('qiskit-machine-learning')}.",
            "",
            "HQNN `arch.model(n, 10, hidden=0)` of `Architecture(n, layers, 'angle_y', 'ry', 'chain')`: Linear"
            " pre-layer, quantum layer through `TorchConnector` (`StatevectorConnector`: vector-Jacobian"
            " products from the adjoint sweep; input gradients on), `<Z_i>` into `Linear(n, 10)`; Adam on"
            " random batches, forward + backward + step. EstimatorQNN runs over `StatevectorEstimator` with"
            " `default_precision=0` (parameter-shift gradients), timed for a few steps only; ours for many."
            " The other rows wrap their quantum layer in the same Linear pre-layer, `pi * tanh` angles and"
            " head; the plain torch statevector is `PlainTorchStatevector` in this file (real float64"
            " states, one tensor axis per qubit, autograd).",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(str(v) for v in row) + " |" for row in rows),
            "",
            f"Speed-up of the statevector engine over EstimatorQNN per CPU-second: {'; '.join(ratios)}"
            f" (target: at least 1000x at every size).",
            "",
            fastest_line,
            "",
            "Samples per CPU-second (process time, one torch and one BLAS thread) are the robust"
            " comparison on a shared machine: wall-clock rates of the two engines are measured minutes"
            " apart and move with the load of other jobs.",
            "",
            memory_line,
            "",
            pennylane_note,
            "",
        ]
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with open(out_path, "w") as handle:
            handle.write("\n".join(lines))
        print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
