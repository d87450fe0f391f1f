"""Registry of architectures: ``config.json`` -> conversion table and target class."""

from __future__ import annotations

from pathlib import Path

from paddleport.convert.bert import BERT
from paddleport.convert.squeezebert import SQUEEZEBERT
from paddleport.convert.table import ArchitectureTable, ParamSpec
from paddleport.errors import PaddleportError
from paddleport.models.configuration import AutoConfig, PretrainedConfig

TABLES: dict[str, ArchitectureTable] = {table.model_type: table for table in (BERT, SQUEEZEBERT)}
SUPPORTED_CLASSES = tuple(name for table in TABLES.values() for name in table.classes)


def table_for(config: PretrainedConfig) -> ArchitectureTable:
    return TABLES[config.model_type]


def resolve_class(config: PretrainedConfig, requested: str | None, source: str | Path) -> str:
    """The target class: ``--arch`` if given, else the checkpoint's own ``architectures[0]``."""
    table = table_for(config)
    class_name = requested or config.architecture or table.base_class()
    if class_name not in table.classes:
        raise PaddleportError(source, f"architecture {class_name!r} is not supported "
                                      f"(supported: {', '.join(SUPPORTED_CLASSES)})")
    return class_name


def parameter_specs(config: dict | PretrainedConfig, architecture: str | None = None) -> list[ParamSpec]:
    """Every parameter of the Paddle model ``architecture``: HF name, Paddle name, typed transform, shapes."""
    if isinstance(config, dict):
        config = AutoConfig.from_dict(config)
    class_name = resolve_class(config, architecture, "config.json")
    return table_for(config).class_specs(config, class_name)
