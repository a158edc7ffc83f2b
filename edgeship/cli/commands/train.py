"""`edgeship train` and `edgeship qat`: the float detector and its quantization-aware fine-tuning."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train the SSDLite MobileNetV2 detector from scratch",
                              description="Train the detector on a Dataset artifact; write a Model "
                                          "artifact (weights.h5, model_config.json, anchors.npy, "
                                          "saved_model/, history.json, logs/).")
    p.add_argument("--data", required=True, help="dataset directory (dataset.json)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--epochs", type=int, default=60, help="maximum epochs; early stopping on val loss (default 60)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width multiplier (default 0.35)")
    p.add_argument("--input-size", type=int, help="square input side, a multiple of 32 (default: the data's)")
    p.add_argument("--learning-rate", type=float, default=6e-3, help="peak learning rate (default 6e-3)")
    p.add_argument("--patience", type=int, default=8, help="early-stopping patience in epochs (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_train)

    q = subparsers.add_parser("qat", help="quantization-aware fine-tuning of a trained detector",
                              description="Fine-tune the whole detector with tfmot QAT; write the QAT "
                                          "model directory and the float vs QAT step time.")
    q.add_argument("--model", required=True, help="the train step's model directory")
    q.add_argument("--data", required=True, help="dataset directory (dataset.json)")
    q.add_argument("--out", required=True, help="output directory")
    q.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    q.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    q.add_argument("--learning-rate", type=float, default=2e-4, help="learning rate (default 2e-4)")
    q.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    q.set_defaults(func=_qat)


def _train(args: argparse.Namespace) -> int:
    from components.train.core import train

    size = (args.input_size, args.input_size) if args.input_size else None
    r = train(args.data, args.out, epochs=args.epochs, batch_size=args.batch_size, alpha=args.alpha,
              input_size=size, learning_rate=args.learning_rate, patience=args.patience, seed=args.seed)
    print(f"model: {r.model_dir}")
    print(f"epochs: {r.epochs_run} (best {r.best_epoch}, val loss {r.best_val_loss:.4f}), "
          f"{r.train_seconds:.0f} s, {r.ms_per_image:.2f} ms/image")
    if r.val_map50 is not None:
        print(f"val mAP@.5 {r.val_map50:.4f}, mAP@[.5:.95] {r.val_map:.4f}")
    return 0


def _qat(args: argparse.Namespace) -> int:
    from components.qat.core import qat

    r = qat(args.model, args.data, args.out, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, seed=args.seed)
    print(f"model: {r.model_dir}")
    print(f"step time: float {r.float_ms_per_image:.2f} ms/image, QAT {r.qat_ms_per_image:.2f} ms/image "
          f"({r.step_time_ratio:.2f}x)")
    if r.val_map50 is not None:
        print(f"val mAP@.5 {r.val_map50:.4f}, mAP@[.5:.95] {r.val_map:.4f} (fake-quant Keras model)")
    return 0
