"""``python3 -m pack_env ARGS`` (what scripts/pack-env runs)."""

import sys

from pack_env.cli import main

sys.exit(main())
