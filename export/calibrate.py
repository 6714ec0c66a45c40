"""Calibrate an exported model's probabilities: fit its temperature on a validation split and store it in a copy.

    python -m export.calibrate --model ckpt/ferplus_mobilenetv3_large075_72px.onnx \\
        --data ferplus:../shared/datasets/ferplus --output runs/calibrated.onnx

The temperature T minimises the negative log-likelihood of the split's labels under softmax(logits / T)
(`training.calibration.fit_temperature`; one T for all classes, so every face keeps its top label). It goes into the
model's metadata (`runtime.metadata.ModelMetadata.temperature`), which the runtime applies to every face. Prints the
expected calibration error (15 bins, top label) on the split before and after; report it on the test split with
`fer-eval --model OUTPUT --split test --calibration`. The output is written whole or not at all and never over the
input.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from runtime.metadata import ModelError, ModelMetadata
from training.calibration import expected_calibration_error, fit_temperature, softmax
from training.datasets import DatasetError, load_dataset
from training.eval import onnx_logits
from training.options import HelpFormatter


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.calibrate", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="the exported model (.onnx)")
    p.add_argument("--data", required=True, help="KIND:PATH, e.g. ferplus:../shared/datasets/ferplus")
    p.add_argument("--split", default="valid", choices=("train", "valid"),
                   help="the split the temperature is fitted on (never the test split)")
    p.add_argument("--output", required=True, help="the calibrated copy (.onnx); not the input")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    source, output = Path(args.model), Path(args.output)
    if output.resolve() == source.resolve():
        print(f"calibrate: error: --output {output} is the input model; give another file (it is never overwritten)",
              file=sys.stderr)
        return 2
    try:
        import onnx

        from export.to_onnx import save_atomically, set_metadata
        from runtime import ExpressionClassifier

        classifier = ExpressionClassifier(source)
        meta = classifier.metadata
        dataset = load_dataset(args.data, args.split, list(meta.labels))
    except ImportError as exc:
        print(f"calibrate: error: {exc.name} is missing: pip install 'fer-edge[train]'", file=sys.stderr)
        return 2
    except (ModelError, DatasetError) as exc:
        print(f"calibrate: error: {exc}", file=sys.stderr)
        return 2
    logits = onnx_logits(classifier, dataset)
    truth = dataset.hard_labels
    temperature = fit_temperature(logits, truth)
    before = expected_calibration_error(softmax(logits), truth)
    after = expected_calibration_error(softmax(logits, temperature), truth)
    accuracy = float(np.mean(logits.argmax(1) == truth))
    proto = onnx.load(str(source))
    props = {p.key: p.value for p in proto.metadata_props}
    calibrated = replace(ModelMetadata.from_props(props, source), temperature=temperature)
    set_metadata(proto, {**props, **calibrated.to_props()})
    save_atomically(proto, output)
    print(f"{source.name} on {args.data.split(':')[0]} {args.split} ({len(truth)} faces, accuracy "
          f"{100 * accuracy:.2f}%, unchanged): temperature {temperature}; expected calibration error "
          f"{100 * before:.2f}% -> {100 * after:.2f}%; wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
