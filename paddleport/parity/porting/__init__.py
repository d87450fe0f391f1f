"""``paddleport diff``: parity of any torch module and any hand-written Paddle port (see ``engine.diff``).

Importing this package imports neither torch nor paddle.
"""
