#!/bin/bash
# Everything that needs a GPU, in one call on a lent GPU machine (the `device` tool's `run`):
# build for the GPU's architecture, the kernel checks and GPU tests (tests/gpu), then the GPU
# benchmarks when present; logs and JSON go to $OUT (or ./device_out).
#
# The device image has Python 3.12 with torch, transformers, peft, numpy and nvcc, but not
# scipy-openblas32 and oneDNN (which _C links). Before the call, here, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl scipy-openblas32==0.3.34.481.3
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl/onednn \
#       onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0
# and call run(command="bash tools/device_check.sh", carry=[".whl"], timeout_s=...).
# LORAFAST_SANITIZE=1 runs the kernel checks under compute-sanitizer (memcheck).
set -u -o pipefail
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
if ls .whl/onednn/*.whl >/dev/null 2>&1; then # data files (lib/, include/) need a prefix, not --target
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --prefix /tmp/onednn .whl/onednn/*.whl || exit 1
    export PYTHONPATH=$(python3 -c "import sysconfig; print(sysconfig.get_path('purelib', vars={'base': '/tmp/onednn'}))")${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
echo "== build (sm_$arch)"
LORAFAST_CUDA_ARCHS=$arch python3 setup.py -q build_ext --inplace -j 16 2>&1 | tail -20 | tee "$OUT/build.log" || exit 1
python3 -c "import lorafast, json; print(json.dumps(lorafast.build_info()))" | tee "$OUT/build_info.json"
# ddp_backend="nccl" (tests/gpu/test_ddp_gpu.py): the gpu extra's nvidia-nccl-cu13 wheel (206 MB: too large to
# carry), else the NCCL wheel the image's CUDA torch brought (nvidia/nccl/lib/libnccl.so.2 of cu13 or cu12)
if [ -z "${LORAFAST_NCCL_LIBRARY:-}" ]; then
    nccl=$(python3 -c "import nvidia.nccl as n, os; [print(p) for d in n.__path__ for p in [os.path.join(d, 'lib', 'libnccl.so.2')] if os.path.exists(p)]" 2>/dev/null | head -1)
    [ -n "$nccl" ] && export LORAFAST_NCCL_LIBRARY=$nccl
fi
echo "NCCL: ${LORAFAST_NCCL_LIBRARY:-the nvidia-nccl-cu13 wheel if installed}" | tee "$OUT/nccl.txt"
echo "== tests/gpu"
python3 -m pytest -q -rs tests/gpu --ignore tests/gpu/test_kernels_emulated.py --ignore tests/gpu/test_model_emulated.py 2>&1 | tee "$OUT/tests_gpu.log"
tests_rc=$?
for bench in bench/gpu_bench*.py; do
    [ -e "$bench" ] || continue
    echo "== $bench"
    name=$(basename "$bench" .py)
    python3 "$bench" --json "$OUT/$name.json" 2>&1 | tee "$OUT/$name.log"
done
# the measured kernel time per part of a training step (the README's table), where nsys is
if command -v nsys >/dev/null && [ -d bench/gpu_inputs ]; then
    for workload in roberta mistral; do
        echo "== kernel time per part of a $workload step (nsys)"
        report="$OUT/parts_$workload"
        nsys profile --force-overwrite true -o "$report" python3 bench/gpu_parts.py "$workload" --steps 20 \
            > "$report.log" 2>&1 &&
            nsys stats --force-export=true --report cuda_gpu_kern_sum --format csv -o "$report" "$report.nsys-rep" \
                >> "$report.log" 2>&1 &&
            python3 tools/kernel_parts.py "${report}_cuda_gpu_kern_sum.csv" \
                --steps "$(sed -n 's/^steps run: //p' "$report.log")" | tee "$report.txt"
    done
fi
exit $tests_rc
