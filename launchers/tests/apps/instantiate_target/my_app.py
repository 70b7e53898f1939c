from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig


class DBConnection:
    def __init__(self, driver: str, host: str, port: int) -> None:
        self.driver, self.host, self.port = driver, host, port

    def connect(self) -> str:
        return f"{self.driver} connecting to {self.host}:{self.port}"


class MySQLConnection(DBConnection):
    def __init__(self, host: str, user: str, password: str) -> None:
        super().__init__(driver="MySQL", host=host, port=3306)


class PostgreSQLConnection(DBConnection):
    def __init__(self, host: str, user: str, password: str, database: str) -> None:
        super().__init__(driver="PostgreSQL", host=host, port=5432)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def my_app(cfg: DictConfig) -> str:
    connection = instantiate(cfg.db)
    text = connection.connect()
    Path("connection.txt").write_text(text + "\n")
    return text


if __name__ == "__main__":
    my_app()
