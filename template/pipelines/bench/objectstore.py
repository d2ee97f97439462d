"""Benchmark the local object store (SeaweedFS `weed mini`): start-up, memory, and what a SIGKILL keeps.

    uv run python -m pipelines.bench.objectstore [--objects 50] [--megabytes 20]

It starts the store as `mlops local up` does, in a scratch directory, and measures the time until it
answers S3; writes `--objects` objects of `--megabytes` in all (one of them a multipart upload), copies
and lists them; reads the store's memory (private memory, and the mapped binary counted apart: the
kernel shares and drops those pages); then kills its whole process group with SIGKILL, starts it again
on the same directory and counts what is still there, byte for byte. Everything it starts is stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import tempfile
from pathlib import Path

from pipelines.common.procs import Proc, free_port, stop
from pipelines.local import objectstore

BUCKET = "bench-objects"


def memory_mb(proc: Proc) -> tuple[float, float]:
    """(private, file-backed) resident memory of every process of the store, in MB."""
    private = mapped = 0
    for pid in proc.members():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                private += int(line.split()[1])
            elif line.startswith("RssFile:"):
                mapped += int(line.split()[1])
    return private / 1024, mapped / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50, help="objects to write (default 50)")
    parser.add_argument("--megabytes", type=int, default=20, help="their total size (default 20)")
    args = parser.parse_args(argv)
    if not 2 <= args.objects <= 10_000 or not 1 <= args.megabytes <= 2000:
        parser.error("--objects must be in 2..10000 and --megabytes in 1..2000")
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        home, port = Path(tmp), free_port()
        proc, first_start = objectstore.start_alone(home, port)
        try:
            s3 = objectstore.s3_client(port)
            s3.create_bucket(Bucket=BUCKET)
            idle_private, idle_mapped = memory_mb(proc)
            size = args.megabytes * 2**20 // args.objects
            digests = {}
            for index in range(args.objects - 1):
                body = os.urandom(size)
                s3.put_object(Bucket=BUCKET, Key=f"objects/{index}", Body=body)
                digests[f"objects/{index}"] = hashlib.sha256(body).hexdigest()
            large = home / "large.bin"
            large.write_bytes(os.urandom(max(size, 12 * 2**20)))  # over boto3's 8 MB multipart threshold
            s3.upload_file(str(large), BUCKET, "objects/multipart")
            digests["objects/multipart"] = hashlib.sha256(large.read_bytes()).hexdigest()
            large_mb = large.stat().st_size // 2**20
            s3.copy_object(Bucket=BUCKET, Key="objects/copied", CopySource={"Bucket": BUCKET, "Key": "objects/0"})
            digests["objects/copied"] = digests["objects/0"]
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            listed = sum(page.get("KeyCount", 0) for page in pages)
            busy_private, busy_mapped = memory_mb(proc)
            os.killpg(proc.pid, signal.SIGKILL)
            stop(proc)  # reaps it, and anything of it still alive
            proc, restart = objectstore.start_alone(home, port)
            s3 = objectstore.s3_client(port)
            kept = sum(
                hashlib.sha256(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).hexdigest() == digest
                for key, digest in digests.items()
            )
        finally:
            stop(proc)
    print(f"start to answering S3: {first_start:.2f} s (restart on the written data: {restart:.2f} s)")
    print(f"memory idle: {idle_private:.0f} MB private (+ {idle_mapped:.0f} MB of the mapped binary)")
    print(
        f"memory after {len(digests)} objects, {args.megabytes} MB + one {large_mb} MB multipart "
        f"upload: {busy_private:.0f} MB private (+ {busy_mapped:.0f} MB mapped)"
    )
    print(f"listed {listed}; after SIGKILL of the store's process group and a restart: {kept}/{len(digests)} intact")
    return 0 if kept == len(digests) else 1


if __name__ == "__main__":
    sys.exit(main())
