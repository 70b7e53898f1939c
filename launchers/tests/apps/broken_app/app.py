import hydra
import reader
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg: DictConfig) -> str:
    if cfg.use == "lazy":
        import lazy_helper  # imported only here: the submitting process never imports it

        return str(lazy_helper.VALUE)
    return reader.table()


if __name__ == "__main__":
    main()
