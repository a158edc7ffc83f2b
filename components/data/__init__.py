"""The data step: the embedded synthetic dataset, its readers and the Dataset artifact."""
