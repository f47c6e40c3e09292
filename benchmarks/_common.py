"""What several benchmarks share: test accuracy of a model, the classical ablation of an HQNN, and the
provenance lines of a report (command, commit, machine).

Imported by the scripts in this folder (``python benchmarks/<script>.py`` puts the folder on the path).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qiskit_qnas.model import classical_pre_layer, embedding_norm, predict_logits

REPO = Path(__file__).resolve().parent.parent


def accuracy(model: nn.Module, X, y) -> float:
    """Fraction of ``X`` whose highest logit is the label in ``y``."""
    return float((predict_logits(model, X).argmax(1) == np.asarray(y)).mean())


class ClassicalAblation(nn.Module):
    """The HQNN with its quantum layer replaced by ``tanh``: pre-layer -> Linear to ``n_qubits`` ->
    the angle embeddings' normalisation -> tanh -> Linear head (the same classical layers, widths and
    normalisation as an angle-embedded HQNN). Without the normalisation the tanh saturates on image
    features exactly as the angle map did before it had one, and the ablation looks worse than it is
    (MNIST 6k/2k, width 8: 0.816 test accuracy without it)."""

    def __init__(self, n_features: int, n_qubits: int, n_classes: int, hidden, dropout: float = 0.1,
                 seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.pre = classical_pre_layer(n_features, n_qubits, hidden, dropout)
            self.head = nn.Linear(n_qubits, n_classes)
            self.norm = embedding_norm("angle_y", n_qubits)

    def forward(self, x):
        return self.head(torch.tanh(self.norm(self.pre(x))))


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this run, as typed from the repository root (with its ``nice`` level)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    niceness = os.nice(0)
    args = sys.argv[1:] if argv is None else list(argv)
    return (f"nice -n {niceness} " if niceness else "") + shlex.join(["python", str(script), *args])


def git_commit() -> str:
    """The checkout's commit (short hash), with ``+ local changes`` when the work tree differs from it."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" + local changes" if dirty else "")


def load_average() -> str:
    """The 1, 5 and 15-minute load averages."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def write_report(text: str, out: str | Path) -> None:
    """Print a report and write it to ``out`` (its folder created if missing)."""
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
