"""``python -m streamguard.launch torchrun ...`` (torch's launcher, StreamGuard exit codes) and
``python -m streamguard.launch node ...`` (one node of a TrainJob). See ``streamguard.launch``."""

import logging
import sys


def main(argv: list[str]) -> int:
    commands = ("torchrun", "node")
    if not argv or argv[0] not in commands:
        print(f"usage: python -m streamguard.launch {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if argv[0] == "torchrun":
        from streamguard.launch.torchrun import main as torchrun

        return torchrun(argv[1:])
    from streamguard.launch.node import main as node

    return node(argv[1:])


sys.exit(main(sys.argv[1:]))
