"""Every parameter file in or out: the params+JSON store, .pth files, one module per network."""
