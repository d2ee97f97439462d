"""Build, push and inspect the apps' images with podman (rootless or as root; no daemon).

Where the public bases cannot be pulled (a machine that reaches no container registry), the build runs
on locally made ones: a Debian bookworm root filesystem with its Python 3.11, made by `debootstrap` from
the Debian mirror apt already uses and kept as a tarball in the user's cache (made once per machine),
and a scratch image holding the binary of the locked uv wheel. The Dockerfiles take them as `BASE` and
`UV_IMAGE`; their defaults stay the digest-pinned public images the workflow builds on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput, EnvironmentProblem
from infra.naming import IMAGES
from pipelines.containers.contexts import DOCKERFILES

INSTALL_HINT = (
    "install podman: `apt-get install podman runc` on Debian/Ubuntu (see README: Container images); "
    'where crun cannot run, /etc/containers/containers.conf sets runtime = "runc"'
)
LOCAL_BASE = "localhost/mlops-base:python{python}-bookworm"
LOCAL_UV = "localhost/mlops-uv:{version}"
# Debian bookworm's own Python: the only version a bookworm root filesystem has.
BOOKWORM_PYTHON = "3.11"
MIRROR_LINE = re.compile(r"^(?:URIs:\s*(\S+)|deb\s+(?:\[[^]]*]\s+)?(\S+)\s+bookworm\s)", re.M)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What a running image never reads: package caches, documentation, translations.
TRIMMED = ("./var/cache/apt/archives/", "./var/lib/apt/lists/", "./usr/share/doc/", "./usr/share/man/",
           "./usr/share/locale/")  # fmt: skip
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


@dataclass(frozen=True)
class Built:
    image: str
    tag: str
    image_id: str
    size_bytes: int
    seconds: float
    base: str
    digest: str | None = None  # the registry's, when pushed
    pushed_as: str | None = None


def podman() -> str:
    found = shutil.which("podman")
    if found is None:
        raise EnvironmentProblem("podman is not installed", hint=INSTALL_HINT)
    return found


def run(args: Sequence[str], *, timeout: float = 1800, check: bool = True, stdin: bytes | None = None) -> str:
    """`podman ARGS`; its output, or an EnvironmentProblem with podman's own last lines."""
    try:
        done = subprocess.run([podman(), *args], input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"`podman {' '.join(args[:2])}` took longer than {timeout:.0f} s") from None
    if check and done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()[-8:]
        raise EnvironmentProblem(
            f"`podman {' '.join(args[:3])}` failed (exit {done.returncode}):\n  " + "\n  ".join(lines),
            hint=INSTALL_HINT if "runtime" in "".join(lines).lower() else None,
        )
    return done.stdout.decode(errors="replace").strip()


def exists(image: str) -> bool:
    return subprocess.run([podman(), "image", "exists", image], capture_output=True, check=False).returncode == 0


def pull(image: str, timeout: float = 120) -> bool:
    try:
        done = subprocess.run([podman(), "pull", "--quiet", image], capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops"


def debian_mirror(sources: Sequence[Path] = (Path("/etc/apt/sources.list.d/debian.sources"),
                                             Path("/etc/apt/sources.list"))) -> str:  # fmt: skip
    """The Debian mirror apt on this machine uses (a proxy or snapshot mirror works as well as the CDN)."""
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in MIRROR_LINE.finditer(text):
            uri = match.group(1) or match.group(2)
            if "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def local_base(python: str, progress: Callable[[str], None] = lambda _: None) -> str:
    """The locally made base image (made and cached on first use): Debian bookworm with Python 3.11."""
    if python != BOOKWORM_PYTHON:
        raise BadInput(
            f"the project's Python is {python}, and a locally made base has Debian bookworm's {BOOKWORM_PYTHON}",
            hint="build on the public base (`--base public`) where a registry can be reached",
        )
    tag = LOCAL_BASE.format(python=python)
    if exists(tag):
        return tag
    tarball = cache_dir() / f"bookworm-python{python}.tar"
    if not tarball.is_file():
        _debootstrap(tarball, progress)
    progress(f"importing {tarball} as {tag}")
    run(["import", "--change", 'CMD ["python3"]', str(tarball), tag], timeout=300)
    return tag


def _debootstrap(tarball: Path, progress: Callable[[str], None]) -> None:
    """Make the root filesystem and keep it as a tarball: written next to its name, renamed when whole,
    so an interrupted run leaves no tarball and the next one starts again."""
    tool = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(tool).exists():
        raise EnvironmentProblem("debootstrap is not installed", hint="`apt-get install debootstrap`")
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "making the local base image runs debootstrap, which needs root",
            hint=f"run `sudo {sys.argv[0]} images base` once (the tarball is kept in the cache), "
            "or build on the public base where a registry can be reached",
        )
    tarball.parent.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    progress(f"making a Debian bookworm root filesystem from {mirror} (about a minute, once per machine)")
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix="rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        done = subprocess.run(
            [tool, "--variant=minbase", "--include=python3,ca-certificates", "bookworm", str(rootfs), mirror],
            capture_output=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stdout.decode(errors="replace").strip().splitlines()[-5:]
            raise EnvironmentProblem(f"debootstrap from {mirror} failed:\n  " + "\n  ".join(tail))
        partial = tarball.with_name(tarball.name + ".partial")
        with tarfile.open(partial, "w") as archive:
            archive.add(rootfs, arcname=".", filter=_keep)
        partial.replace(tarball)


def _keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = member.name if member.name.startswith("./") else f"./{member.name}"
    return None if any(name.startswith(p) and name != p.rstrip("/") for p in TRIMMED) else member


def local_uv() -> str:
    """A scratch image with the uv binary of the locked wheel (installed in this environment) at /uv."""
    binary = Path(sys.executable).parent / "uv"
    if not binary.is_file():
        raise EnvironmentProblem(f"uv is not installed in {binary.parent}", hint="run `make install`")
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    tag = LOCAL_UV.format(version=version)
    if exists(tag):
        return tag
    with tempfile.TemporaryDirectory() as work:
        archive = Path(work) / "uv.tar"
        with tarfile.open(archive, "w") as tar:
            info = tar.gettarinfo(str(binary), arcname="uv")
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "root", "root"
            with binary.open("rb") as handle:
                tar.addfile(info, handle)
        run(["import", str(archive), tag], timeout=300)
    return tag


def host_ca_bundle() -> str | None:
    """The CA bundle this machine trusts (a TLS-inspecting proxy's root included): a build secret."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), *CA_BUNDLES):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def build(
    root: Path,
    image: str,
    tag: str,
    *,
    base: str | None,
    uv_image: str | None,
    revision: str,
    build_args: dict[str, str] | None = None,
    no_cache: bool = False,
) -> Built:
    """`podman build` of one app's Dockerfile from the repository root (the .dockerignore'd context)."""
    if image not in IMAGES:
        raise BadInput(f"no image {image!r}: the images are {', '.join(IMAGES)}")
    args = ["build", "--pull=never" if base else "--pull=missing", "--format", "docker", "--network", "host"]
    args += ["--file", str(root / DOCKERFILES[image]), "--tag", tag, "--layers"]
    args += ["--label", f"org.opencontainers.image.revision={revision}"] + (["--no-cache"] if no_cache else [])
    if base:
        args += ["--build-arg", f"BASE={base}"]
    if uv_image:
        args += ["--build-arg", f"UV_IMAGE={uv_image}"]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    if (ca := host_ca_bundle()) is not None:  # a secret: mounted for the RUN that reads PyPI, never stored
        args += ["--secret", f"id=hostca,src={ca}"]
    started = time.monotonic()
    run([*args, str(root)], timeout=3600)
    return described(image, tag, time.monotonic() - started, base or "public")


def described(image: str, tag: str, seconds: float, base: str) -> Built:
    image_id, size = run(["image", "inspect", "--format", "{{.Id}} {{.Size}}", tag]).split()
    return Built(image, tag, image_id, int(size), seconds, base)


def push(tag: str, destination: str, *, tls_verify: bool = True) -> str:
    """Push `tag` to `destination` (`<registry>/<repository>:<tag>`); the digest the registry reports."""
    with tempfile.TemporaryDirectory() as work:
        digest_file = Path(work) / "digest"
        run(["push", f"--tls-verify={str(tls_verify).lower()}", "--digestfile", str(digest_file), tag,
             destination], timeout=1800)  # fmt: skip
        return digest_file.read_text().strip()
