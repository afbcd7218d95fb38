"""PyTorch re-statements of the reference implementations, shared by tests and benchmarks."""
