"""`python -m apps.training`: the one training entry point (a laptop, the local environment, the cluster)."""

import sys

from apps.training.train import main

sys.exit(main())
