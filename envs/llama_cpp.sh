#!/usr/bin/env bash
# llama-cpp-python, the engine of stage gguf and `sophia serve`, is published as an sdist only: it
# compiles llama.cpp (~10 min on 2 cores). Its wheel is built once into a cache that every later
# install reuses, and the same sdist's vendor/llama.cpp (convert_hf_to_gguf.py, conversion/, gguf-py/:
# the converter the gguf stage runs) is unpacked next to it. Idempotent; `make setup` runs it.
# Usage: envs/llama_cpp.sh <python of the environment>      Cache: $SOPHIA_CACHE or ~/.cache/sophia
set -euo pipefail
PY=$1
HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=$(sed -n 's/^llama-cpp-python==//p' "$HERE/llama.txt")
CACHE=${SOPHIA_CACHE:-$HOME/.cache/sophia}
SDIST=$CACHE/sdist/llama_cpp_python-$VERSION.tar.gz
WHEELS=$CACHE/wheels
SRC=$CACHE/llama-cpp-python-$VERSION/vendor/llama.cpp
mkdir -p "$CACHE/sdist" "$WHEELS"
[ -f "$SDIST" ] || "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  "llama-cpp-python==$VERSION" -d "$CACHE/sdist"
if ! compgen -G "$WHEELS/llama_cpp_python-$VERSION-*.whl" >/dev/null; then
  echo "building llama-cpp-python $VERSION (compiles llama.cpp, ~10 min on 2 cores; cached in $WHEELS)"
  # Only what the bindings load: no multimodal library (LLAVA_BUILD); ggml's own thread pool instead
  # of OpenMP, since torch brings its own libgomp into the same process.
  CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAVA_BUILD=OFF -DGGML_OPENMP=OFF"} CMAKE_BUILD_PARALLEL_LEVEL=${CORES:-2} \
    nice -n 10 "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WHEELS" "$SDIST"
fi
"$PY" -m pip install --quiet --disable-pip-version-check -c "$HERE/constraints.txt" --find-links "$WHEELS" \
  "llama-cpp-python==$VERSION"
if [ ! -f "$SRC/convert_hf_to_gguf.py" ]; then
  tmp=$(mktemp -d "$CACHE/.unpack.XXXXXX")
  top=llama_cpp_python-$VERSION/vendor/llama.cpp
  tar -xzf "$SDIST" -C "$tmp" "$top/convert_hf_to_gguf.py" "$top/conversion" "$top/gguf-py"
  mkdir -p "$(dirname "$SRC")"
  rm -rf "$SRC"
  mv "$tmp/$top" "$SRC"
  rm -rf "$tmp"
fi
