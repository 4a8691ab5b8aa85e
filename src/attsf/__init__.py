"""attsf: the reference implementation of ATTSF-Net (IEEE TAFFC 2025) for audio-visual
emotion recognition."""

__version__ = "0.1.0"
