import numpy as np
import torch

from vlrface.preprocess import Preprocessing


def test_rgb_normalisation_matches_insightface_convention():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = 255  # pure red
    t = Preprocessing().to_tensor(img)
    assert t.shape == (1, 3, 2, 2)
    assert torch.allclose(t[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))


def test_bgr_models_get_channels_swapped_once():
    img = np.zeros((1, 1, 3), np.uint8)
    img[..., 0] = 255
    t = Preprocessing(color="BGR").to_tensor(img)
    assert torch.allclose(t[0, :, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    assert Preprocessing.from_dict(Preprocessing(color="BGR").to_dict()).color == "BGR"
