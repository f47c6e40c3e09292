"""``python -m qiskit_qnas``: the ``qnas`` command line (see :mod:`qiskit_qnas.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
