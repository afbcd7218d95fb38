"""Training: the loop, its state and pure steps, losses, optimisers, the Real-ESRGAN device batch, stopping and progress."""
