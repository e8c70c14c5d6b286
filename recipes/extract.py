"""Distributed extraction: `accelerate launch [--multi_gpu --num_processes N] recipes/extract.py MANIFEST --out DIR [--config ...]`.

Each process extracts a disjoint shard of the clips into its own parts; the main
process merges them.  Same arguments as `vab extract`.
"""

from __future__ import annotations

import argparse
import sys

from accelerate import Accelerator

from vab.cli import parse_with_overrides
from vab.commands.extract import add_extract_arguments, run
from vab.errors import VabError
from vab.utils import launched_without_gpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extract_arguments(parser)
    args = parse_with_overrides(parser)
    accelerator = Accelerator(cpu=launched_without_gpu())
    if args.device is None:
        args.device = str(accelerator.device)
    try:
        return run(args, rank=accelerator.process_index, world_size=accelerator.num_processes, barrier=accelerator.wait_for_everyone)
    except VabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
