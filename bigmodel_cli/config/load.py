"""Reading experiment.yaml: finding it, YAML with line numbers, ``--set`` overrides, validation
errors that name the dotted key and the file's line, and :func:`resolved` (the only way a run
varies its config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bigmodel_cli.config.base import CONFIG_NAME
from bigmodel_cli.config.experiment import (
    CrossError,
    ExperimentConfig,
    check_key,
    field_names,
    submodel,
    suggest,
)
from bigmodel_cli.errors import ConfigError

# ----------------------------------------------------------------- loading


def find_config(path: str | Path) -> Path:
    """Map an experiment folder or a YAML path to the YAML file."""
    p = Path(path)
    if p.is_dir():
        f = p / CONFIG_NAME
        if not f.is_file():
            raise ConfigError(
                f"{p} has no {CONFIG_NAME}",
                hint=f"create one with: bigmodel init {p} --template mnist-cnn",
            )
        return f
    if p.is_file():
        if p.suffix not in (".yaml", ".yml"):
            raise ConfigError(
                f"{p} is not a YAML file", hint="pass an experiment folder or its experiment.yaml"
            )
        return p
    raise ConfigError(
        f"{p} does not exist", hint="pass an experiment folder made by `bigmodel init`"
    )


def read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse YAML into a dict plus its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{where}: YAML does not parse: {problem}",
            hint="check the indentation and the ':' after each key",
        ) from None
    if raw is None:
        raise ConfigError(
            f"{path} is empty", hint="start from a template: bigmodel init DIR --template mnist-cnn"
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    return raw, node


def line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of a dotted key path in a composed YAML tree."""
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                return line
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (['train', 'epochs'], 3). Values are YAML scalars."""
    if "=" not in text:
        raise ConfigError(
            f"--set '{text}' has no '='",
            hint="write --set dotted.key=value, e.g. --set train.epochs=3",
        )
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(
            f"--set '{text}': '{key}' is not a dotted key", hint="e.g. --set train.batch_size=64"
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value  # a plain string
    return key.split("."), parsed


def set_dotted(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    cur = raw
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def validate(
    raw: dict[str, Any],
    source: str = "config",
    node: yaml.Node | None = None,
    overridden: dict[str, str] | None = None,
) -> ExperimentConfig:
    """Validate a raw dict; raise ConfigError naming key, file and line."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise _explain(e, source, node, overridden or {}) from None


def _explain(
    e: ValidationError, source: str, node: yaml.Node | None, overridden: dict[str, str]
) -> ConfigError:
    errors = e.errors(include_url=False)
    # An unknown key usually explains a "missing" one (a typo): report it first.
    err = sorted(errors, key=lambda x: x["type"] != "extra_forbidden")[0]
    loc = tuple(
        p
        for p in err["loc"]
        if not (
            isinstance(p, str)
            and p.startswith(
                ("function-", "literal[", "list[", "float", "str", "int", "EarlyStopping")
            )
        )
    )
    ctx_err = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_err, CrossError):
        loc = tuple(ctx_err.key.split("."))
    key = ".".join(str(p) for p in loc) or "(top level)"
    where = _where(source, node, loc, overridden)
    etype = err["type"]
    if etype == "extra_forbidden":
        parent: type[BaseModel] | None = ExperimentConfig
        for part in loc[:-1]:
            parent = (
                submodel(parent, str(part)) if parent and str(part) in parent.model_fields else None
            )
        options = field_names(parent) if parent else []
        return ConfigError(
            f"{where}unknown key '{key}'", hint=suggest(str(loc[-1]), options) if options else None
        )
    if etype == "missing":
        return ConfigError(f"{where}required key '{key}' is missing", hint=_describe(loc))
    msg = ctx_err.message if isinstance(ctx_err, CrossError) else err["msg"]
    msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    shown = (
        ""
        if isinstance(ctx_err, CrossError) or isinstance(got, (dict, list))
        else f" (got {got!r})"
    )
    hint = ctx_err.hint if isinstance(ctx_err, CrossError) and ctx_err.hint else _describe(loc)
    return ConfigError(f"{where}{key}: {msg}{shown}", hint=hint)


def _where(
    source: str, node: yaml.Node | None, loc: tuple[Any, ...], overridden: dict[str, str]
) -> str:
    dotted = ".".join(str(p) for p in loc)
    for k, text in overridden.items():
        if dotted == k or dotted.startswith(k + ".") or k.startswith(dotted + "."):
            return f"--set {text}: "
    line = line_of(node, loc) if node is not None else None
    return f"{source}:{line}: " if line else f"{source}: "


def _describe(loc: tuple[Any, ...]) -> str | None:
    model: type[BaseModel] | None = ExperimentConfig
    field = None
    for part in loc:
        if model is None or str(part) not in model.model_fields:
            return None
        field = model.model_fields[str(part)]
        model = submodel(model, str(part))
    return field.description if field is not None else None


def load_experiment(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[ExperimentConfig, Path]:
    """Load, override and validate; returns the config and its folder."""
    f = find_config(path)
    raw, node = read_yaml(f)
    overridden = apply_overrides(raw, overrides or [])
    return validate(raw, str(f), node, overridden), f.parent.resolve()


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    overridden: dict[str, str] = {}
    for text in overrides:
        parts, value = parse_override(text)
        check_key(parts, f"--set {text}")
        set_dotted(raw, parts, value)
        overridden[".".join(parts)] = text
    return overridden


def resolved(
    cfg: ExperimentConfig,
    *,
    features: list[str] | None = None,
    classes: list[Any] | None = None,
    columns: dict[str, str] | None = None,
    precision: str | None = None,
) -> ExperimentConfig:
    """A new config with what a run learned: its features, classes and column types
    (from the data), the precision it trains with. The one way to change a config."""
    data = {
        k: v
        for k, v in (("features", features), ("classes", classes), ("columns", columns))
        if v is not None
    }
    update: dict[str, Any] = {}
    if data:
        update["data"] = cfg.data.model_copy(update=data)
    if precision is not None:
        update["train"] = cfg.train.model_copy(update={"precision": precision})
    return cfg.model_copy(update=update) if update else cfg


def dump(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
