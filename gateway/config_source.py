"""Where configuration comes from, and how its errors are told: the YAML file, `GATEWAY_*` environment
overrides, and messages that name the source of a bad value (the file and the dotted field, or the
environment variable) with the nearest field name when one is misspelt.

    data = read_yaml(path)                                   # ConfigError for a missing/dir/bad file
    origins = apply_env_overrides(data, environ, GatewayConfig)   # {("server", "port"): "environment GATEWAY_..."}
    describe_validation(source, exc, GatewayConfig, origins)         # the lines of a ConfigError

An override is a string unless the field's type says otherwise: `GATEWAY_REDIS__PREFIX=gw:prod:` is the
string "gw:prod:" (YAML would read a mapping), numbers and booleans are converted by the field's own
validation, and only list, mapping and free-form fields are parsed as YAML.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "apply_env_overrides", "describe_validation", "read_yaml", "suggest"]

Path_ = tuple[str, ...]


class ConfigError(Exception):
    """A configuration that cannot start the gateway; the message names the file and the field (or the
    environment variable)."""


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file (try {path / 'gateway.yaml'})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (UTF-8 expected)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def suggest(name: str, choices: typing.Iterable[str]) -> str:
    """ " (did you mean 'port'?)", or the list of valid names when none is close."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (fields: {', '.join(choices)})" if choices else ""


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; other annotations unchanged."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    return {name: f for name, f in model.model_fields.items() if name != "source"}


def _child(annotation: Any, part: str) -> tuple[Any, str | None]:
    """The annotation one step down `part`, or (None, why not)."""
    annotation = _unwrap(annotation)
    if _is_model(annotation):
        fields = _fields(annotation)
        if part not in fields:
            return None, f"unknown field {part!r}{suggest(part, fields)}"
        return fields[part].annotation, None
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1], None
    if origin is list:
        if not part.isdigit():
            return None, "a list: set the whole list"
        return typing.get_args(annotation)[0], None
    return Any, None  # free-form (Any, dict[str, Any] below): not checked here


def model_at(root: type[BaseModel], path: typing.Sequence[str | int]) -> Any:
    """The annotation at a dotted path of the root model (Any when it leaves the typed part)."""
    annotation: Any = root
    for part in path:
        annotation, _ = _child(annotation, str(part))
        if annotation is None:
            return Any
    return _unwrap(annotation)


def _parse_override(annotation: Any, raw: str) -> Any:
    optional = type(None) in typing.get_args(annotation)
    leaf = _unwrap(annotation)
    if raw == "":
        return None if optional or leaf is not str else ""
    origin = typing.get_origin(leaf)
    if leaf is Any or _is_model(leaf) or origin in (list, dict) or leaf in (list, dict):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {exc}") from None
    return raw  # str, numbers, booleans, literals: the field's validation converts (or refuses) the string


def apply_env_overrides(data: dict, environ: typing.Mapping[str, str], root: type[BaseModel]) -> dict[Path_, str]:
    """`GATEWAY_SECTION__FIELD=value` sets data["section"]["field"]; returns {path: "environment VARIABLE"},
    where each value came from, for messages."""
    applied: dict[Path_, str] = {}
    for name, raw in sorted(environ.items()):
        # Only SECTION__FIELD names: GATEWAY_CONFIG, GATEWAY_ADMIN_KEY or a Kubernetes service link such
        # as GATEWAY_PORT=tcp://... are not config fields.
        if not name.startswith("GATEWAY_") or "__" not in name:
            continue
        path = tuple(name[len("GATEWAY_") :].lower().split("__"))
        annotation: Any = root
        for depth, part in enumerate(path):
            annotation, problem = _child(annotation, part)
            if problem:
                where = ".".join(path[:depth]) or "the configuration"
                raise ConfigError(
                    f"environment {name}: {where} has no field {part!r}"
                    + problem.removeprefix(f"unknown field {part!r}")
                )
        try:
            value = _parse_override(annotation, raw)
        except ValueError as exc:
            raise ConfigError(f"environment {name}: {exc}") from None
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ConfigError(f"environment {name}: {'.'.join(path[:-1])} is not a section in the file")
        node[path[-1]] = value
        applied[path] = f"environment {name}"
    return applied


def _origin(loc: Path_, origins: dict[Path_, str]) -> str | None:
    for length in range(len(loc), 0, -1):
        if loc[:length] in origins:
            return origins[loc[:length]]
    return None


def describe_validation(
    source: str,
    exc: ValidationError,
    root: type[BaseModel],
    origins: dict[Path_, str] | None = None,
    prefix: Path_ = (),
) -> str:
    """One line per error: the dotted field, where its value came from when not `source` (an environment
    variable, an included file), and the message (an unknown field gets the nearest known name)."""
    lines = [f"{source}: invalid configuration"]
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        where = ".".join(prefix + loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and loc:
            parent = model_at(root, loc[:-1])
            fields = _fields(parent) if _is_model(parent) else {}
            message = f"unknown field {loc[-1]!r}{suggest(loc[-1], fields)}"
        origin = _origin(prefix + loc, origins or {})
        if origin:
            where += f" (from {origin})"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
