"""Inference: the jitted generator apply, tiling, and the array upscaler."""
