"""``python3 -m container_runtime COMMAND`` (what scripts/container-runtime runs)."""

import sys

from container_runtime.cli import main

sys.exit(main())
