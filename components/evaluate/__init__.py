"""The evaluate step: COCO mAP, size, latency, robustness and calibration of every variant."""
