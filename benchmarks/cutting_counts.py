"""Cutting cost of QNAS candidates under a qubit budget: cuts, pieces, devices, sub-experiments, overhead, time.

For entanglers {none, odd, even, all r=1, all r=2, chain, full} x qubits {4, 6, 8, 10} x layers
{1, 2, 3} at budgets {2, 3, 4, 5} (embedding angle_y, rotation ry), runs
``qiskit_qnas.cutting.cutting_cost`` (qiskit-addon-cutting's ``find_cuts`` bounded by the time limit
and a backjump budget; sub-experiments counted by formula, never enumerated) and prints a markdown
table. ``~`` marks a count that is an achievable upper bound (the cut-finder was stopped by a bound
before proving the minimum), ``=`` a proven minimum. Ends with the worst time and whether any entry
exceeded its cap plus one second (exit status 1 if so).

    python benchmarks/cutting_counts.py [--time-limit 5] [--out benchmarks/results/cutting_counts.md]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from importlib.metadata import version

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from qiskit_qnas import Architecture
from qiskit_qnas.cutting import cutting_cost

ENTANGLERS = [("none", 1), ("odd", 1), ("even", 1), ("all", 1), ("all", 2), ("chain", 1), ("full", 1)]
QUBITS = (4, 6, 8, 10)
LAYERS = (1, 2, 3)
BUDGETS = (2, 3, 4, 5)


def big(value: float | int, log10: float) -> str:
    """Plain integer below a million, scientific notation above (from the exact log10)."""
    if log10 < 6:
        return f"{int(round(value))}" if float(value).is_integer() else f"{value:.4g}"
    exponent = math.floor(log10)
    return f"{10 ** (log10 - exponent):.2f}e{exponent}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=5.0, help="cap per cutting_cost call (s)")
    parser.add_argument("--out", default=None, help="also write the markdown table to this file")
    parser.add_argument("--qubits", type=int, nargs="*", default=list(QUBITS))
    parser.add_argument("--layers", type=int, nargs="*", default=list(LAYERS))
    parser.add_argument("--budgets", type=int, nargs="*", default=list(BUDGETS))
    args = parser.parse_args(argv)

    lines = [
        "# Cutting cost of QNAS candidates (angle_y embedding, ry rotations)",
        "",
        f"`python benchmarks/cutting_counts.py --time-limit {args.time_limit:g}` on {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, qiskit {version('qiskit')}, "
        f"qiskit-addon-cutting {version('qiskit-addon-cutting')}.",
        "",
        "cuts = gate cuts + wire cuts chosen by `find_cuts` under "
        "`DeviceConstraints(qubits_per_subcircuit=budget)`; pieces = partitions after "
        "`partition_problem` (each within the budget); devices = the fewest devices of `budget` qubits "
        "that hold the pieces (`n_subcircuits`); sub-experiments = prod over cuts of the QPD "
        "terms (6 per gate, 8 per wire cut) x commuting observable groups summed over pieces (the "
        "outputs Z_i: 1 group per piece); overhead = prod of kappa^2 (9 per gate, 16 per wire cut). "
        "exact: `=` proven minimum overhead, `~` achievable upper bound (search stopped by a bound: "
        "`bj` backjump budget, `time` the time limit).",
        "",
        "| entangler | qubits | layers | budget | gate cuts | wire cuts | pieces | devices "
        "| sub-experiments | overhead | exact | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    worst, worst_entry, over, n_inexact, n_entries = 0.0, "", [], 0, 0
    start_all = time.perf_counter()
    for entangler, r in ENTANGLERS:
        for n in args.qubits:
            for layers in args.layers:
                arch = Architecture(n, layers, "angle_y", "ry", entangler, min(r, n - 1))
                for budget in args.budgets:
                    start = time.perf_counter()
                    cost = cutting_cost(arch, qubit_budget=budget, time_limit=args.time_limit)
                    seconds = time.perf_counter() - start
                    n_entries += 1
                    name = entangler if entangler not in ("all", "odd", "even") else f"{entangler} r={r}"
                    if seconds > worst:
                        worst, worst_entry = seconds, f"{name} {n}q {layers}L budget {budget}"
                    if seconds > args.time_limit + 1.0:
                        over.append(f"{name} {n}q {layers}L budget {budget}: {seconds:.2f}s")
                    if not cost.exact:
                        n_inexact += 1
                    mark = "=" if cost.exact else ("~ bj" if cost.stopped_by == "max_backjumps"
                                                   else f"~ {cost.stopped_by}")
                    row = (f"| {name} | {n} | {layers} | {budget} | {cost.n_gate_cuts} | {cost.n_wire_cuts} "
                           f"| {cost.n_pieces} | {cost.n_subcircuits} "
                           f"| {big(cost.n_subexperiments, cost.log10_subexperiments)} "
                           f"| {big(cost.sampling_overhead, cost.log10_sampling_overhead)} | {mark} "
                           f"| {seconds:.2f} |")
                    lines.append(row)
                    print(row, flush=True)
    summary = [
        "",
        f"{n_entries} entries in {time.perf_counter() - start_all:.1f} s; {n_inexact} are upper bounds (`~`).",
        f"Worst time: {worst:.2f} s ({worst_entry}); cap {args.time_limit:g} s + 1 s "
        + ("exceeded by: " + "; ".join(over) if over else "never exceeded."),
    ]
    lines.extend(summary)
    print("\n".join(summary))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as handle:
            handle.write("\n".join(lines) + "\n")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
