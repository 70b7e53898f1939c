import bigpkg
import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg: DictConfig) -> str:
    return f"{bigpkg.NAME}:{cfg.x}"


if __name__ == "__main__":
    main()
