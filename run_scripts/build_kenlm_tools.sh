#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary from the kenlm sdist on PyPI (not packaged by Debian
# nor as a PyPI binary). Idempotent: does nothing when both binaries exist in $1.
set -euo pipefail
BIN_DIR=${1:-.venv/bin}
if [[ -x "$BIN_DIR/lmplz" && -x "$BIN_DIR/build_binary" ]]; then exit 0; fi
echo "building KenLM lmplz/build_binary (about a minute)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN_DIR/python" -m pip download -q --no-deps --no-binary kenlm kenlm==0.3.0 -d "$WORK"
tar -xzf "$WORK"/kenlm-*.tar.gz -C "$WORK"
SRC=$(find "$WORK" -maxdepth 1 -type d -name 'kenlm-*' | head -1)
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 >/dev/null
cmake --build "$WORK/build" --target lmplz build_binary -j "$(nproc)" >/dev/null
cp "$WORK/build/bin/lmplz" "$WORK/build/bin/build_binary" "$BIN_DIR/"
echo "KenLM tools installed in $BIN_DIR"
