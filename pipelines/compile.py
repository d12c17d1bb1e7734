"""Compile the pipeline to YAML for a compile profile (``pipelines/profiles/NAME.yaml``).

    python -m pipelines.compile [--profile local|gke-a100|generic-a100|gke-a100x8|FILE.yaml] [--output FILE]
                                [--cache-training] [--all]

``local`` writes ``pipelines/streamguard_training.yaml``; any other profile writes
``pipelines/compiled/streamguard_training.<profile>.yaml``. Both are committed and
checked by ``tests/unit/test_compile.py``. Training caching is off unless
``--cache-training`` (or ``CACHE_TRAINING=1`` in the environment: ``make compile CACHE_TRAINING=1``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PIPELINES_DIR = Path(__file__).parent
DEFAULT_OUTPUT = PIPELINES_DIR / "streamguard_training.yaml"
COMPILED_DIR = PIPELINES_DIR / "compiled"


def default_output(profile: str) -> Path:
    """Where ``make compile PROFILE=profile`` writes (and ``make submit PROFILE=profile`` reads)."""
    return DEFAULT_OUTPUT if profile == "local" else COMPILED_DIR / f"streamguard_training.{profile}.yaml"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def compile_pipeline(output: str | Path | None = None, profile: str = "local", *,
                     cache_training: bool = False) -> Path:
    """Compile the pipeline with ``profile``'s settings to ``output`` (default: ``default_output(profile)``)."""
    from kfp import compiler

    from pipelines.platform import configure, load_profile
    from pipelines.streamguard_pipeline import build_pipeline

    prof = load_profile(profile)
    output = Path(output) if output else default_output(prof.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(configure(prof), cache_training=cache_training, seed_parallelism=prof.seed_parallelism)
    compiler.Compiler().compile(pipeline, package_path=str(output))
    _declared_defaults(output, pipeline)
    return output


def _declared_defaults(path: Path, pipeline) -> None:
    """Write the pipeline inputs' defaults as declared (``[42, 2025, 7]``), not as the SDK's protobuf round
    trip prints them (``[42.0, 2025.0, 7.0]``: every protobuf number is a double). Same value for the
    backend; the YAML then reads as the types it is checked against. The file is rewritten the way
    ``kfp.compiler`` writes it (header comments, then the documents with sorted keys)."""
    import yaml
    from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec

    docs = list(yaml.safe_load_all(path.read_text()))
    params = docs[0]["root"].get("inputDefinitions", {}).get("parameters", {})
    changed = False
    for name, spec in pipeline.component_spec.inputs.items():
        written = params.get(name, {}).get("defaultValue")
        if written is not None and written == spec.default and repr(written) != repr(spec.default):
            params[name]["defaultValue"] = spec.default
            changed = True
    if changed:
        with open(path, "w") as f:
            f.write(extract_comments_from_pipeline_spec(docs[0], pipeline.description))
            yaml.dump_all(docs, f, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    from pipelines.platform import ProfileError, available_profiles

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="local", help="compile profile: a name in pipelines/profiles/ or a YAML file")
    ap.add_argument("--output", default=None, help="YAML file to write (default: by profile, see above)")
    ap.add_argument("--cache-training", action="store_true", default=_env_flag("CACHE_TRAINING"),
                    help="let KFP cache the training tasks (default: off; env CACHE_TRAINING=1)")
    ap.add_argument("--all", action="store_true",
                    help="compile every profile in pipelines/profiles/ to its default output")
    args = ap.parse_args(argv)
    if args.all and args.output:
        ap.error("--all writes each profile's default output; drop --output")
    try:
        for profile in (available_profiles() if args.all else [args.profile]):
            path = compile_pipeline(args.output, profile, cache_training=args.cache_training)
            print(f"compiled {path} (profile {profile}, training cache {'on' if args.cache_training else 'off'})")
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
