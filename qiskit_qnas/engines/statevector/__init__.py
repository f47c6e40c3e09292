# re-exported for the density-matrix engine, which reads gate parameters the same way
from .expressions import _AffineReader as _AffineReader
from .expressions import _Angle as _Angle
from .preparation import RYTreePreparation
from .program import StatevectorProgram
from .threads import SINGLE_THREAD_BELOW, torch_threads_for

__all__ = ["SINGLE_THREAD_BELOW", "RYTreePreparation", "StatevectorProgram", "torch_threads_for"]
