"""Model registry: `--model <name>` loads models/<name>_model.py::<Name>Model (case-insensitive)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from models.base_model import BaseModel
from util.registry import available_names, find_plugin_class

MODELS_DIR = Path(__file__).resolve().parent
_EXCLUDED = ("base_model",)


def model_names() -> list[str]:
    """Every name `--model` accepts."""
    return available_names(MODELS_DIR, "_model", _EXCLUDED)


def find_model_class(name: str) -> type[BaseModel]:
    """The BaseModel subclass for `--model name`; InputError listing the choices if unknown."""
    return find_plugin_class(name, "models", MODELS_DIR, "_model", BaseModel, _EXCLUDED, "--model")


def get_option_setter(name: str) -> Callable:
    """The model's `modify_commandline_options(parser, is_train)` hook."""
    return find_model_class(name).modify_commandline_options


def allow_compile_fallback() -> None:
    """--compile: let a compiler-backend failure at a network's first call (e.g. no C++ compiler) run that
    network eagerly instead of stopping the run. Sets torch._dynamo's process-wide `suppress_errors`, so
    entry points call it, visibly, once."""
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True


def create_model(opt, ctx) -> BaseModel:
    """Build the model named by `opt.model` on `ctx.device`."""
    return find_model_class(opt.model)(opt, ctx)
