"""``python -m qiskit_qnas.cli``: the ``qnas`` command line."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
