"""Per-speaker identity: a smooth random reshaping of the template head, fixed for a speaker.

The head is scaled anisotropically about its centre (up to ±6 % per axis) and displaced by a sum
of a few low-frequency 3-D sinusoids (wavelengths 8-30 cm, RMS about 1.5 mm), so noses, jaws and
cheeks differ between speakers while the mesh stays smooth and the topology unchanged.
"""

import numpy as np

N_WAVES = 12
WAVELENGTH_M = (0.08, 0.30)
DISPLACEMENT_RMS_M = 0.0015
SCALE_RANGE = 0.06


def speaker_head(neutral: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A speaker's neutral head [V, 3] metres from the template's `neutral` [V, 3] metres."""
    centre = neutral.mean(axis=0)
    scale = 1.0 + rng.uniform(-SCALE_RANGE, SCALE_RANGE, 3)
    directions = rng.standard_normal((N_WAVES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavenumbers = 2 * np.pi / rng.uniform(*WAVELENGTH_M, N_WAVES)
    phases = rng.uniform(0, 2 * np.pi, N_WAVES)
    amplitudes = rng.standard_normal((N_WAVES, 3))
    waves = np.sin((neutral - centre) @ (directions * wavenumbers[:, None]).T + phases)  # [V, N_WAVES]
    displacement = waves @ amplitudes
    displacement *= DISPLACEMENT_RMS_M / (np.sqrt((displacement**2).mean()) + 1e-12)
    return ((neutral - centre) * scale + centre + displacement).astype(np.float32)
