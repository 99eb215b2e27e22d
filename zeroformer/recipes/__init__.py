"""Recipes: named, ready-to-run training set-ups (`zeroformer train RECIPE`).

Every module listed in MODULES below defines ``RECIPES = {name: Recipe(...)}``; adding a recipe
is adding one to a module (or a module and its name in MODULES). A module that fails to import
fails `zeroformer train` loudly: a broken install is a bug to see, not a recipe to skip.
A Recipe holds:

    name, description
    preset + model_overrides   -> the ModelConfig (zeroformer/config.py)
    train_defaults             -> the TrainConfig (zeroformer/train/config.py)
    build(model_cfg, train_cfg) -> Task   builds tokenizer, data and model (zeroformer/train/task.py)
    inputs                     the TrainConfig.extra keys `zeroformer train`'s file flags may set
                               (--test-data, --data-target, --src-col, ...); others refuse them

`--key=value` on the command line overrides any field of either config by name.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Callable

from ..config import ModelConfig, preset
from ..errors import UserError
from ..train.config import TrainConfig


@dataclass
class Recipe:
    name: str
    description: str
    build: Callable  # (ModelConfig, TrainConfig) -> Task
    preset: str = "tiny"
    model_overrides: dict = field(default_factory=dict)
    train_defaults: dict = field(default_factory=dict)
    inputs: tuple = ()

    def model_config(self, **overrides) -> ModelConfig:
        return preset(self.preset, **{**self.model_overrides, **overrides})

    def train_config(self, **overrides) -> TrainConfig:
        return TrainConfig.from_dict({**self.train_defaults, **overrides})


MODULES = ("bert", "lm", "lm_bpe", "translate", "word2vec")   # zeroformer/recipes/<name>.py

_REGISTRY: dict[str, Recipe] | None = None


def all_recipes() -> dict[str, Recipe]:
    """{name: Recipe} from every module in MODULES (imported on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, Recipe] = {}
        for module_name in MODULES:
            module = importlib.import_module(f".{module_name}", __name__)
            for name, recipe in module.RECIPES.items():
                if name in found:
                    raise RuntimeError(f"recipe {name!r} defined twice ({module_name})")
                found[name] = recipe
        _REGISTRY = dict(sorted(found.items()))
    return _REGISTRY


def get(name: str) -> Recipe:
    recipes = all_recipes()
    if name not in recipes:
        raise UserError(f"unknown recipe {name!r}; known: {', '.join(recipes) or '(none)'} "
                        "(see `zeroformer train --list`)")
    return recipes[name]


def field_types() -> dict[str, tuple[str, type]]:
    """{field name: ("model" | "train", annotated type)} for --key=value overrides."""
    import typing

    out = {}
    for kind, cls in (("model", ModelConfig), ("train", TrainConfig)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out[f.name] = (kind, hints[f.name])
    return out
