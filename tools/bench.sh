#!/usr/bin/env bash
# `make bench`: the project's benchmarks, each bounded to a few minutes. KILN_BIN is the
# binary under test. Each section prints its own figures; ratios are against baselines
# measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN_BIN:-./kiln}
echo "# kiln benchmarks ($(nproc) cores)"
