"""Where a stack file's keys live and whether an edited stack file is still valid (used by every
flow that changes a stack file by pull request: promotions, image pins).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from infra.config import load_stack, stack_file


def stack_path(root: Path, environment: str) -> str:
    return stack_file(root, environment).relative_to(root).as_posix()


def validate_stack_text(root: Path, environment: str, text: str) -> None:
    """The edited file must still be a valid stack file (a scratch copy is loaded with the schema)."""
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "stacks").mkdir()
        shutil.copy(root / "Pulumi.yaml", Path(scratch) / "Pulumi.yaml")
        (Path(scratch) / stack_path(root, environment)).write_text(text)
        load_stack(Path(scratch), environment)
