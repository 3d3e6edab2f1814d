"""Every settings key is documented in docs/configuration.md (the reference operators read)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from hartonomous.config import Settings

DOC = Path(__file__).parents[3] / "docs" / "configuration.md"


def keys(model: type[BaseModel], section: str) -> Iterator[tuple[str, str]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from keys(annotation, f"{section}.{name}" if section else name)
        else:
            yield section, name


def test_every_key_is_in_the_configuration_reference() -> None:
    text = DOC.read_text()
    missing = []
    for section, key in keys(Settings, ""):
        heading = f"## `[{section}]`" if section.count(".") == 0 else f"### `[{section}]`"
        if section and heading not in text and f"## `[{section}]`" not in text:
            missing.append(f"section [{section}]")
        if f"`{key}`" not in text:
            missing.append(f"{section}.{key}")
    assert missing == []
