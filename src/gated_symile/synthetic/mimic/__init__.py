"""Synthetic raw MIMIC-style records: MIMIC-IV hosp, MIMIC-IV-ECG, MIMIC-CXR and MIMIC-CXR-JPG.

``generate_mimic(out, MimicSynthConfig(...))`` writes byte-format-faithful copies of the three
releases (layout in :mod:`.releases`) whose content follows a documented latent model
(:mod:`.latents`, docs/synthetic-mimic.md):

* pairwise: cardiac size ``h`` shows in the ECG (QRS voltage/width, T) and the CXR heart shadow;
  fluid/inflammation ``f`` shows in the labs (WBC, creatinine, lactate, ...) and CXR lung haze;
* higher order: the CXR pleural effusion is ``XNOR(a, b)`` of an ECG-borne bit ``a`` (heart rate)
  and a labs-borne bit ``b`` (potassium/magnesium/phosphate): independent of each modality alone,
  so Symile can use it and pairwise CLIP cannot.

``signal_strength`` sets the coupling ``w = tanh(1.5 s)`` of every displayed copy (0: independent).
Every branch of the Symile-MIMIC cohort rules is injected at a controlled rate
(:class:`MimicSynthConfig` ``*_rate`` fields); unreadable records only with ``faults=True``.
``scale=True`` writes the tables only (no waveforms or images), vectorised, for benchmarks.
"""

from gated_symile.synthetic.mimic.config import MimicSynthConfig
from gated_symile.synthetic.mimic.releases import generate_mimic

__all__ = ["MimicSynthConfig", "generate_mimic"]
