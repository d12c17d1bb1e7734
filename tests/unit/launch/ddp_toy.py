"""A trivial DDP program for launcher tests: ``ddp_toy.py OUT [FAIL_CODE|kill]``.

Every rank joins a gloo process group and all-reduces its rank + 1; rank 0 writes the world size and the sum
to OUT (so OUT proves that all ranks met). With FAIL_CODE, rank 1 then exits with it; with ``kill`` it
SIGKILLs itself (a worker lost to the OOM killer)."""

import json
import os
import signal
import sys

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
if rank == 0:
    with open(sys.argv[1], "w") as f:
        json.dump({"world": world, "sum": t.item(), "local_world": int(os.environ["LOCAL_WORLD_SIZE"])}, f)
dist.barrier()
dist.destroy_process_group()
how = sys.argv[2] if len(sys.argv) > 2 else ""
if rank == 1 and how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if rank == 1 and how:
    sys.exit(int(how))
