#!/usr/bin/env bash
# The recipe's training stages on a lent GPU (the `device` tool's machine), from packed files, the results
# written to $OUT for the trip back. Prepare here (the .gpu folder is ignored by git; it travels with `carry`):
#   python -m training.pack data --out .gpu/ferplus.npz            # FER+ train + valid, ~20 MiB
#   python -m training.pack weights --arch efficientnet_lite0 --out .gpu/lite0_imagenet.pth
#   python -m training.pack weights --arch efficientnet_lite2 --out .gpu/lite2_imagenet.pth
# then run there, in one call of at most 600 s with carry [".gpu"]:
#   FER_EDGE_COMMIT=<this commit> bash training/gpu_recipe.sh      # the device's own git may name another commit
# The teachers (192 and 128 px) and the Lite0 base train at once, then the two students (Lite0 from the base, and
# MobileNetV3 from scratch), both distilled from the teachers. Each step has a time budget (seconds,
# TIME_BUDGET_TEACHERS / TIME_BUDGET_STUDENTS) from which fer-train picks its epochs, and a hard timeout; the
# students' checkpoints and the teachers' and the base's (fp16) come back whatever happens to a later stage. Seen on a lent H200 (session 12, two trainings at once, 7 loading processes each, batch 128): a Lite2
# teacher at 128 or 192 px ran about 20 steps/s (about 13 s per epoch with validation), the first epoch 80-100 s
# (start-up); the machine started in about 40 s. Neither the 128 px teacher (no faster than the 192 px one) nor the
# student (two teachers' forward passes on top) was slower, so the steps were bound by something other than the
# GPU's arithmetic: per-step overhead, the loading processes, or the two processes time-sharing the GPU. Fewer,
# larger steps (BATCH 256 here, 128 in the CPU recipe) address the first; PROBE=1 first times (about a minute) a Lite2
# step at 192 px and the data loading with 7 and 14 processes (benchmarks/train_speed.py) to tell the others apart
# (up to 90 s more: lower TEACHERS_TIMEOUT and TIME_BUDGET_TEACHERS by as much to stay within one 600 s call).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu}"
RUN=/tmp/recipe
mkdir -p "$OUT" "$RUN"
export PYTHONUNBUFFERED=1
nvidia-smi -L || true
"${PYTHON:-python3}" -c "import torch, timm, cv2; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
PY="${PYTHON:-python3}"
settings=(DEVICE="${DEVICE:-cuda}" WORKERS="${WORKERS:-5}" PARALLEL=1 BATCH="${BATCH:-256}" PYTHON="$PY" MNV3=1
          TEACHER_SIZES="${TEACHER_SIZES:-192 128}" LITE0_WEIGHTS=.gpu/lite0_imagenet.pth LITE2_WEIGHTS=.gpu/lite2_imagenet.pth
          EPOCHS_TEACHERS="${EPOCHS_TEACHERS:-40}" EPOCHS_BASE="${EPOCHS_BASE:-60}" EPOCHS_LITE0="${EPOCHS_LITE0:-30}"
          EPOCHS_MNV3="${EPOCHS_MNV3:-200}"
          TIME_BUDGET_TEACHERS="${TIME_BUDGET_TEACHERS:-290}" TIME_BUDGET_STUDENTS="${TIME_BUDGET_STUDENTS:-190}")
back() {  # copy what exists so far into $OUT
    for run in teacher_lite2_192 teacher_lite2_128 base_lite0_96; do
        [[ -f "$RUN/$run/best.pth" && ! -f "$OUT/$run.fp16.pth" ]] && "$PY" -m training.pack half "$RUN/$run/best.pth" "$OUT/$run.fp16.pth"
    done
    for run in student_lite0_96 student_mnv3_72; do
        [[ -f "$RUN/$run/best.pth" ]] && cp "$RUN/$run/best.pth" "$OUT/$run.pth"
    done
    tar czf "$OUT/logs.tgz" -C "$RUN" --exclude='*.pth' --exclude='*.tmp' .
}
trap back EXIT
if [[ "${PROBE:-}" == 1 ]]; then
    timeout 90 "$PY" -m benchmarks.train_speed --device "${DEVICE:-cuda}" --arch efficientnet_lite2:192 \
        --batch-size "${BATCH:-256}" --data ferplus:.gpu/ferplus.npz --workers 7 14 --steps 3 --json "$OUT/probe.json" \
        2>/dev/null
fi
env "${settings[@]}" STAGES="teachers base" timeout "${TEACHERS_TIMEOUT:-330}" bash training/recipe.sh .gpu/ferplus.npz "$RUN"
back
env "${settings[@]}" STAGES=students timeout "${STUDENTS_TIMEOUT:-230}" bash training/recipe.sh .gpu/ferplus.npz "$RUN"
