"""Compile the pipeline to YAML: ``python -m pipelines.compile [--profile local] [--output FILE]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).parent / "streamguard_training.yaml"


def compile_pipeline(output: str | Path = DEFAULT_OUTPUT, profile: str = "local") -> Path:
    from kfp import compiler

    from pipelines.streamguard_pipeline import streamguard_training

    compiler.Compiler().compile(streamguard_training, package_path=str(output))
    return Path(output)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="local", help="compile profile (pipelines/profiles/NAME.yaml)")
    ap.add_argument("--output", default=str(DEFAULT_OUTPUT), help="YAML file to write")
    args = ap.parse_args(argv)
    path = compile_pipeline(args.output, args.profile)
    print(f"compiled {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
