"""A model's page says how many of its tensor bytes are in the tenant's other models (the same
tensor atom), per model and per tensor; models only another tenant holds are not counted."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.integration.api.conftest import IssueKey
from tests.integration.data_plane.data_plane_support import by_name, ingest, write_safetensors

from hartonomous.security.roles import Role

from .conftest import sign_in


def _array(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(size).astype(np.float32)


def test_a_models_page_shows_the_bytes_it_shares_with_the_tenants_other_models(
    client: TestClient, issue_key: IssueKey, engine: Engine, tmp_path: Path
) -> None:
    key = issue_key("acme", Role.DATA_SCIENTIST)
    issue_key("globex", Role.USER)
    shared, second, own = _array(1, 64), _array(2, 32), _array(3, 16)
    made = {
        "a.safetensors": {"a.shared": shared, "a.second": second, "a.own": own},
        "b.safetensors": {"b.shared": shared, "b.other": _array(4, 8)},
        "c.safetensors": {"c.shared": shared, "c.second": second},
        "d.safetensors": {"d.own": own},  # globex's only: not counted for acme
    }
    for name, arrays in made.items():
        write_safetensors(tmp_path / name, arrays)
    acme = by_name(ingest(engine, "acme", *(tmp_path / f"{n}.safetensors" for n in "abc")))
    ingest(engine, "globex", tmp_path / "d.safetensors")
    ids = {name: acme[f"{name}.safetensors"].atom_id for name in ("a", "b", "c")}
    sign_in(client, key)
    page = client.get(f"/ui/models/{ids['a']}").text
    tensor_bytes = (64 + 32 + 16) * 4
    shared_bytes = (64 + 32) * 4
    assert f'id="shared-bytes">{shared_bytes} of its {tensor_bytes} tensor bytes' in page
    rows = re.findall(
        r'<tr><td><a href="/ui/models/([0-9a-f]{64})">.*?</td><td>safetensors</td><td>[^<]*</td>'
        r"<td>(\d+)</td><td>(\d+)</td></tr>",
        page,
    )
    assert rows == [(ids["c"], "2", str(shared_bytes)), (ids["b"], "1", str(64 * 4))]
    # Per tensor (safetensors lists them by name): a.own is in d, which acme does not hold.
    per_tensor = dict(re.findall(r"<tr><td>(a\.\w+)</td>.*?<td>(\d+)</td></tr>", page))
    assert per_tensor == {"a.own": "0", "a.second": "1", "a.shared": "2"}
