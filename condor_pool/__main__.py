"""``python3 -m condor_pool COMMAND`` (what scripts/condor-pool runs)."""

import sys

from condor_pool.cli import main

sys.exit(main())
