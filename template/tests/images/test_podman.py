"""The podman side of `mlops images` without a container: run flags read from the planned pods, the
locally made base's inputs, and the refusals (tests/containers builds and runs the images for real)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from core.errors import BadInput, EnvironmentProblem
from infra.config import load_stack
from infra.naming import IMAGES
from pipelines.containers import engine, pods
from pipelines.containers.builds import base_stages, build_all, project_python
from pipelines.containers.contexts import DOCKERFILES
from tests.conftest import ROOT


def planned() -> dict[str, tuple[dict, dict]]:
    settings = load_stack(ROOT, "local")
    return pods.planned_pods({i: f"example/{i}" for i in IMAGES}, settings.serving, settings.tracking)


@pytest.mark.parametrize("app", IMAGES)
def test_run_flags_are_the_pods_security_and_mounts(app: str) -> None:
    pod, container = planned()[app]
    flags = pods.run_flags(pod, container)
    joined = " ".join(flags)
    uid = container["securityContext"]["runAsUser"]
    assert f"--user {uid}:{uid}" in joined and uid >= 10000
    assert "--read-only --read-only-tmpfs=false" in joined, "only the pod's own volumes may be writable"
    assert "--cap-drop all" in joined and "--security-opt no-new-privileges" in joined
    assert "--cap-add" not in joined and "--privileged" not in joined
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        if "emptyDir" in volumes[mount["name"]]:
            size = pods.quantity_bytes(volumes[mount["name"]]["emptyDir"]["sizeLimit"])
            assert f"--tmpfs {mount['mountPath']}:rw,mode=1777,size={size}" in joined
    memory = pods.quantity_bytes(container["resources"]["limits"]["memory"])
    assert f"--memory {memory}" in joined


def test_run_flags_follow_a_changed_pod() -> None:
    pod, container = planned()["serving"]
    container = {**container, "securityContext": {**container["securityContext"], "runAsUser": 20001,
                                                  "readOnlyRootFilesystem": False}}  # fmt: skip
    flags = " ".join(pods.run_flags(pod, container))
    assert "--user 20001:" in flags and "--read-only" not in flags


def test_run_command_binds_nothing_but_what_it_is_given() -> None:
    pod, container = planned()["serving"]
    args = pods.run_command("img", "n", pod, container, owner="me", command=["serve"], env={"A": "1"}, inherit=["B"])
    assert args[args.index("--label") + 1] == f"{pods.OWNER_LABEL}=me"
    assert "--publish" not in args and "-p" not in args, "the app binds 127.0.0.1 on the host network"
    assert args[-2:] == ["img", "serve"] and "A=1" in args and "B" in args


@pytest.mark.parametrize(
    ("value", "expected"),
    [("256Mi", 256 * 2**20), ("2Gi", 2 * 2**30), ("1G", 10**9), ("512", 512), ("1.5Gi", 3 * 2**29)],
)
def test_quantities(value: str, expected: int) -> None:
    assert pods.quantity_bytes(value) == expected


@pytest.mark.parametrize("value", ["500m", "lots", "", "1Zi"])
def test_bad_quantities_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a byte quantity"):
        pods.quantity_bytes(value)


def test_without_podman_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="podman is not installed") as raised:
        engine.podman()
    assert raised.value.hint is not None and "apt-get install podman" in raised.value.hint


def test_the_debian_mirror_is_the_one_apt_uses(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.internal/debian/\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.internal/debian-security\nSuites: bookworm-security\n"
    )
    assert engine.debian_mirror([deb822]) == "http://mirror.internal/debian"
    classic = tmp_path / "sources.list"
    classic.write_text("deb [arch=amd64] http://proxy:3142/debian bookworm main\n")
    assert engine.debian_mirror([tmp_path / "missing", classic]) == "http://proxy:3142/debian"
    assert engine.debian_mirror([tmp_path / "missing"]) == engine.DEFAULT_MIRROR


def test_the_root_filesystem_drops_what_no_image_reads(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    for path in (
        "usr/share/doc/python3/copyright",
        "usr/bin/python3",
        "var/cache/apt/archives/x.deb",
        "etc/os-release",
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".", filter=engine._keep)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"./usr/bin/python3", "./etc/os-release", "./usr/share/doc", "./var/cache/apt/archives"} <= names
    assert not any(n.endswith(("copyright", ".deb")) for n in names)


def test_a_local_base_has_bookworms_python_only() -> None:
    with pytest.raises(BadInput, match=r"bookworm's 3\.11"):
        engine.local_base("3.12")


def test_the_public_bases_are_the_pinned_stages() -> None:
    for image in IMAGES:
        stages = base_stages((ROOT / DOCKERFILES[image]).read_text())
        assert set(stages) == {"python-base", "uv-image"}
        assert stages["python-base"].startswith(f"python:{project_python(ROOT)}-")


@pytest.mark.parametrize(
    ("images", "push", "message"),
    [
        (["serving", "web"], None, "--image must be one of"),
        (["serving"], "http://127.0.0.1:5000/p", "--push must be"),
        (["serving"], "127.0.0.1:5000", "--push must be"),
    ],
)
def test_build_refusals(images: list[str], push: str | None, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        build_all(ROOT, images, push_to=push)
