#!/usr/bin/env bash
# Regenerate images/locks/{cpu,test,cuda}.txt from pyproject.toml with `uv pip compile`.
#
#   images/locks/compile.sh            # uv from PATH, else .venv/bin/uv
#   TORCH_CUDA_BACKEND=cu128 images/locks/compile.sh   # CUDA 12.8 torch (needs download.pytorch.org)
#
# How the three files relate:
#   1. one resolution of everything (runtime + pipeline + test extras) is made first and used as a
#      constraint for the others, so the runtime set never differs between the image and CI
#      (e.g. botocore, a test dependency, caps python-dateutil<3 for the runtime too);
#   2. cpu.txt  = runtime + `pipeline` extra (kfp, kfp-kubernetes), torch as the CPU build;
#   3. test.txt = the `test` extra only, constrained by cpu.txt, packages already in cpu.txt left out;
#   4. cuda.txt = the same pins as cpu.txt, but torch as a CUDA build plus the CUDA wheels it needs.
# CI installs `-r cpu.txt -r test.txt`; the CPU image installs cpu.txt; the CUDA image cuda.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

UV=${UV:-$(command -v uv || echo .venv/bin/uv)}
LOCKS=images/locks
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The images are linux/amd64 with CPython 3.11 (see images/*.Dockerfile).
TARGET=(--python-version 3.11 --python-platform x86_64-manylinux_2_28)
COMMON=("${TARGET[@]}" --quiet --custom-compile-command "images/locks/compile.sh")

# torch, CPU build: from a local wheel directory when there is one (this dev machine), else from the
# PyTorch CPU index through uv's torch backend.
if compgen -G "${TORCH_WHEELS:-/opt/wheels}/torch-*+cpu-*.whl" >/dev/null; then
  TORCH_CPU=(--find-links "${TORCH_WHEELS:-/opt/wheels}")
else
  TORCH_CPU=(--torch-backend cpu)
fi
# torch, CUDA build: PyPI's default build unless a backend (cu126, cu128, ...) is named.
if [[ -n "${TORCH_CUDA_BACKEND:-}" ]]; then
  TORCH_CUDA=(--torch-backend "$TORCH_CUDA_BACKEND")
else
  TORCH_CUDA=()
fi

# 1. everything at once
"$UV" pip compile pyproject.toml --extra pipeline --extra test "${TORCH_CPU[@]}" \
  "${TARGET[@]}" --quiet --no-header --no-annotate -o "$TMP/all.txt"

# 2. runtime (CPU)
"$UV" pip compile pyproject.toml --extra pipeline "${TORCH_CPU[@]}" -c "$TMP/all.txt" \
  "${COMMON[@]}" -o "$LOCKS/cpu.txt"

# 3. test-only extras, constrained by the runtime lock
python3 - >"$TMP/test.in" <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["test"]))
PY
NO_EMIT=()
while read -r name; do NO_EMIT+=(--no-emit-package "$name"); done \
  < <(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/\1/p' "$LOCKS/cpu.txt")
"$UV" pip compile "$TMP/test.in" -c "$LOCKS/cpu.txt" -c "$TMP/all.txt" "${TORCH_CPU[@]}" \
  "${NO_EMIT[@]}" "${COMMON[@]}" -o "$LOCKS/test.txt"

# 4. runtime (CUDA): cpu.txt's pins minus torch, torch from the CUDA source
grep -v '^torch==' "$LOCKS/cpu.txt" >"$TMP/cpu-but-torch.txt"
"$UV" pip compile pyproject.toml --extra pipeline "${TORCH_CUDA[@]}" -c "$TMP/cpu-but-torch.txt" \
  "${COMMON[@]}" -o "$LOCKS/cuda.txt"

# Temporary constraint files are no source worth recording; the test.in is pyproject's `test` extra.
sed -i -e "\#^ *\#   -c $TMP/#d" -e "s#-r $TMP/test.in#streamguard[test] (pyproject.toml)#" \
  "$LOCKS/cpu.txt" "$LOCKS/test.txt" "$LOCKS/cuda.txt"

echo "wrote $LOCKS/cpu.txt $LOCKS/test.txt $LOCKS/cuda.txt"
