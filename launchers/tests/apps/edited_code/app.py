"""Job #0 waits for a gate file; job #1 is queued behind it (max_running=1). The test edits version.py
while #0 waits: #1 must still run the submitted code."""

import time
from pathlib import Path

import hydra
import version
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg: DictConfig) -> str:
    if cfg.gate:
        Path(cfg.gate + ".waiting").write_text("")
        deadline = time.monotonic() + 120
        while not Path(cfg.gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no gate file {cfg.gate} within 120 s")
            time.sleep(0.1)
    return f"{cfg.x}:{version.VERSION}"


if __name__ == "__main__":
    main()
