"""ReMoDiff: reconstruct missing modalities (audio, video, text) and measure what it is worth downstream."""
__version__ = "0.1.0"
