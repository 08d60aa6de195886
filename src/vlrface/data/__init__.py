"""Data: synthetic faces, VLR degradation, dataset readers and training batches."""

from .datasets import DATA_KINDS, TrainData, build_train_data
from .degrade import degrade, make_ui, random_vlr
from .readers import CROPS, ImageList, SkipReport, lfw_vlr_split, read_att, read_image, read_image_folder, to_face
from .synth import FEATURES, SynthFaces

__all__ = [
    "CROPS", "DATA_KINDS", "FEATURES", "ImageList", "SkipReport", "SynthFaces", "TrainData",
    "build_train_data", "degrade", "lfw_vlr_split", "make_ui", "random_vlr", "read_att",
    "read_image", "read_image_folder", "to_face",
]  # fmt: skip
