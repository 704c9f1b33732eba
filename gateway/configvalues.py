"""How one configuration value is read: TOML files, paths, durations, typed coercion.

Shared by `gateway.config` (which builds the sections) and the commands that read a single
setting without loading the whole configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

from gateway.errors import ConfigError

QueueBackend = Literal["memory", "sqlite", "postgres"]
LongText = Literal["split", "truncate", "reject"]
KeyPermissions = Literal["refuse", "warn"]
UploadCertificate = Literal["auto", "always", "never"]
#: Seconds, written in the file as a number or as "30s", "15m", "12h", "7d".
Duration: TypeAlias = float
_DURATION_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
CHOICES: dict[str, tuple[str, ...]] = {
    "QueueBackend": get_args(QueueBackend),
    "LongText": get_args(LongText),
    "KeyPermissions": get_args(KeyPermissions),
    "UploadCertificate": get_args(UploadCertificate),
}


def resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def read_toml(path: Path, source: str, *, required: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{source}: config file not found") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: the config file is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None


def coerce(f: dataclasses.Field[Any], value: Any, where: str, *, from_env: bool) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if from_env and value.strip().lower() in {
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        }:
            return value.strip().lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env:
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a whole number, not {value!r}")
    if kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env:
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, not {value!r}")
    if kind == "Duration":
        return parse_duration(value, where)
    if kind in CHOICES:
        if value in CHOICES[kind]:
            return value
        raise ConfigError(f"{where} must be one of {', '.join(CHOICES[kind])}, not {value!r}")
    if kind == "tuple[str, ...]":
        if from_env:
            return tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(f"{where} must be a list of strings, not {value!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number or a string like "90", "30s", "15m", "12h" or "7d"."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        unit = _DURATION_UNITS.get(text[-1:], 0.0) if text else 0.0
        number = text[:-1] if unit else text
        with contextlib.suppress(ValueError):
            seconds = float(number) * (unit or 1.0)
    if seconds is None or not math.isfinite(seconds):
        raise ConfigError(
            f'{where} must be a duration such as 3600, "30s", "15m", "12h" or "7d", not {value!r}'
        )
    return seconds
