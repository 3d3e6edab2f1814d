"""A folder the server needs that cannot be created is one line naming it and the reason (the
trial's read-only file system gave an OSError traceback from `backup full` and `restore`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hartonomous.db.embedded import DirectoryNotCreatedError, make_server_dir
from hartonomous.errors import HartonomousError


def test_a_folder_under_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "backups"
    blocker.write_text("a file where a folder should be")
    wanted = blocker / "base"
    with pytest.raises(DirectoryNotCreatedError, match=f"cannot create {wanted}: Not a directory"):
        make_server_dir(wanted)
    assert isinstance(DirectoryNotCreatedError("x"), HartonomousError)
    assert blocker.is_file()
