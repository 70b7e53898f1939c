from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import database_lib
import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class Config:
    defaults: list[Any] = field(default_factory=lambda: [{"db": "mysql"}, "_self_"])
    db: database_lib.DBConfig = MISSING


database_lib.register_configs()
ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base=None, config_name="config")
def my_app(cfg: Config) -> str:
    url = database_lib.connect(cfg.db)
    Path("url.txt").write_text(url + "\n")
    return url


if __name__ == "__main__":
    my_app()
