"""`edgeship train` and `edgeship qat`: the float detector and its quantization-aware fine-tuning."""
from __future__ import annotations

import argparse

from components.qat.settings import OBJECTIVES, QAT
from components.train.settings import TRAIN
from edgeship.detection.early_stop import METRICS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train the SSDLite MobileNetV2 detector (from scratch or warm-started)",
                              description="Train the detector on a Dataset artifact; write a Model "
                                          "artifact (weights.h5, model_config.json, anchors.npy, "
                                          "saved_model/, history.json, logs/).")
    p.add_argument("--data", required=True, help="dataset directory (dataset.json)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--epochs", type=int, default=TRAIN.epochs, help="maximum epochs (see --early-stop)")
    p.add_argument("--batch-size", type=int, default=TRAIN.batch_size, help="batch size")
    p.add_argument("--alpha", type=float, default=TRAIN.alpha, help="MobileNetV2 width multiplier")
    p.add_argument("--input-size", type=int, help="square input side, a multiple of 32 (default: the data's)")
    p.add_argument("--learning-rate", type=float, default=TRAIN.learning_rate, help="peak learning rate")
    p.add_argument("--patience", type=int, default=TRAIN.patience, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=TRAIN.seed, help="random seed")
    p.add_argument("--anchors", choices=("fit", "default"), default=TRAIN.anchors,
                   help="fit: cluster the training boxes (a stride-8 level for small objects); "
                        "default: the built-in anchors")
    p.add_argument("--backbone-weights", default=TRAIN.backbone_weights, metavar="none|imagenet|PATH",
                   help="start the backbone from: none, imagenet (downloads), a Keras MobileNetV2 "
                        "weights file or an edgeship Model artifact (local or gs://)")
    p.add_argument("--frozen-epochs", type=int, default=TRAIN.frozen_epochs,
                   help="epochs with the pretrained backbone frozen before fine-tuning everything")
    p.add_argument("--init-from", default=TRAIN.init_from, metavar="MODEL_DIR",
                   help="continue from an earlier Model artifact (backbone only if the labels changed)")
    p.add_argument("--head", choices=("ssd", "fpn"), default=TRAIN.head,
                   help="ssd: a head on each feature level; fpn: FPN-lite top-down merge first")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=TRAIN.deterministic,
                   help="TensorFlow's deterministic ops: the same --seed gives the same model (a few %% slower)")
    p.add_argument("--min-steps", type=int, default=TRAIN.min_steps,
                   help="raise the epochs of a small train split (patience alike) until the run makes this "
                        "many optimizer steps; 0 = --epochs exactly (the pipeline uses 2700)")
    p.add_argument("--early-stop", choices=METRICS, default=TRAIN.early_stop,
                   help="which epoch is kept and ends the run after --patience epochs without a better "
                        "one: val_loss, val_map (the model's val mAP after every epoch), none (the last)")
    p.set_defaults(func=_train)

    q = subparsers.add_parser("qat", help="quantization-aware fine-tuning of a trained detector",
                              description="Fine-tune the whole detector with tfmot QAT; write the QAT "
                                          "model directory and the float vs QAT step time.")
    q.add_argument("--model", required=True, help="the train step's model directory")
    q.add_argument("--data", required=True, help="dataset directory (dataset.json)")
    q.add_argument("--out", required=True, help="output directory")
    q.add_argument("--epochs", type=int, default=QAT.epochs,
                   help="fine-tuning epochs, a minimum: raised when they give fewer than --min-steps steps")
    q.add_argument("--min-steps", type=int, default=QAT.min_steps,
                   help="optimizer steps at least (small datasets get more epochs); 0: exactly --epochs")
    q.add_argument("--batch-size", type=int, default=QAT.batch_size, help="batch size")
    q.add_argument("--learning-rate", type=float, default=QAT.learning_rate,
                   help="peak learning rate (5%% linear warm-up, then cosine decay to 1%%)")
    q.add_argument("--patience", type=int, default=QAT.patience,
                   help="early-stopping patience in epochs (stretched when --min-steps raises the epochs)")
    q.add_argument("--seed", type=int, default=QAT.seed, help="random seed")
    q.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=QAT.freeze_bn,
                   help="BatchNorm in inference mode: moving mean/variance frozen, gamma/beta still train")
    q.add_argument("--freeze-ranges", action=argparse.BooleanOptionalAction, default=QAT.freeze_ranges,
                   help="keep the activation ranges at their calibrated values (no moving average)")
    q.add_argument("--objective", choices=OBJECTIVES, default=QAT.objective,
                   help="distill: towards the float model's own outputs; labels: the labels; "
                        "both: the two losses summed")
    q.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=QAT.deterministic,
                   help="TensorFlow's deterministic ops: the same --seed gives the same model")
    q.set_defaults(func=_qat)


def _train(args: argparse.Namespace) -> int:
    from components.train.core import train

    size = (args.input_size, args.input_size) if args.input_size else None
    r = train(args.data, args.out, epochs=args.epochs, batch_size=args.batch_size, alpha=args.alpha,
              input_size=size, learning_rate=args.learning_rate, patience=args.patience, seed=args.seed,
              anchors=args.anchors, backbone_weights=args.backbone_weights,
              frozen_epochs=args.frozen_epochs, init_from=args.init_from, head=args.head,
              deterministic=args.deterministic, min_steps=args.min_steps, early_stop=args.early_stop)
    print(f"model: {r.model_dir}")
    print(f"epochs: {r.epochs_run} (best {r.best_epoch}, val loss {r.best_val_loss:.4f}), "
          f"{r.train_seconds:.0f} s, {r.ms_per_image:.2f} ms/image")
    if r.val_map50 is not None:
        print(f"val mAP@.5 {r.val_map50:.4f}, mAP@[.5:.95] {r.val_map:.4f}")
    return 0


def _qat(args: argparse.Namespace) -> int:
    from components.qat.core import qat

    r = qat(args.model, args.data, args.out, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, seed=args.seed, patience=args.patience, min_steps=args.min_steps,
            freeze_bn=args.freeze_bn, freeze_ranges=args.freeze_ranges, objective=args.objective,
            deterministic=args.deterministic)
    s = r.schedule
    print(f"model: {r.model_dir}")
    print(f"fine-tune: {r.epochs_run} of {s['epochs']} epochs x {s['steps_per_epoch']} steps ({s['reason']})")
    print(f"step time: float {r.float_ms_per_image:.2f} ms/image, QAT {r.qat_ms_per_image:.2f} ms/image "
          f"({r.step_time_ratio:.2f}x)")
    if r.val_map50 is not None:
        print(f"val mAP@.5 {r.val_map50:.4f}, mAP@[.5:.95] {r.val_map:.4f} (fake-quant Keras model)")
    return 0
