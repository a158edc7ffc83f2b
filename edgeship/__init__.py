"""edgeship: train, quantize, evaluate and ship on-device object detectors."""

__version__ = "0.1.0"
