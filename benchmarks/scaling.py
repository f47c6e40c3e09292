"""Scaling out: a generation's wall time with 1 and 2 local Dask workers, the serial part, and torch
threads for SuperCircuit training.

    python benchmarks/scaling.py [--workers 1 2] [--population 8] [--finetune-epochs 4] [--seed 0]

Workload: scikit-learn digits (1797 x 64, standardised, stratified 80/20 split), the space
``SearchSpace(qubits=(6, 8), layers=(1, 3), embeddings=("angle_x", "angle_y"))``, qubit budget 4,
``finetune_epochs`` 4, batch 16: candidate evaluation (fine-tuning, cut finding, the runtime
proxy's transpilation, validation) dominates.

What is timed is the search phase of one generation: :func:`qiskit_qnas.parallel.evaluate_generation`
on a fixed list of ``population`` distinct architectures with a prepared ``EvaluationContext``
(the SuperCircuit is trained beforehand). Every measurement is cold for its architectures (a search
evaluates each architecture once) but warm for the processes: before the timed call every worker has
imported everything and evaluated a warm-up architecture (not in the timed list), and the serial run
did the same in this process. The candidates returned by every run are compared with the serial ones
(all fields but wall-clock timings).

Model of a generation on ``w`` workers::

    T(w) = T_serial + makespan_w(t_1..t_n) + overhead(w)
    makespan_w >= max(sum(t_i) / w, max(t_i))

``T_serial`` is the main process's per-generation work (NSGA-II ask/tell, checkpoint, pickling the
context), ``t_i`` the serial cost of candidate i, ``overhead`` scatter + scheduling + result transfer
(measured as the wall time minus the busiest worker's compute time from Dask's task stream). The
task stream also tells how much slower the workers computed than the serial run did (other load on
shared cores), which is reported beside the speed-up.
The SuperCircuit is trained once per search before the first generation, in the main process: it is
the search's serial part (Amdahl), reported beside.

Writes ``benchmarks/results/scaling.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from qiskit_qnas import SearchSpace
from qiskit_qnas.objectives import EvaluationContext, evaluate_candidate
from qiskit_qnas.parallel import dask_executor, evaluate_generation
from qiskit_qnas.result import Candidate
from qiskit_qnas.search import run_nsga2
from qiskit_qnas.supercircuit import SuperCircuit, train_supercircuit
from qiskit_qnas.targets import resolve_target

SPACE = SearchSpace(qubits=(6, 8), layers=(1, 3), embeddings=("angle_x", "angle_y"))
TIMING = ("measured_seconds", "job_seconds", "finetune_seconds")


def load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def fingerprint(candidates: list[Candidate]) -> list[dict]:
    rows = []
    for c in candidates:
        data = c.to_dict()
        for key in TIMING:
            data.pop(key)
        data["cutting"] = {k: v for k, v in data["cutting"].items() if k != "seconds"}
        rows.append(data)
    return rows


def compare(found: list[dict], reference: list[dict]) -> tuple[bool, int, list[str]]:
    """(identical apart from cut searches stopped by their wall-clock deadline, how many such, problems).

    ``cutting_cost`` bounds its search by a backjump budget *and* a wall-clock deadline; on a loaded
    machine the deadline can bind in one run and not in the other, and the cuts found differ. That
    is the cut finder's timing, not the parallel evaluation's; anything else that differs is a bug."""
    deadline, problems = 0, []
    for a, b in zip(found, reference):
        fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if not fields:
            continue
        stopped = {a["cutting"].get("stopped_by"), b["cutting"].get("stopped_by")}
        if set(fields) <= {"cutting", "n_subcircuits", "objectives"} and "time_limit" in stopped \
                and a["objectives"][:2] == b["objectives"][:2]:
            deadline += 1
        else:
            problems.append(f"{a['architecture']}: {fields}")
    if len(found) != len(reference):
        problems.append(f"{len(found)} candidates, serial {len(reference)}")
    return not problems, deadline, problems


def distinct_archs(space: SearchSpace, seed: int, n: int, exclude=()) -> list:
    rng, archs = np.random.default_rng(seed), []
    while len(archs) < n:
        arch = space.sample(rng)
        if arch not in archs and arch not in exclude:
            archs.append(arch)
    return archs


def makespan(times: list[float], workers: int) -> float:
    """List scheduling in submission order: each task goes to the first free worker."""
    free = [0.0] * workers
    for t in times:
        heapq.heappush(free, heapq.heappop(free) + t)
    return max(free)


def prepare(seed: int, finetune_epochs: int, supercircuit_epochs: int) -> tuple[EvaluationContext, float]:
    X, y = load_digits(return_X_y=True)
    std = X.std(0)
    X = ((X - X.mean(0)) / np.where(std > 0, std, 1.0)).astype(np.float32)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    supercircuit = SuperCircuit(SPACE, X.shape[1], 10, seed=seed)
    started = time.perf_counter()
    train_supercircuit(supercircuit, X_train, y_train, epochs=supercircuit_epochs, batch_size=16, lr=0.005,
                       seed=seed)
    per_epoch = (time.perf_counter() - started) / supercircuit_epochs
    context = EvaluationContext(supercircuit=supercircuit, X_train=X_train, y_train=y_train, X_val=X_val,
                                y_val=y_val, target=resolve_target(None), qubit_budget=4,
                                finetune_epochs=finetune_epochs, batch_size=16, learning_rate=0.005, seed=seed)
    return context, per_epoch


def nsga2_seconds_per_generation(population: int, generations: int = 6) -> tuple[float, float]:
    """NSGA-II ask/tell + bookkeeping per generation with free evaluations, without and with a
    checkpoint written every generation."""

    def evaluate(archs, generation):
        out = []
        for a in archs:
            h = (hash(a.key) % 1000) / 1000
            out.append(Candidate(architecture=a, val_error=h, runtime_proxy=1 + a.n_qubits * a.n_layers,
                                 n_subcircuits=1 + (a.n_qubits > 4), objectives=(h, 1.0 + a.n_qubits * a.n_layers,
                                                                                 1.0 + (a.n_qubits > 4))))
        return out

    results = []
    for checkpoint in (False, True):
        with tempfile.TemporaryDirectory() as directory:
            started = time.perf_counter()
            run_nsga2(SPACE, evaluate, population_size=population, n_generations=generations, seed=0,
                      checkpoint_dir=directory if checkpoint else None)
            results.append((time.perf_counter() - started) / generations)
    return results[0], results[1]


def _warm_up(blob: bytes, arch) -> int:
    """Run on every worker before timing: imports, the reference backend, torch's first calls."""
    evaluate_candidate(arch, pickle.loads(blob), 0)
    return os.getpid()


def run_serial(archs, context) -> tuple[float, list[float], list[Candidate]]:
    """The generation in this process, one candidate at a time (to get every t_i)."""
    times, found = [], []
    for arch in archs:
        started = time.perf_counter()
        found += evaluate_generation(None, [arch], context, 1)
        times.append(time.perf_counter() - started)
    return sum(times), times, found


def run_dask(executor, archs, context) -> tuple[float, list[Candidate], float, float]:
    """Wall time of the generation, its candidates, and from Dask's task stream the compute time of
    the busiest worker and of all workers together."""
    from dask.distributed import get_task_stream

    with get_task_stream(executor._client) as stream:
        started = time.perf_counter()
        found = evaluate_generation(executor, archs, context, 1)
        wall = time.perf_counter() - started
    busy: dict[str, float] = {}
    for task in stream.data:
        for part in task["startstops"]:
            if part["action"] == "compute":
                busy[task["worker"]] = busy.get(task["worker"], 0.0) + part["stop"] - part["start"]
    return wall, found, max(busy.values(), default=0.0), sum(busy.values())


def thread_timings(qubits=(8, 10, 12), batch: int = 64, repeats: int = 5) -> list[dict]:
    """One SuperCircuit training step (forward + backward, the largest member) at 1 and 2 torch threads."""
    rows = []
    before = torch.get_num_threads()
    try:
        for n in qubits:
            space = SearchSpace(qubits=(2, n), layers=(1, 2), embeddings=("angle_y",), rotations=("rxryrz",))
            supercircuit = SuperCircuit(space, 64, 10, seed=0)
            arch = space.largest(np.random.default_rng(0))
            rng = np.random.default_rng(0)
            X = torch.as_tensor(rng.normal(size=(batch, 64)).astype(np.float32))
            y = torch.as_tensor(rng.integers(0, 10, batch))
            row = {"qubits": n, "batch": batch, "amplitudes": batch * 2**n}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times = []
                for _ in range(repeats + 1):  # the first call compiles the program
                    started = time.perf_counter()
                    supercircuit.zero_grad()
                    torch.nn.functional.cross_entropy(supercircuit(X, arch), y).backward()
                    times.append(time.perf_counter() - started)
                row[f"{threads} thread"] = float(np.median(times[1:]))
            row["speed-up"] = row["1 thread"] / row["2 thread"]
            rows.append(row)
    finally:
        torch.set_num_threads(before)
    return rows


def threads_in_subprocess(wait_policy: str | None) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if wait_policy is not None:
        env["OMP_WAIT_POLICY"] = wait_policy
    done = subprocess.run([sys.executable, __file__, "--threads-only"], env=env, check=True, capture_output=True,
                          text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_text(identical: bool, deadline: int) -> str:
    if not identical:
        return "**no**"
    return "yes" if not deadline else f"yes, but for {deadline} cut search(es) stopped by the wall-clock deadline"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=4)
    parser.add_argument("--supercircuit-epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3,
                        help="generations timed per setting, each on fresh architectures (medians reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-threads", action="store_true", help="skip the torch-threads measurement")
    parser.add_argument("--threads-only", action="store_true", help=argparse.SUPPRESS)  # one subprocess
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.md"))
    args = parser.parse_args(argv)
    if args.threads_only:
        print(json.dumps(thread_timings()))
        return
    load_before = load_average()

    context, supercircuit_epoch = prepare(args.seed, args.finetune_epochs, args.supercircuit_epochs)
    warm = distinct_archs(SPACE, args.seed + 1, 1)[0]
    rounds, seen = [], [warm]
    for r in range(args.rounds):
        rounds.append(distinct_archs(SPACE, args.seed + 100 + r, args.population, exclude=seen))
        seen += rounds[-1]
    started = time.perf_counter()
    blob = pickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)
    pickling = time.perf_counter() - started
    nsga, nsga_checkpoint = nsga2_seconds_per_generation(args.population)

    evaluate_candidate(warm, context, 0)  # warm this process up too
    settings = ["serial", *args.workers]
    walls: dict = {k: [] for k in settings}
    busiest: dict = {w: [] for w in args.workers}  # compute time of the busiest worker
    inflation: dict = {w: [] for w in args.workers}  # workers' compute / serial compute of the round
    per_candidate: list[list[float]] = []
    identical: dict = {w: True for w in args.workers}
    deadline_only: dict = {w: 0 for w in args.workers}
    scatter: dict = {}
    with contextlib.ExitStack() as stack:
        executors = {}
        for w in args.workers:
            executor = stack.enter_context(dask_executor(workers=w))
            client = executor._client
            client.wait_for_workers(w)
            client.run(_warm_up, blob, warm)
            started = time.perf_counter()
            shared = client.scatter(context, broadcast=True, hash=False)
            scatter[w] = time.perf_counter() - started
            del shared
            executors[w] = executor
        for r, archs in enumerate(rounds):
            order = settings[r % len(settings):] + settings[:r % len(settings)]  # load drifts: rotate
            results, computes = {}, {}
            for setting in order:
                if setting == "serial":
                    wall, times, found = run_serial(archs, context)
                    per_candidate.append(times)
                else:
                    wall, found, busy, computes[setting] = run_dask(executors[setting], archs, context)
                    busiest[setting].append(busy)
                walls[setting].append(wall)
                results[setting] = fingerprint(found)
            reference = results["serial"]
            for w in args.workers:
                same, deadline, problems = compare(results[w], reference)
                identical[w] &= same
                deadline_only[w] += deadline
                for problem in problems:
                    print(f"{w} worker(s) differ from the serial run: {problem}", file=sys.stderr)
                inflation[w].append(computes[w] / walls["serial"][-1])
            print(f"round {r + 1}: " + ", ".join(f"{k}: {walls[k][-1]:.2f} s" for k in settings)
                  + f"; identical to serial: {all(identical.values())} (cut deadlines: {sum(deadline_only.values())}); "
                  f"load {load_average()}", flush=True)
    load_after = load_average()
    threads = {} if args.no_threads else {policy: threads_in_subprocess(policy) for policy in (None, "PASSIVE")}

    # --- report ---------------------------------------------------------------------------------------
    t_serial = nsga_checkpoint + pickling
    median = {k: float(np.median(v)) for k, v in walls.items()}
    overheads = {w: float(np.median([wall - busy for wall, busy in zip(walls[w], busiest[w])])) for w in args.workers}
    t_eval = median["serial"]
    times = per_candidate[int(np.argsort([sum(t) for t in per_candidate])[len(per_candidate) // 2])]  # median round
    lines = [
        "# Scaling out: a generation on 1 and 2 Dask workers",
        "",
        f"`{' '.join(['python benchmarks/scaling.py', *(sys.argv[1:] if argv is None else argv)])}`",
        f"on {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}. Load average (1, 5, 15 min) before: "
        f"{load_before}; after the timed rounds: {load_after}. With a load above the core count the 2-worker "
        "speed-up is bounded by the cores actually free, not by the code.",
        "",
        f"Workload: digits, {len(context.X_train)} training / {len(context.X_val)} validation samples, "
        f"space qubits 6-8, layers 1-3, angle_x/angle_y; qubit budget 4; fine-tuning {args.finetune_epochs} "
        f"epochs of batch 16; {args.population} distinct candidates per generation; exact target; "
        f"`LocalCluster(processes=True, threads_per_worker=1)`, workers warmed up. {args.rounds} rounds, each on "
        f"fresh architectures (cold caches, as in a search), settings in rotating order; medians.",
        "",
        "## One generation's wall time",
        "",
        "| setting | wall T (s), median | every round (s) | speed-up vs 1 worker | vs in-process serial "
        "| busiest worker's compute (s) | all workers' compute / serial run's | overhead: T - busiest (s) "
        "| identical to serial |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
        f"| serial, in process | {t_eval:.2f} | {', '.join(f'{v:.1f}' for v in walls['serial'])} | | 1.00 | | 1.00 "
        f"| | yes |",
    ]
    base = median.get(1, float("nan"))
    for w in args.workers:
        every = ", ".join(f"{v:.1f}" for v in walls[w])
        same = same_text(identical[w], deadline_only[w])
        lines.append(f"| {w} worker{'s' if w > 1 else ''} | {median[w]:.2f} | {every} "
                     f"| {base / median[w]:.2f} | {t_eval / median[w]:.2f} | {np.median(busiest[w]):.2f} "
                     f"| {np.median(inflation[w]):.2f} | {overheads[w]:.2f} | {same} |")
    if 1 in median and 2 in median:
        per_round = [a / b for a, b in zip(walls[1], walls[2])]
        lines += ["", f"**Speed-up with 2 workers: {base / median[2]:.2f}x** over 1 worker (per round: "
                      f"{', '.join(f'{v:.2f}' for v in per_round)}; target >= 1.5x on 2 free cores); "
                      f"{t_eval / median[2]:.2f}x over the in-process serial run.",
                  "",
                  "\"all workers' compute / serial run's\" is the time the tasks spent computing on the workers "
                  "(Dask's task stream) over the serial run's wall time in the same round: 1.00 means the workers "
                  "computed as fast as the serial run; above 1 the same work took longer because the workers "
                  "shared the cores with other load, which no scheduler can win back. The overhead column is what "
                  "Dask itself adds (scatter, scheduling, results, each worker's first use of the scattered "
                  "target)."]
    lines += [
        "",
        "## Per-candidate serial cost t_i (median round, this process)",
        "",
        "| t_i (s) |",
        "|---|",
        "| " + ", ".join(f"{t:.2f}" for t in times) + f" (sum {sum(times):.2f}, max {max(times):.2f}) |",
    ]
    overhead = float(max(overheads.values())) if overheads else 0.0
    lines += [
        "",
        "## Serial part and the model",
        "",
        f"- NSGA-II ask/tell and bookkeeping: {nsga * 1e3:.1f} ms per generation; with the checkpoint written "
        f"every generation: {nsga_checkpoint * 1e3:.1f} ms.",
        f"- Pickling the context once per generation: {pickling * 1e3:.1f} ms ({len(blob) / 1e6:.2f} MB: "
        f"SuperCircuit weights + data); scattering it to every worker: "
        + ", ".join(f"{scatter[w]:.3f} s ({w} worker{'s' if w > 1 else ''})" for w in args.workers) + ".",
        f"- SuperCircuit training (once per search, before the first generation, in the main process): "
        f"{supercircuit_epoch:.2f} s per epoch here (x 20 epochs = {20 * supercircuit_epoch:.0f} s).",
        "- Dask's per-generation overhead, T(w) - busiest worker's compute (scatter, scheduling, results, "
        "each worker's first use of the freshly scattered target, i.e. the reference backend's lazy set-up): "
        + ", ".join(f"{overheads[w]:.2f} s ({w} worker{'s' if w > 1 else ''})" for w in args.workers)
        + f"; the model uses the larger, {overhead:.2f} s.",
        "",
        f"T(w) = {t_serial:.3f} s (serial) + makespan_w(t_i) + {overhead:.2f} s (overhead); "
        f"makespan_w >= max(T_eval / w, max t_i) = max({sum(times):.1f} / w, {max(times):.1f}).",
        "",
        "Predicted on free cores from the serial run's t_i (list scheduling in submission order, as Dask "
        "assigns tasks to idle workers):",
        "",
        "| workers w | predicted T(w) (s) | predicted speed-up vs 1 worker |",
        "|---:|---:|---:|",
    ]
    one = t_serial + makespan(times, 1) + overhead
    for w in (1, 2, 3, 4, 6, 8):
        if w > len(times):
            continue
        predicted = t_serial + makespan(times, w) + overhead
        lines.append(f"| {w} | {predicted:.2f} | {one / predicted:.2f} |")
    stop = sum(times) / max(times)
    lines += [
        "",
        f"It stops scaling at w ~ T_eval / max t_i = {stop:.1f} workers for this generation: beyond, the slowest "
        f"candidate ({max(times):.1f} s) sets the wall time, and never beyond w = the number of new candidates per "
        f"generation ({len(times)} here; NSGA-II's duplicate elimination and the candidate cache make later "
        f"generations smaller). Over a whole search the SuperCircuit training and the final fine-tuning stay serial "
        f"(Amdahl).",
    ]
    if threads:
        lines += [
            "",
            "## Torch threads for SuperCircuit training (one step: forward + backward of the largest member)",
            "",
            "Each in a fresh process; `OMP_WAIT_POLICY` is read when OpenMP starts (default: idle OpenMP "
            "threads spin, which on cores busy with other work costs a time slice per parallel region; "
            "`PASSIVE`: they sleep).",
            "",
            "| OMP_WAIT_POLICY | qubits | batch | amplitudes | 1 thread (s) | 2 threads (s) | speed-up |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for policy, rows in threads.items():
            for row in rows:
                lines.append(f"| {policy or 'unset'} | {row['qubits']} | {row['batch']} | {row['amplitudes']} | "
                             f"{row['1 thread']:.4f} | {row['2 thread']:.4f} | {row['speed-up']:.2f} |")
        lines += ["", "`train_supercircuit` and fine-tuning use 1 thread below 2**18 amplitudes per batch "
                      "(`engines.statevector.SINGLE_THREAD_BELOW`) and torch's configured threads above. "
                      f"Load average when measured: {load_average()}."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
