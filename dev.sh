#!/usr/bin/env bash
# The two Quick start commands:
#   ./dev.sh run    install dependencies, build, start corrald on 127.0.0.1:8080 with an example
#   ./dev.sh test   install dependencies, build (normal and ASan+UBSan), run the whole test suite twice
set -euo pipefail
cd "$(dirname "$0")"

jobs=$(nproc)

build() {  # build DIR BUILD_TYPE [extra cmake args]
  local dir=$1 type=$2
  shift 2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

case "${1:-}" in
  run)
    scripts/install-deps.sh
    build build/release RelWithDebInfo
    echo
    echo "corrald is starting on http://127.0.0.1:8080 — try the example in another terminal:"
    echo "  curl -s localhost:8080/v1/run -H \"authorization: Bearer \$(cat data/admin.token)\" -H 'content-type: application/json' -d @examples/quickstart.json"
    echo
    exec build/release/src/cmd/corrald --listen 127.0.0.1:8080 --data-dir ./data --policy examples/policy.yaml
    ;;
  test)
    scripts/install-deps.sh
    build build/release RelWithDebInfo
    (cd build/release && ctest --output-on-failure -j "$jobs")
    # Benchmarks measure nothing under the sanitizers: the second pass builds only what it tests.
    # Line tables only (-g1) are all a sanitizer report needs for file and line, and a heavy test
    # file compiles in 24 s instead of 29 with full debug information.
    build build/asan Debug -DCORRAL_SANITIZE=ON -DCORRAL_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS_DEBUG=-g1
    (cd build/asan && ctest --output-on-failure -j "$jobs")
    ;;
  *)
    echo "usage: ./dev.sh run | test" >&2
    exit 2
    ;;
esac
