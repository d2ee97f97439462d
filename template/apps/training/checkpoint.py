"""Checkpoints of one training run in the bucket (`--checkpoint URI`), so that a pod replaced after a spot
interruption resumes instead of starting over: the fitted model is saved once fitted, and the result once the
version is registered. A resumed run loads the fitted model (no second fit) or, if the version was already
registered, prints that result and registers nothing twice. Each file is written whole or not at all."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from core.datasets.store import filesystem

MODEL = "model.pkl"
RESULT = "result.json"


@dataclass(frozen=True)
class Checkpoint:
    uri: str

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        return filesystem(self.uri)

    def _read(self, name: str) -> bytes | None:
        fs, root = self._fs()
        path = f"{root}/{name}"
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as stream:
            return bytes(stream.read())

    def _write(self, name: str, data: bytes) -> None:
        fs, root = self._fs()
        fs.create_dir(root, recursive=True)
        # An object store's put is whole or nothing; on a file system, write beside and rename.
        partial = f"{root}/.{name}.partial"
        with fs.open_output_stream(partial) as stream:
            stream.write(data)
        fs.move(partial, f"{root}/{name}")

    def result(self) -> dict[str, Any] | None:
        """The registered version of an earlier attempt of this run, if it got that far."""
        data = self._read(RESULT)
        return json.loads(data) if data is not None else None

    def save_result(self, result: dict[str, Any]) -> None:
        self._write(RESULT, json.dumps(result, sort_keys=True).encode())

    def fitted(self, fit: Callable[[], Any], progress: Callable[[str], None]) -> Any:
        """The model an earlier attempt fitted, or `fit()` saved for the next one."""
        data = self._read(MODEL)
        if data is not None:
            progress(f"resumed from the checkpoint {self.uri}/{MODEL} (not fitting again)")
            # Written by this run's own earlier attempt into the stack's bucket, which only training writes.
            return pickle.loads(data)  # noqa: S301
        model = fit()
        self._write(MODEL, pickle.dumps(model))
        progress(f"checkpoint saved: {self.uri}/{MODEL}")
        return model
