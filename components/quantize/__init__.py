"""The quantize step: every TFLite scheme with detection post-processing inside, op reports,
validate → convert → validate, and Core ML packages (logic in core.py; KFP interface in component.py)."""
