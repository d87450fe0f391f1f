"""The child process of ``paddleport bench``: times one path (``bench.run_job``) in a process of its own.

    python -m paddleport.parity.bench_worker JOB_DIR
"""

import sys
from pathlib import Path

from paddleport.parity.bench import run_job

if __name__ == "__main__":
    run_job(Path(sys.argv[1]))
