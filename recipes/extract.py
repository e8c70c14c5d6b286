"""Distributed extraction: `accelerate launch [--multi_gpu --num_processes N] recipes/extract.py MANIFEST --out DIR [--config ...]`.

Each process extracts a disjoint shard of the clips into its own parts; the main
process merges them.  Same arguments as `vab extract`.
"""

from __future__ import annotations

import argparse
import sys

from accelerate import Accelerator

from vab.cli import run_script
from vab.commands.extract import add_extract_arguments, run
from vab.utils import launched_without_gpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_extract_arguments(parser)
    return run_script(parser, extract_shard, argv)


def extract_shard(args: argparse.Namespace) -> int:
    accelerator = Accelerator(cpu=launched_without_gpu())
    if args.device is None:
        args.device = str(accelerator.device)
    return run(args, rank=accelerator.process_index, world_size=accelerator.num_processes, barrier=accelerator.wait_for_everyone)


if __name__ == "__main__":
    sys.exit(main())
