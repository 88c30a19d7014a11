"""YAML configuration files: read a mapping, validate it with pydantic, and turn every failure
into a :class:`ConfigError` that names the file and the dotted key at fault (scoring.yaml,
market_conditions.yaml, industry_allocations.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

T = TypeVar("T")


class StrictModel(BaseModel):
    """Configuration models reject unknown keys and are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_yaml_mapping(text: str, where: str, what: str = "sections") -> dict:
    """The YAML text's top-level mapping ({} when empty)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of {what}, got {type(data).__name__}")
    return data


def read_yaml_mapping(path: Path, description: str = "the configuration", what: str = "sections") -> dict:
    """Read ``path`` and return its top-level mapping; ConfigError when unreadable or not a mapping."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {description} ({exc.strerror or exc})") from exc
    return parse_yaml_mapping(text, str(path), what)


def format_errors(exc: ValidationError, where: str, section: str | None = None) -> str:
    """``where: a.b: message; c: message`` with each error's dotted location (prefixed by ``section``)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in ((section,) if section else ()) + tuple(err["loc"])) or "<top level>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] not in ("missing", "value_error") and not isinstance(err.get("input"), dict):
            msg += f" (got {err.get('input')!r})"
        lines.append(f"{loc}: {msg}")
    return f"{where}: " + "; ".join(lines)


def validate_model(model: type[BaseModel], data: Any, where: str | Path, section: str | None = None) -> Any:
    """``model.model_validate(data)``; a ValidationError becomes a ConfigError naming every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, f"{where}: invalid configuration", section)) from None


class PackagedYaml(Generic[T]):
    """A YAML file shipped in the package (``relative``, e.g. ``config/charges.yaml``) and any
    replacement for it, read through ``parse`` (path -> validated value); the packaged file is read
    once per process."""

    def __init__(self, relative: str, parse: Callable[[Path], T]) -> None:
        self.relative, self._parse = relative, parse
        self._default: T | None = None

    @property
    def default_path(self) -> Path:
        return Path(str(resources.files("options_v4_dagster").joinpath(self.relative)))

    def load(self, path: str | Path | None = None) -> T:
        if path is not None:
            return self._parse(Path(path))
        if self._default is None:
            self._default = self._parse(self.default_path)
        return self._default
