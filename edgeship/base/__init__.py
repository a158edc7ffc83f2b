"""Base layer: the TensorFlow import shim, storage I/O (local and gs://), errors, version and image name. Imports nothing of the project."""
