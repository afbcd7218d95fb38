"""Every parameter file in or out: the params+JSON store, PyTorch .pth files, a module per network."""
