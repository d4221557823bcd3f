#!/usr/bin/env bash
# Builds mlfs-studio with NVIDIA GPU support (cargo feature `cuda`) on a machine with no CUDA
# toolkit and no GPU, and prints the binary's path. NVIDIA's compiler comes from the Python
# package index (CUDA 13.0, what the GPU machine's driver accepts), the CUDA libraries are
# replaced at link time by stubs that only carry the symbols; at run time the real ones are
# found through LD_LIBRARY_PATH (see the README's GPU section).
#
#   scripts/build-cuda.sh            # the binary (dev profile: opt-level 3 everywhere), stripped
#   scripts/build-cuda.sh --tests    # also the GPU test executable, as target/cuda/gpu-tests
#   scripts/build-cuda.sh --nccl     # with the `nccl` feature: data parallel over GPUs
#                                    # (`train --gpus`); needs libnccl.so.2 at run time
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # another GPU generation (default 90: H100/H200)
set -euo pipefail
cd "$(dirname "$0")/.."
features=cuda tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    --nccl) features=nccl ;;
    *) echo "unknown option $arg (--tests, --nccl)" >&2; exit 2 ;;
  esac
done
command -v protoc >/dev/null || { echo "protoc is missing: apt-get install protobuf-compiler (candle-onnx needs it)" >&2; exit 1; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mlfs-studio/cuda-13.0"
site="$cache/site"
root="$site/nvidia/cu13"

if [ ! -x "$root/bin/nvcc" ]; then
  echo "fetching NVIDIA's CUDA 13.0 compiler wheels into $cache" >&2
  mkdir -p "$cache/wheels" "$site"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$cache/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88
  for wheel in "$cache"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$site"
  done
  chmod +x "$root"/bin/* "$root"/nvvm/bin/* 2>/dev/null || true
fi

# Link stubs: one small shared object per CUDA library cudarc links, defining every function
# its bindings name, under the soname the real library has (what NVIDIA's toolkit does for
# libcuda). The dynamic loader later binds those names in the real libraries.
cudarc=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.* 2>/dev/null | sort | tail -1)
if [ -z "$cudarc" ]; then
  cargo fetch --quiet
  cudarc=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.* | sort | tail -1)
fi
stubs="$root/lib/stubs"
mkdir -p "$stubs"
stub() { # library, soname, binding module
  local lib=$1 soname=$2 module=$3
  [ -s "$stubs/lib$lib.so" ] && return
  grep -ohE '^pub unsafe fn [A-Za-z0-9_]+\(' "$cudarc/src/$module/sys/mod.rs" |
    sed -E 's/^pub unsafe fn ([A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u >"$stubs/$lib.c"
  gcc -shared -fPIC -o "$stubs/lib$lib.so" -Wl,-soname,"$soname" "$stubs/$lib.c"
}
stub cuda libcuda.so.1 driver
stub cublas libcublas.so.13 cublas
stub cublasLt libcublasLt.so.13 cublaslt
stub curand libcurand.so.10 curand
stub nvrtc libnvrtc.so.13 nvrtc
# NCCL's soname is the same for every CUDA version (pip's nvidia-nccl-cu13 ships libnccl.so.2).
[ "$features" = nccl ] && stub nccl libnccl.so.2 nccl
# The runtime is real (from the wheel): the kernels' static library links against it.
ln -sf "$(ls "$root"/lib/libcudart.so.13* | head -1)" "$root/lib/libcudart.so"

export PATH="$root/bin:$PATH" CUDA_ROOT="$root" CUDA_PATH="$root" CUDA_HOME="$root"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$stubs:$root/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target/cuda"
cargo build --features "$features" --bin mlfs-studio >&2
strip -o "$target/cuda/mlfs-studio" "$target/debug/mlfs-studio"
echo "$target/cuda/mlfs-studio"
# Both builds share target/debug/mlfs-studio, which the CPU tests run: put the CPU one back.
restore_cpu_binary() { cargo build --bin mlfs-studio >&2; }
trap restore_cpu_binary EXIT
if [ "$tests" = 1 ]; then
  tests=$(cargo test --features "$features" --test gpu --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"):
        print(m["executable"])')
  [ -n "$tests" ] || { cargo test --features "$features" --test gpu --no-run >&2; exit 1; }
  strip -o "$target/cuda/gpu-tests" "$tests"
  echo "$target/cuda/gpu-tests"
fi
