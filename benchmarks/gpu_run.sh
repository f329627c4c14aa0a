#!/usr/bin/env bash
# One prepared recipe run on an offline CUDA machine (issue 20): install, check the GPU, synthesise the
# corpus on all cores, run the recipe under a hard time cap, and write what was measured to OUT_DIR.
#
#   make gpu-bundle                        # on a machine with the package registries: build/gpu-bundle/
#   benchmarks/gpu_run.sh OUT_DIR          # on the CUDA machine, from this repository (bundle beside it)
#
# The machine needs Python with torch, transformers and accelerate; everything else (datasets, soundfile,
# soxr, jiwer, pyctcdecode, kenlm, wordfreq, espeak-ng, KenLM's lmplz/build_binary) comes from the bundle,
# installed offline into BUNDLE/site and BUNDLE/prefix (nothing outside the bundle is changed).
# Without a GPU it says so and runs CONFIG on the CPU (default then configs/gpu_smoke.yaml).
#
# Environment: CONFIG (default configs/gpu.yaml), BUNDLE (default build/gpu-bundle), CAP_SECONDS (whole
# run, default 600), PYTHON (default python3), EXP_DIR / CORPUS_DIR (override the config's); for tests and
# odd machines: SKIP_PIP=1 (the Python packages are importable already, e.g. this project's venv),
# FORCE_BUNDLE=1 (the bundle's espeak-ng and KenLM tools even where the machine has its own), PCAUDIO_STUB=1
# (the libpcaudio stub even where the real one loads), INSTALL_ONLY=1 (stop after install and GPU check).
# OUT_DIR gets: gpu_run.log (this script), recipe.log (the recipe's output), env.txt (versions, GPU),
# run_report.md/.json (step times, training and PL throughput, MFU: benchmarks/gpu_report.py) and, if the
# recipe reached its last stage, report.md (the recipe's results table).
set -uo pipefail

OUT=${1:?usage: benchmarks/gpu_run.sh OUT_DIR}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=$(cd "$REPO" && realpath -m "${BUNDLE:-build/gpu-bundle}")
CAP=${CAP_SECONDS:-600}
PY=${PYTHON:-python3}
START=$SECONDS
mkdir -p "$OUT" && OUT=$(realpath "$OUT")
cd "$REPO" || exit 2
LOG=$OUT/gpu_run.log
: >"$LOG"

log() { echo "[gpu_run $(date +%T) +$((SECONDS - START))s] $*" | tee -a "$LOG"; }
die() { log "error: $*"; exit 2; }
left() { echo $((CAP - (SECONDS - START))); }

# ------------------------------------------------------------------------------------------ install
MODULES="datasets soundfile soxr jiwer pyctcdecode kenlm wordfreq yaml accelerate transformers torch"
importable() { "$PY" -c "import $(echo "$MODULES" | tr ' ' ',')" 2>/dev/null; }

install_wheels() {
    local site=$BUNDLE/site
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    if importable; then log "python packages: already importable"; return; fi
    [ "${SKIP_PIP:-0}" = 1 ] && die "SKIP_PIP=1 but $PY cannot import: $MODULES"
    ls "$BUNDLE"/wheels/*.whl >/dev/null 2>&1 || die "no wheels in $BUNDLE/wheels: run \`make gpu-bundle\` and copy build/gpu-bundle here (or set BUNDLE)"
    # --no-deps: the bundle is the closure minus what the CUDA image has (pyctcdecode's numpy<2 pin cannot
    # be met offline and is not needed); --target keeps the image's own packages untouched.
    "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$site" \
        "$BUNDLE"/wheels/*.whl >>"$LOG" 2>&1 || die "pip install from $BUNDLE/wheels failed (see $LOG)"
    importable || { "$PY" -c "import $(echo "$MODULES" | tr ' ' ',')" >>"$LOG" 2>&1; die "installed, but not importable (see $LOG)"; }
    log "python packages: installed from $BUNDLE/wheels into $site"
}

install_espeak() {
    if [ "${FORCE_BUNDLE:-0}" != 1 ] && espeak-ng --version >/dev/null 2>&1; then
        log "espeak-ng: $(espeak-ng --version | head -1)"; return
    fi
    ls "$BUNDLE"/debs/*.deb >/dev/null 2>&1 || die "espeak-ng missing and no .debs in $BUNDLE/debs (make gpu-bundle)"
    local prefix=$BUNDLE/prefix lib=$BUNDLE/prefix/usr/lib/x86_64-linux-gnu
    if [ ! -x "$prefix/usr/bin/espeak-ng" ]; then
        # Unpacked into a prefix, not installed: works without root and leaves / alone.
        command -v dpkg >/dev/null || die "dpkg is needed to unpack $BUNDLE/debs (or install espeak-ng)"
        for deb in "$BUNDLE"/debs/*.deb; do dpkg -x "$deb" "$prefix" || die "dpkg -x $deb failed"; done
    fi
    export PATH=$prefix/usr/bin:$PATH ESPEAK_DATA_PATH=$lib LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    if [ "${PCAUDIO_STUB:-0}" = 1 ] || ldd "$prefix/usr/bin/espeak-ng" | grep -q "not found"; then
        export LD_LIBRARY_PATH=$BUNDLE/stub:$LD_LIBRARY_PATH  # libpcaudio's PulseAudio/ALSA chain is missing
        log "espeak-ng: libpcaudio stub in use (--stdout needs no audio device; real one's libraries missing or PCAUDIO_STUB=1)"
    fi
    [ "$(espeak-ng --stdout test 2>>"$LOG" | head -c 4)" = RIFF ] || die "espeak-ng from $BUNDLE/debs does not run (see $LOG)"
    log "espeak-ng: $(espeak-ng --version | head -1)"
}

install_kenlm_tools() {  # found as modeling_mlpl.decoding.ngram_lm finds them: beside the Python, then on PATH
    local found
    if [ "${FORCE_BUNDLE:-0}" != 1 ] && found=$("$PY" -c "from modeling_mlpl.decoding.ngram_lm import find_kenlm_binary as f; f('build_binary'); print(f('lmplz'))" 2>/dev/null); then
        log "kenlm tools: $(dirname "$found")"; return
    fi
    [ -x "$BUNDLE/bin/lmplz" ] || die "lmplz missing and not in $BUNDLE/bin (make gpu-bundle)"
    export PATH=$BUNDLE/bin:$PATH LD_LIBRARY_PATH=$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    lmplz --help >/dev/null 2>&1 || ldd "$BUNDLE/bin/lmplz" | grep "not found" | tee -a "$LOG"
    log "kenlm tools: $BUNDLE/bin"
}

export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
install_wheels
install_espeak
install_kenlm_tools

# ---------------------------------------------------------------------------------------- GPU check
{
    echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -srm), $(nproc) cores"
    echo "git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) $(git -C "$REPO" status --porcelain 2>/dev/null | wc -l) changed files"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    "$PY" - <<'EOF'
import sys, torch, transformers, accelerate, datasets, numpy
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"accelerate {accelerate.__version__}, datasets {datasets.__version__}, numpy {numpy.__version__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"cuda: {torch.cuda.get_device_name(0)}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
          f"bf16 {torch.cuda.is_bf16_supported()}, cuda {torch.version.cuda}")
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    print(f"cuda: a bf16 matmul ran ({float((x @ x).float().abs().mean()):.1f})")
else:
    print("cuda: none")
EOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >>"$LOG"
if grep -q "^cuda: none" "$OUT/env.txt"; then
    CONFIG=${CONFIG:-configs/gpu_smoke.yaml}
    log "no CUDA GPU on this machine: running $CONFIG on the CPU"
elif grep -q "^cuda: a bf16 matmul ran" "$OUT/env.txt"; then
    CONFIG=${CONFIG:-configs/gpu.yaml}
    log "GPU: $(grep '^cuda: ' "$OUT/env.txt" | head -1 | cut -c7-)"
else
    die "the GPU/torch check failed (see $OUT/env.txt)"
fi
[ -f "$CONFIG" ] || die "CONFIG=$CONFIG not found"
if [ "${INSTALL_ONLY:-0}" = 1 ]; then log "INSTALL_ONLY=1: done ($(command -v espeak-ng))"; exit 0; fi

# ------------------------------------------------------------------------------------- corpus + recipe
RECIPE=("$PY" run_scripts/recipe.py --config "$CONFIG")
[ -n "${EXP_DIR:-}" ] && RECIPE+=(--exp_dir "$EXP_DIR")
[ -n "${CORPUS_DIR:-}" ] && RECIPE+=(--corpus_dir "$CORPUS_DIR")
EXP=$("$PY" - "$CONFIG" "${EXP_DIR:-}" <<'EOF'
import sys
from modeling_mlpl.recipe.recipe import RecipeConfig
print(sys.argv[2] or RecipeConfig.load(sys.argv[1]).exp_dir)
EOF
) || die "cannot read $CONFIG"
: >"$OUT/recipe.log"
run_capped() {  # the recipe with what is left of the cap (20 s kept for the report); 124 = cap reached
    local budget=$(($(left) - 20))
    [ "$budget" -gt 0 ] || return 124
    timeout --signal=INT --kill-after=30 "$budget" "${RECIPE[@]}" "$@" >>"$OUT/recipe.log" 2>&1
}
log "corpus (stage 0) on $(nproc) cores; cap: $CAP s for the whole run, $(left) s left"
run_capped --stop-stage 0 --threads "$(nproc)"
status=$?
RECIPE_START=$SECONDS
if [ $status -eq 0 ]; then
    log "recipe: $CONFIG, $EXP (log: $OUT/recipe.log)"
    run_capped
    status=$?
fi
WALL=$((SECONDS - START))
case $status in
    0) log "recipe finished in $((SECONDS - RECIPE_START)) s after the corpus; whole run $WALL s" ;;
    124 | 137) log "CAP REACHED: stopped after $WALL s (CAP_SECONDS=$CAP); finished steps are kept, a re-run resumes" ;;
    *) log "recipe failed (exit $status); the end of $OUT/recipe.log:"; tail -n 15 "$OUT/recipe.log" | tee -a "$LOG" ;;
esac

# ------------------------------------------------------------------------------------------- report
"$PY" benchmarks/gpu_report.py --exp "$EXP/seed0" --recipe_log "$OUT/recipe.log" --out "$OUT" \
    --wall_seconds "$WALL" >>"$LOG" 2>&1 || log "gpu_report.py failed (see $LOG)"
[ -f "$EXP/seed0/report/report.md" ] && cp "$EXP/seed0/report/report.md" "$OUT/report.md"
[ -f "$OUT/run_report.md" ] && cat "$OUT/run_report.md"
log "wrote $(ls "$OUT" | tr '\n' ' ')"
exit $status
