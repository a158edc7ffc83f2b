"""Auto-quantize: the fastest TFLite variant within an mAP budget (search, debugger, reports)."""
