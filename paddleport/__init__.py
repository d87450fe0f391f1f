"""paddleport: PaddlePaddle <-> PyTorch porting and parity toolkit for BERT-family encoders.

Importing the package is cheap: torch, paddle and transformers are imported lazily,
only by the functions that need them, and importing changes no process-wide state. The CPU settings the
frameworks need (threads, Paddle flags, MKL on AMD) come from one documented, reversible call that every entry
point makes and library users make first, before importing paddle: ``paddleport.runtime.setup()``.
"""

__version__ = "0.1.0"
