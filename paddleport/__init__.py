"""paddleport: PaddlePaddle <-> PyTorch porting and parity toolkit for BERT-family encoders.

Importing the package is cheap: torch, paddle and transformers are imported lazily,
only by the functions that need them.
"""

__version__ = "0.1.0"
