"""Pages and texts in legacy encodings are stored as text and found by search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from tests.integration.data_plane.data_plane_support import add_tenant, by_name, ingest
from tests.integration.search.search_support import find, texts_found

_JAPANESE = "東京の図書館は月曜日に新しい建物を開館しました。"
_FRENCH = "Le garçon a mangé une crème brûlée à Noël, une idée bien naïve."


def _atom(engine: Engine, atom_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT modality, subtype, metadata FROM atoms WHERE atom_id = decode(:id, 'hex')"
            ),
            {"id": atom_id},
        ).one()
    return {"modality": row.modality, "subtype": row.subtype, **row.metadata}


def test_shift_jis_page_and_windows_1252_text_are_found(engine: Engine, tmp_path: Path) -> None:
    acme = add_tenant(engine, "acme")
    page = tmp_path / "library.html"
    page.write_bytes(
        (
            '<html><head><meta charset="shift_jis"><title>図書館</title></head>'
            f"<body><p>{_JAPANESE}</p></body></html>"
        ).encode("cp932")
    )
    legacy = tmp_path / "dessert.txt"
    legacy.write_bytes(f"{_FRENCH}\n".encode("cp1252"))
    files = by_name(ingest(engine, acme, page, legacy))

    html = _atom(engine, str(files["library.html"].atom_id))
    assert (html["modality"], html["subtype"]) == ("document", "html")
    assert (html["encoding"], html["encoding_source"]) == ("cp932", "declared")
    plain = _atom(engine, str(files["dessert.txt"].atom_id))
    assert (plain["encoding"], plain["encoding_source"]) == ("cp1252", "detected")
    assert texts_found(find(engine, acme, _JAPANESE, 1)) == [_JAPANESE]
    assert texts_found(find(engine, acme, "crème brûlée at Christmas", 1)) == [_FRENCH]
