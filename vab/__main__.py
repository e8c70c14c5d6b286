"""`python -m vab ...` and `accelerate launch -m vab ...`: the `vab` command line."""

import sys

from vab.cli import main

if __name__ == "__main__":
    sys.exit(main())
