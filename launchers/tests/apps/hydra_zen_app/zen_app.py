"""A hydra-zen app: every config is built in Python, here in the script run as ``__main__``, from the
classes of a module next to it; the task runs through ``hydra.main`` and Hydra's ``instantiate``. hydra-zen
is needed where the configs are built (the submit side), not where the jobs run: its configs are plain
dataclasses."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from hydra_zen import builds, make_config, store
from omegaconf import DictConfig
from shapes import Circle, Square

store(builds(Square, side=2.0), group="shape", name="square")
store(builds(Circle, radius=1.0), group="shape", name="circle")
store(make_config(hydra_defaults=["_self_", {"shape": "square"}], shape=None, scale=2.0), name="config")
store.add_to_hydra_store()


@hydra.main(version_base="1.3", config_path=None, config_name="config")
def main(cfg: DictConfig) -> float:
    shape = instantiate(cfg.shape)
    area = shape.area() * cfg.scale
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / "area.txt").write_text(f"{type(shape).__name__} {area:g}\n")
    return float(area)


if __name__ == "__main__":
    main()
