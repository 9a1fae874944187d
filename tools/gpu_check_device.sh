#!/usr/bin/env bash
# make gpu-check's tests on a CUDA machine that cannot reach a package registry, with the
# bundle tools/gpu_bundle.py wrote (it copies this file in as run.sh). Run from the
# repository root with a python3 that has a CUDA torch:
#     bash .cache/gpu-bundle/run.sh            # logs to $OUT, else .cache/gpu-check-device
# The tests run in a scratch copy of the repository whose params.yaml `toolchain` pins are
# the installed versions (the image's torch is not the lock's; the model stages refuse any
# other pin): the differences are printed first. The exit status is nonzero when any test
# fails or skips, or when llama.cpp's CUDA build fails.
set -u -o pipefail
BUNDLE=$(cd "$(dirname "$0")" && pwd)
REPO=$PWD
LOG=${OUT:-$REPO/.cache/gpu-check-device}
PY=${GPU_PY:-python3}
mkdir -p "$LOG"
W=$(mktemp -d)
tar xJf "$BUNDLE/site.tar.xz" -C "$W"
mkdir -p "$W/repo"
cp -r "$REPO"/{src,stages,tests,tools,schemas,params.yaml,dvc.yaml,pyproject.toml} "$W/repo/"
cd "$W/repo"
export PYTHONPATH="$W/site:$W/repo/src:$W/repo" TUNEFORGE_BASE_TOKENIZER="$W/tokenizer" \
  TUNEFORGE_CACHE="$W/cache" TQDM_DISABLE=1 PYTHONUNBUFFERED=1 TUNEFORGE_REQUIRE_GPU=1
nvidia-smi -L
nvcc --version | tail -n 1

# llama.cpp's shared libraries with the CUDA backend, from the pinned sdist's sources, built
# while the torch tests run (they use the GPU, this the CPUs). FlashAttention's kernels are
# left out: half the build's time, and the offload test compares plain attention's logits.
(mkdir -p "$W/llama" && tar xJf "$BUNDLE/llama-src.tar.xz" -C "$W/llama" \
  && cmake -S "$W/llama" -B "$W/llama/build" -DBUILD_SHARED_LIBS=ON -DGGML_CUDA=ON \
       -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DGGML_NATIVE=OFF -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_FA=OFF \
       -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
       -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON \
  && timeout "${BUILD_TIMEOUT:-420}" cmake --build "$W/llama/build" -j "$(nproc)") \
  >"$LOG/llama-build.log" 2>&1 &
build=$!

"$PY" - <<'EOF' 2>&1 | tee "$LOG/toolchain.txt"
import importlib.metadata as md, yaml
import torch
params = yaml.safe_load(open("params.yaml"))
for name, want in params["toolchain"].items():
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = "not-installed"
    if have.split("+")[0] != str(want):
        print(f"toolchain {name}: params {want}, this machine {have}")
        params["toolchain"][name] = have
open("params.yaml", "w").write(yaml.safe_dump(params, sort_keys=False))
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF

if [ "${ONLY:-}" = offload ]; then
  torch_rc="not run (ONLY=offload)"
else
  "$PY" -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider -k "not offload" 2>&1 | tee "$LOG/torch-tests.log"
  torch_rc=$?
fi
wait "$build"
build_rc=$?
offload_rc=1
if [ "$build_rc" = 0 ]; then
  # the CUDA build's libraries replace the CPU build's (libmtmd stays: it is not built here);
  # their RUNPATH is $ORIGIN (CMAKE_BUILD_RPATH_USE_ORIGIN), so they load each other's copies
  # there, not the build tree's. The CPU build's package is kept aside for the bisection below.
  mkdir -p "$W/site-cpu" && cp -a "$W/site/llama_cpp" "$W/site-cpu/"
  rm -f "$W/site/llama_cpp/lib/"lib{ggml,llama}*
  find "$W/llama/build" -name "lib*.so*" -exec cp -a {} "$W/site/llama_cpp/lib/" \;
  ldd "$W/site/llama_cpp/lib/libllama.so" | grep -E "ggml|llama|cuda"
  "$PY" -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider -k offload 2>&1 | tee "$LOG/offload-test.log"
  offload_rc=$?
  if [ "$offload_rc" != 0 ]; then
    # where it broke: the test's f16 GGUF loaded and scored in fresh processes, outside pytest
    # (llama.cpp's log visible): by the CPU build, by the CUDA build with 0 and all layers
    # offloaded, and by the CUDA build after torch has taken the GPU (as in the test)
    gguf=$(ls -t /tmp/pytest-of-*/pytest-*/qlora*/models/changelog-actions/gguf/*-f16.gguf 2>/dev/null | head -n 1)
    for run in "cpu 0 no" "cuda 0 no" "cuda -1 no" "cuda 0 torch"; do
      set -- $run
      site=$W/site; [ "$1" = cpu ] && site=$W/site-cpu
      PYTHONPATH="$site:$PYTHONPATH" "$PY" -c '
import sys
if sys.argv[3] == "torch":
    import torch; torch.zeros(1, device="cuda")
import llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_gpu_layers=int(sys.argv[2]), n_ctx=256, logits_all=True, seed=0, verbose=True)
tokens = llm.tokenize(b"Fixed a crash when --output points to a directory.")
llm.eval(tokens)
print("scored", len(tokens), "tokens; last logits", [round(float(x), 4) for x in llm.scores[len(tokens) - 1][:3]])
' "$gguf" "$2" "$3" >>"$LOG/offload-bisect.log" 2>&1
      echo "bisect: $1 libraries, n_gpu_layers $2, torch first: $3 -> exit $?" | tee -a "$LOG/offload-bisect.log"
    done
  fi
else
  echo "llama.cpp CUDA build failed (exit $build_rc): $LOG/llama-build.log"; tail -n 20 "$LOG/llama-build.log"
fi
skipped=$(cat "$LOG"/*-test*.log | grep -c "skipped" || true)
echo "gpu-check (device): torch tests exit $torch_rc, llama.cpp build exit $build_rc, offload test exit $offload_rc, skip lines $skipped"
case "$torch_rc" in 0 | "not run"*) torch_ok=1 ;; *) torch_ok=0 ;; esac
[ "$torch_ok" = 1 ] && [ "$build_rc" = 0 ] && [ "$offload_rc" = 0 ] && [ "$skipped" = 0 ]
