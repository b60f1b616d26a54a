#!/usr/bin/env bash
# Build .whl/: the wheels benchmarks/gpu_suite.py needs beyond the GPU machine's own Python 3.12
# (its image has torch, transformers, sentencepiece, h5py, pandas, scikit-learn, einops, safetensors,
# ninja, msgpack, psutil, py-cpuinfo, nvidia-ml-py). .whl/ is git-ignored; carry it to the machine
# and install it there with `pip install --no-index --no-deps --target` (README, Benchmarks).
#
#   bash benchmarks/gpu_wheels.sh            # uses .venv/bin/python (needs pip, and torch for DeepSpeed)
#   PYTHON=/path/to/python bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
LIMIT_MB=48   # the working tree and the carried folders travel in 64 MiB together

rm -rf .whl
mkdir .whl
# cp312 manylinux wheels for x86-64, versions as in the project's environment. pip matches the
# manylinux tag exactly, so several are listed.
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl \
    pysam==0.24.1 pydantic-core==2.50.5 \
    pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5 hjson==3.1.0
# pyliftover publishes a source distribution only: build its pure-Python wheel here.
"$PYTHON" -m pip wheel --no-deps -w .whl pyliftover==0.4.1
# DeepSpeed built from its source with no ops ahead: a pure-Python py3-none-any wheel (the suite
# needs none of its compiled ops: training uses torch's AdamW). Never a cached or prebuilt binary
# wheel: those carry ops compiled for this machine's Python. Building imports torch, hence no
# build isolation.
DS_BUILD_OPS=0 "$PYTHON" -m pip wheel --no-deps --no-build-isolation --no-binary deepspeed --no-cache-dir \
    -w .whl deepspeed==0.19.8
for wheel in .whl/deepspeed-*.whl; do
    case "$wheel" in
        *-py3-none-any.whl) ;;
        *) echo "error: $wheel is not a pure-Python wheel" >&2; exit 1 ;;
    esac
done

ls -1 .whl
size_mb=$(du -sm .whl | cut -f1)
echo ".whl: ${size_mb} MB"
if (( size_mb > LIMIT_MB )); then
    echo "error: .whl is ${size_mb} MB, more than ${LIMIT_MB} MB: it would not travel with the working tree" >&2
    exit 1
fi
