"""The runtime: device mesh and multi-process start, XLA flags, FLOP counting, stop requests."""
