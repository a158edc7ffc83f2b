"""Importing users' datasets: COCO detection JSON, Pascal VOC and TF Object Detection API
TFRecords (local or gs://) into the Dataset artifact; the image normalization and resize
policies they share with the rest of the library. Entry point: ``importer.import_dataset``."""
