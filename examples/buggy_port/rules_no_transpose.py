"""A rules file with a classic bug: the first layer's attention output Linear copied without its transpose
(a square weight, so every shape still agrees)."""

from paddleport.convert.table import Rule
from paddleport.parity.porting.weights import SAME

RULES = [Rule("layers.0.attention_output.weight", "layers.0.attention_output.weight", SAME)]
