"""Evaluating one candidate on 200 validation samples: one broadcast PUB versus one job per sample.

The candidate (4 qubits, 2 layers, angle_y, rxryrz, odd/even entanglers) is evaluated on
``AerSimulator.from_backend(FakeManilaV2())`` (the device's noise model) with 1024 shots through
``qiskit_qnas.targets.AerTarget``: once as one PUB whose parameter values hold all 200 samples
(what QNAS does), and once as 200 single-sample jobs (the same target, one call per sample). Both
use the same cached ISA circuit and primitive, so the ratio is the cost of per-sample jobs alone.
Then the same candidate on every kind of target (exact, ideal Aer, noisy Aer, Runtime local
testing mode), with the runtime proxy beside the measured times. Timings are medians of
``--repeats`` warm calls (the first, cold call - transpilation, compilation - is reported apart).

    python benchmarks/target_eval.py [--samples 200] [--shots 1024] [--repeats 3]
                                     [--out benchmarks/results/target_eval.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qiskit_qnas import Architecture
from qiskit_qnas.targets import resolve_target

ARCH = Architecture(n_qubits=4, n_layers=2, embedding="angle_y", rotation="rxryrz", entangler=("odd", "even"))


def timed(call, repeats: int) -> tuple[float, float, object]:
    """(cold seconds, median warm seconds, last result)."""
    started = time.perf_counter()
    result = call()
    cold = time.perf_counter() - started
    warm = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        warm.append(time.perf_counter() - started)
    return cold, statistics.median(warm), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--shots", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the markdown to this file")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    X = rng.uniform(-np.pi, np.pi, (args.samples, ARCH.n_inputs))
    w = rng.uniform(-np.pi, np.pi, ARCH.n_weights)
    manila = FakeManilaV2()
    noisy = AerSimulator.from_backend(manila)

    # --- broadcast PUB versus one job per sample, noisy Aer with shots -----------------------------
    target = resolve_target(noisy, shots=args.shots, seed=args.seed)
    cold, broadcast, evaluation = timed(lambda: target.expectation_values(ARCH, X, w), args.repeats)

    def per_sample():
        return np.vstack([target.expectation_values(ARCH, X[i: i + 1], w).values for i in range(len(X))])

    _, looped, looped_values = timed(per_sample, max(1, args.repeats // 3))
    exact_target = resolve_target(None)
    exact = exact_target.expectation_values(ARCH, X, w).values
    speedup = looped / broadcast

    lines = [
        "# Evaluating one candidate on a target: broadcast PUB vs one job per sample",
        "",
        f"`python benchmarks/target_eval.py --samples {args.samples} --shots {args.shots} --repeats {args.repeats}` "
        f"on {platform.platform()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}, "
        f"qiskit {version('qiskit')}, qiskit-aer {version('qiskit-aer')}, "
        f"qiskit-ibm-runtime {version('qiskit-ibm-runtime')}.",
        "",
        f"Candidate `{ARCH.key}` ({ARCH.n_inputs} inputs, {ARCH.n_weights} weights), {args.samples} validation "
        f"samples, `AerSimulator.from_backend(FakeManilaV2())` (noise model), {args.shots} shots, seed "
        f"{args.seed}. Median of warm calls; the ISA circuit and the primitive are cached in both cases.",
        "",
        "| evaluation | jobs | PUBs | wall (s) | per sample (ms) | max abs diff to exact |",
        "|---|---:|---:|---:|---:|---:|",
        f"| one broadcast PUB | 1 | 1 | {broadcast:.3f} | {1e3 * broadcast / args.samples:.2f} | "
        f"{np.abs(evaluation.values - exact).max():.3f} |",
        f"| one job per sample | {args.samples} | {args.samples} | {looped:.3f} | "
        f"{1e3 * looped / args.samples:.2f} | {np.abs(looped_values - exact).max():.3f} |",
        "",
        f"**Speed-up of the broadcast PUB: {speedup:.1f}x** (target >= 20x). First (cold) broadcast call, "
        f"transpilation included: {cold:.3f} s.",
        "",
        "## The same candidate on every target",
        "",
        f"Wall = client wall clock of `expectation_values` on {args.samples} samples (median warm; cold = first "
        "call, with transpilation / compilation and, for Runtime, opening the `Batch`); job = the "
        "time the simulator reports; proxy = critical path of the ISA circuit on the reference backend x shots "
        f"x {args.samples} circuits.",
        "",
        "| target | shots | reference backend | ISA depth | 2q gates | cold (s) | wall (s) | job (s) | proxy (s) "
        "| max abs diff to exact |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = [exact_target, resolve_target(AerSimulator(), seed=args.seed), resolve_target(noisy, seed=args.seed),
               target, resolve_target(manila, mode="runtime", shots=args.shots, seed=args.seed)]
    for t in targets:
        if t is exact_target:
            t = resolve_target(None)  # a fresh one, so that "cold" includes compilation
        cold_t, wall, ev = timed(lambda t=t: t.expectation_values(ARCH, X, w), args.repeats)
        estimate = t.runtime_estimate(ARCH, n_circuits=args.samples)
        job = "-" if ev.job_seconds is None else f"{ev.job_seconds:.3f}"
        lines.append(f"| {t.name} | {t.shots or 'exact'} | {estimate.backend_name} | {estimate.depth} | "
                     f"{estimate.n_two_qubit_gates} | {cold_t:.3f} | {wall:.3f} | {job} | {estimate.seconds:.3f} | "
                     f"{np.abs(ev.values - exact).max():.3f} |")
        t.close()
    lines += ["", "Ideal Aer without shots equals the exact engine; noisy Aer without shots is the exact "
              "expectation value under the noise model (gate errors simulated by Aer, readout errors applied "
              "exactly); with shots each <Z_i> is a binomial sample of that many measurements. Runtime local "
              "testing mode samples the noisy ISA circuit itself (client-side pre/post-processing included "
              "in wall)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    return 0 if speedup >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
