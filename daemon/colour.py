"""The lamp's colour transform: hue rotation and saturation of the small lamp frame, before scaling."""

from __future__ import annotations

import math

import numpy as np

# Luma weights of the colour matrices of the W3C Filter Effects spec (feColorMatrix hueRotate and
# saturate): both keep a pixel's luminance, so turning the hue does not change the lamp's brightness.
LUMA = np.array([0.213, 0.715, 0.072])


def saturation_matrix(saturation: float) -> np.ndarray:
    """3x3 RGB matrix scaling the saturation (0 = grey, 1 = unchanged, 2 = twice as vivid)."""
    grey = np.tile(LUMA, (3, 1))
    return grey + saturation * (np.eye(3) - grey)


def hue_matrix(degrees: float) -> np.ndarray:
    """3x3 RGB matrix rotating the hue by `degrees` around the grey axis (luminance kept)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    grey = np.tile(LUMA, (3, 1))
    turn = np.array([[-0.213, -0.715, 0.928],
                     [0.143, 0.140, -0.283],
                     [-0.787, 0.715, 0.072]])
    return grey + c * (np.eye(3) - grey) + s * turn


class ColourTransform:
    """Hue rotation then saturation, applied to uint8 RGB frames (..., 3); cheap at lamp size."""

    def __init__(self, *, hue_degrees: float = 0.0, saturation: float = 1.0) -> None:
        self.hue_degrees = float(hue_degrees)
        self.saturation = float(saturation)
        self.identity = self.hue_degrees % 360.0 == 0.0 and self.saturation == 1.0
        matrix = saturation_matrix(self.saturation) @ hue_matrix(self.hue_degrees)
        self._matrix_t = matrix.T.astype(np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The frame recoloured (a new array), or the frame itself when the transform is identity."""
        if self.identity:
            return frame
        mixed = frame.astype(np.float32) @ self._matrix_t
        np.clip(mixed, 0.0, 255.0, out=mixed)
        return np.rint(mixed, out=mixed).astype(np.uint8)
