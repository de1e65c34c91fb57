#!/usr/bin/env bash
# Builds the git-ignored wheel folders the device scripts carry to the GPU machine (Python 3.12,
# no Ray, trl, datasets or cattrs there). A new session's checkout has none of them; run this first:
#   bash bench/make_carry.sh            (repo root; ~1 min; needs PyPI and ../shared/tools)
# .whl      attrs, cattrs, pluggy, pytest and Ray's cp312 dependencies, plus ray_trim.tar.xz
#           (bench/run_gpu.sh, run_sweep_gpu.sh, run_compare_gpu.sh, run_fsdp2_gpu.sh)
# .whl-trl  trl 1.16.0, datasets, dill, multiprocess and a copy of the TRL anchor folder
#           (gpu_bench.py runs TRL's GRPOTrainer in the same run)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$@"; }
mkdir -p .whl .whl-trl
dl .whl attrs cattrs pluggy packaging typing_extensions pytest iniconfig pytest-timeout \
  jsonschema jsonschema-specifications referencing rpds-py msgpack click 'protobuf<7' filelock
[ -f .whl/ray_trim.tar.xz ] || (cd .whl && bash ../../shared/tools/make_ray_trim.sh)
dl .whl-trl trl==1.16.0 datasets==5.2.0 dill multiprocess
rm -rf .whl-trl/trl_anchor && cp -r ../shared/tools/anchors/trl_anchor .whl-trl/
grep -qx '.whl\*' .git/info/exclude 2>/dev/null || echo '.whl*' >> .git/info/exclude
du -sh .whl .whl-trl
