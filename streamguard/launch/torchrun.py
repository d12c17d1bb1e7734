"""torch's launcher, run for StreamGuard: ``python -m streamguard.launch torchrun [torchrun args] program ...``.

The arguments (and the ``PET_*`` environment a Kubeflow Trainer node gets) are torch's own: they are parsed by
``torch.distributed.run.parse_args`` and run by ``torch.distributed.run.run`` — the code behind ``torchrun``.
The one difference is the exit code: plain ``torchrun`` exits 1 whatever a worker died of; this one exits
with the first failing worker's StreamGuard code (2 bad input, 3 collapse, 4 no GPU, 5 store unavailable,
1 unexpected) so a KFP step fails as the training would have alone, and with 6 (``EXIT_DISTRIBUTED``) when
the worker ended without one (killed by a signal, out of memory). SIGTERM/SIGINT to this process stop the
workers (torch's agent handles them) and exit 128 + the signal.

``run_child`` runs such a command as a child process and passes SIGTERM/SIGINT on to it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading

from streamguard.errors import EXIT_DISTRIBUTED, EXIT_UNEXPECTED

log = logging.getLogger("streamguard.launch")
STREAMGUARD_CODES = range(EXIT_UNEXPECTED, EXIT_DISTRIBUTED)
"""Exit codes a StreamGuard command ends with on its own (1-5), passed on as they are."""


def worker_exit_code(exitcode: int) -> int:
    """A worker's exit code (negative: killed by that signal) -> this launcher's."""
    return exitcode if exitcode in STREAMGUARD_CODES else EXIT_DISTRIBUTED


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(argv)
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        how = (f"was killed by signal {-failure.exitcode}" if failure.exitcode < 0
               else f"exited with {failure.exitcode}")
        code = worker_exit_code(failure.exitcode)
        print(f"streamguard: error: torchrun: rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) "
              f"{how} first; {len(e.failures)} rank(s) failed; exit {code}", file=sys.stderr, flush=True)
        return code
    except SignalException as e:
        print(f"streamguard: torchrun stopped by signal {e.sigval}", file=sys.stderr, flush=True)
        return 128 + int(e.sigval)
    return 0


def run_child(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``argv``, pass SIGTERM/SIGINT on to it, return its exit code (a signal N that killed it: 128 + N)."""
    proc = subprocess.Popen(argv, env=env)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def forward(signum, _frame):
            log.warning("signal %d: passing it on to %s (pid %d)", signum, argv[2] if len(argv) > 2 else argv[0],
                        proc.pid)
            proc.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return 128 - rc if rc < 0 else rc
