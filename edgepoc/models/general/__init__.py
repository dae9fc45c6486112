"""The general model family (any K and R): the size-free encoders (`model`), their torch-free float64
forward pass (`portable`), the one-pass decode and its search (`decode`), and training (`train`)."""
