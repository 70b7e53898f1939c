"""Structured configs registered by a module next to the script (as in Hydra's structured-config tutorial)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class DBConfig:
    driver: str = MISSING
    host: str = "localhost"
    port: int = MISSING


@dataclass
class MySQLConfig(DBConfig):
    driver: str = "mysql"
    port: int = 3306


@dataclass
class PostgreSQLConfig(DBConfig):
    driver: str = "postgresql"
    port: int = 5432
    timeout: int = 10


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(group="db", name="mysql", node=MySQLConfig)
    cs.store(group="db", name="postgresql", node=PostgreSQLConfig)


def connect(cfg: DBConfig) -> str:
    return f"{cfg.driver}://{cfg.host}:{cfg.port}"
