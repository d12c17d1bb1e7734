"""The command lines the launcher runs: ``streamguard train-<family> ...`` from a training step's inputs, and
torch's own launcher around it.

The training command is built from the step's directories and parameters and then parsed by the real
``streamguard`` parser (``streamguard.cli.build_parser``), so a flag the CLI does not take is an error
here, not in the workers.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace


def _dir_flags() -> dict[str, str]:
    from streamguard import families

    inputs = {i.name: i.flag for name in families.names() for i in families.get(name).inputs}
    return {"data": "--data", **inputs, "model": "--model-dir", "result": "--result-dir"}


DIR_FLAGS = _dir_flags()
"""A training component's directory arguments -> the ``streamguard train-<family>`` flags they fill."""
OUTPUTS = ("model", "result")
"""What a training step writes (rank 0 only); the other directories are its inputs."""


@dataclass(frozen=True)
class TrainCommand:
    """One ``streamguard train-<family>`` invocation."""
    family: str
    seed: int
    dirs: dict[str, str]
    """``DIR_FLAGS`` key -> directory (the inputs this family reads, and both outputs)."""
    profile: str = "demo"
    overrides: dict = field(default_factory=dict)
    store: str = ""
    """Store URI; empty: the CLI's default ($STREAMGUARD_STORE)."""
    run_key: str = ""

    @property
    def inputs(self) -> dict[str, str]:
        return {k: v for k, v in self.dirs.items() if k not in OUTPUTS}

    @property
    def outputs(self) -> dict[str, str]:
        return {k: self.dirs[k] for k in OUTPUTS}

    def argv(self) -> list[str]:
        """The arguments after ``streamguard`` (checked by the CLI's own parser)."""
        from streamguard.cli import build_parser
        from streamguard.errors import UserError

        unknown = sorted(set(self.dirs) - set(DIR_FLAGS))
        missing = [k for k in OUTPUTS if k not in self.dirs]
        if unknown or missing:
            raise UserError(f"train-{self.family}: directories {unknown or missing} (expected some of "
                            f"{', '.join(DIR_FLAGS)}, with {' and '.join(OUTPUTS)})")
        args = [f"train-{self.family}"]
        for key, flag in DIR_FLAGS.items():
            if key in self.dirs:
                args += [flag, str(self.dirs[key])]
        args += ["--seed", str(self.seed), "--run-key", self.run_key, "--profile", self.profile]
        if self.overrides:
            args += ["--overrides", json.dumps(self.overrides, sort_keys=True)]
        if self.store:
            args += ["--store", self.store]
        parser = build_parser()
        parser.exit_on_error = False
        try:
            _, extra = parser.parse_known_args(args)
        except SystemExit:  # argparse reports a missing required flag by exiting
            raise UserError(f"streamguard {' '.join(args[:1])}: the arguments {args[1:]} do not parse "
                            "(see the message above)") from None
        if extra:
            raise UserError(f"streamguard train-{self.family} takes no {extra[0]} (from the step's inputs)")
        return args

    def moved(self, base: str) -> "TrainCommand":
        """The same command with every directory at ``base/<name>`` (a TrainJob node's local copy)."""
        return replace(self, dirs={k: f"{base.rstrip('/')}/{k}" for k in self.dirs})


def torchrun_argv(torchrun_args: list[str], program: list[str], python: str | None = None) -> list[str]:
    """``python -m streamguard.launch torchrun <torchrun args> <program>``: torch's launcher
    (``torch.distributed.run``: same arguments, same ``PET_*`` environment) run by
    ``streamguard.launch.torchrun``, which turns a worker's failure into its exit code."""
    return [python or sys.executable, "-m", "streamguard.launch", "torchrun", *torchrun_args, *program]


def standalone_argv(nproc: int, cmd: TrainCommand, python: str | None = None) -> list[str]:
    """One pod, ``nproc`` processes: ``torchrun --standalone --nproc-per-node N -m streamguard train-...``."""
    return torchrun_argv(["--standalone", "--nproc-per-node", str(nproc)], ["-m", "streamguard", *cmd.argv()],
                         python)
