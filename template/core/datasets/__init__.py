"""Versioned datasets in an environment's object store: immutable, content-addressed, checked on read.

A version lives under `datasets/<name>/<sha256>/` in the store (the environment's bucket, the local
S3-compatible store, or a directory): Parquet part files, then `manifest.json`, written last, which
names every file's SHA-256, the schema, per-column statistics and the lineage (source, parent version,
who made it). A version without its manifest is not a version: a crash before the manifest leaves
nothing visible, and adding the same data again finishes it (its address is its content's digest).

Imports: core only (pyarrow and pydantic from outside); the training app and the `mlops data` flow use it.
"""
