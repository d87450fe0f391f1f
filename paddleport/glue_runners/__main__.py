"""``python -m paddleport.glue_runners``: the run-glue / train-parity commands on their own."""

import sys

from paddleport.glue_runners.cli import main

sys.exit(main())
