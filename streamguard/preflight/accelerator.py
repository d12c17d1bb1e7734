"""The ``accelerator`` check: CUDA where the profile asks for a GPU (``require_gpu``) — device name, memory,
compute capability, bf16, torch/CUDA/cuDNN versions — and a tiny kernel run."""

from __future__ import annotations

from typing import Any

import torch

from streamguard.preflight.result import CheckResult, one_line, run_check


def check_accelerator(require_gpu: bool) -> CheckResult:
    vals: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                            "cuda_available": torch.cuda.is_available(), "require_gpu": require_gpu}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        cap = (int(p.major), int(p.minor))
        vals.update(name=p.name, memory_bytes=int(p.total_memory), capability=f"{cap[0]}.{cap[1]}",
                    bf16=bool(torch.cuda.is_bf16_supported()), device_count=torch.cuda.device_count())
        try:  # a driver/runtime mismatch shows up on the first kernel, not in the properties
            x = torch.ones(64, 64, device="cuda")
            vals["kernel_ok"] = bool(float((x @ x).sum()) == 64.0 ** 3)
        except Exception as e:
            return CheckResult("accelerator", "fail", f"{p.name}: a CUDA kernel failed ({one_line(e)})", vals)
        msg = (f"{p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {cap[0]}.{cap[1]}, "
               f"bf16 {'yes' if vals['bf16'] else 'no'}, CUDA {torch.version.cuda}, torch {torch.__version__}")
        if not vals["kernel_ok"]:
            return CheckResult("accelerator", "fail", f"{p.name}: a test matmul gave a wrong result", vals)
        if cap < (7, 0):
            return CheckResult("accelerator", "warn", msg + " (below 7.0: no tensor cores, AMP gains little)", vals)
        return CheckResult("accelerator", "pass", msg, vals)
    if require_gpu:
        return CheckResult("accelerator", "fail", f"the profile asks for a GPU but CUDA is not available "
                                                  f"(torch {torch.__version__}, CUDA build {torch.version.cuda})", vals)
    return CheckResult("accelerator", "pass", f"CPU only (no GPU requested); torch {torch.__version__}", vals)


def run(gate) -> list[CheckResult]:
    return [run_check("accelerator", lambda: check_accelerator(gate.require_gpu))]
