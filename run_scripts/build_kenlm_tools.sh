#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary from the kenlm sdist on PyPI (they are packaged neither by
# Debian nor as a PyPI binary). Usage: build_kenlm_tools.sh [BIN_DIR] (default .venv/bin).
# Idempotent: exits at once when both tools already exist in BIN_DIR and run.
# Needs: a C++ compiler, cmake, Boost (program_options, system, thread, test) and zlib/bz2/lzma
# headers; `make apt` installs them on Debian/Ubuntu. About a minute on 2 cores.
set -euo pipefail
BIN_DIR=${1:-.venv/bin}
KENLM_VERSION=${KENLM_VERSION:-0.3.0}

# Both tools exit 1 on --help; their usage text shows that they load and run.
runs() {
  [[ -x "$BIN_DIR/lmplz" && -x "$BIN_DIR/build_binary" ]] || return 1
  [[ $("$BIN_DIR/lmplz" --help 2>&1 || true) == *Kneser-Ney* ]] &&
    [[ $("$BIN_DIR/build_binary" --help 2>&1 || true) == *Usage* ]]
}
if runs; then exit 0; fi

for tool in cmake make c++; do
  command -v "$tool" >/dev/null || { echo "build_kenlm_tools: '$tool' not found; run 'make apt' (or install build-essential cmake)" >&2; exit 1; }
done
PYTHON="$BIN_DIR/python"
[[ -x "$PYTHON" ]] || PYTHON=$(command -v python3)
mkdir -p "$BIN_DIR"

echo "building KenLM $KENLM_VERSION lmplz/build_binary into $BIN_DIR (about a minute)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG="$WORK/build.log"
fail() { echo "build_kenlm_tools: $1; last lines of the log:" >&2; tail -n 25 "$LOG" >&2; exit 1; }

# --no-binary kenlm (not :all:) so that pip does not compile cmake itself.
"$PYTHON" -m pip download -q --no-deps --no-binary kenlm "kenlm==$KENLM_VERSION" -d "$WORK" >"$LOG" 2>&1 \
  || fail "could not download the kenlm $KENLM_VERSION sdist from PyPI"
tar -xzf "$WORK"/kenlm-*.tar.gz -C "$WORK"
SRC=$(find "$WORK" -maxdepth 1 -type d -name 'kenlm-*' | head -1)
[[ -f "$SRC/CMakeLists.txt" ]] || fail "the kenlm sdist has no CMakeLists.txt"
# KENLM_MAX_ORDER=6: the paper uses 4-grams; 6 leaves room without slowing queries much.
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 >>"$LOG" 2>&1 \
  || fail "cmake configure failed (missing Boost or zlib/bz2/lzma headers? run 'make apt')"
cmake --build "$WORK/build" --target lmplz build_binary -j "$(nproc)" >>"$LOG" 2>&1 || fail "compilation failed"
# Copy to a temporary name first so an interrupted copy never leaves a half-written tool behind.
for tool in lmplz build_binary; do
  cp "$WORK/build/bin/$tool" "$BIN_DIR/.$tool.tmp" && mv -f "$BIN_DIR/.$tool.tmp" "$BIN_DIR/$tool"
done
runs || fail "the built tools do not run"
echo "KenLM tools installed in $BIN_DIR"
