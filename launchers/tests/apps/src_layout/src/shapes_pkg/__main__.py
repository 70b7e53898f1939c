from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from shapes_pkg import SCALE


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # shapes_pkg.solids is imported here only, by its _target_: the submit side never imports it.
    volume = instantiate(cfg.shape).volume() * SCALE
    Path("volume.txt").write_text(f"{cfg.shape.name} {volume:.3f}\n")
    return volume


if __name__ == "__main__":
    main()
