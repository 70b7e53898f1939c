"""mnist-app: a PyTorch Lightning MNIST trainer composed by Hydra.

Kept free of heavy imports so that ``python -m mnist_app --help`` stays fast and torch-free.
"""

__version__ = "0.1.0"
