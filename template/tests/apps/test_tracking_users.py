"""The tracking server's app users against a real MLflow server with basic auth, as the clusters run it
(`--app-name basic-auth`, every user READ by default): `serving` reads and cannot write, `drift` records
only in its experiment, a re-run converges and takes a rotated password."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from apps.tracking.users import AppUser, Credentials, ensure_users, main
from infra.k8s.tracking import client_credentials
from tests.tracking_servers import tracking_server

pytestmark = pytest.mark.integration
ADMIN = Credentials("admin", "admin-password-for-tests")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("auth-mlflow")
    (home / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{home / 'auth.db'}\n"
        f"admin_username = {ADMIN.username}\nadmin_password = {ADMIN.password}\n"
    )
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(home / "auth.ini"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-flask-secret-for-the-test-only",
    }
    with tracking_server(home, "auth-tracking", ["--app-name", "basic-auth"], env) as proc:
        yield proc.url


def _as(uri: str, who: Credentials, method: str, path: str, **body: object) -> requests.Response:
    return requests.request(method, f"{uri}{path}", auth=(who.username, who.password), json=body or None, timeout=10)


def _write(directory: Path, who: Credentials) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "username").write_text(who.username)
    (directory / "password").write_text(who.password + "\n")
    return directory


def test_each_app_signs_in_as_itself_with_only_what_it_needs(auth_server: str, tmp_path: Path) -> None:
    serving, drift = Credentials("serving", "serving-password-1"), Credentials("drift", "drift-password-1")
    created = _as(auth_server, ADMIN, "POST", "/api/2.0/mlflow/registered-models/create", name="diagnosis")
    assert created.ok, created.text
    argv = [f"--tracking-uri={auth_server}", f"--admin={_write(tmp_path / 'admin', ADMIN)}"]
    argv += [f"--user={_write(tmp_path / 'serving', serving)}", f"--user={_write(tmp_path / 'drift', drift)}:drift"]
    assert main(argv) == 0

    # serving: reads the registry, writes nothing
    read = _as(auth_server, serving, "GET", "/api/2.0/mlflow/registered-models/get?name=diagnosis")
    assert read.ok and read.json()["registered_model"]["name"] == "diagnosis"
    refused = _as(
        auth_server, serving, "POST", "/api/2.0/mlflow/registered-models/rename", name="diagnosis", new_name="stolen"
    )
    assert refused.status_code == 403, refused.text
    # drift: records in its experiment, not in another one
    experiment = _as(auth_server, ADMIN, "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=drift")
    other = _as(auth_server, ADMIN, "POST", "/api/2.0/mlflow/experiments/create", name="training").json()
    run = _as(
        auth_server,
        drift,
        "POST",
        "/api/2.0/mlflow/runs/create",
        experiment_id=experiment.json()["experiment"]["experiment_id"],
    )
    assert run.ok, run.text
    elsewhere = _as(auth_server, drift, "POST", "/api/2.0/mlflow/runs/create", experiment_id=other["experiment_id"])
    assert elsewhere.status_code == 403, elsewhere.text
    assert (
        _as(auth_server, Credentials("serving", "wrong"), "GET", "/api/2.0/mlflow/experiments/search").status_code
        == 401
    )


def test_a_re_run_converges_and_takes_a_rotated_password(auth_server: str) -> None:
    first, rotated = Credentials("reader", "first-password"), Credentials("reader", "rotated-password")
    assert ensure_users(auth_server, ADMIN, [AppUser(first)]) == ["reader: created"]
    assert ensure_users(auth_server, ADMIN, [AppUser(rotated, "drift")]) == [
        "reader: password set, edits experiment drift"
    ]
    assert ensure_users(auth_server, ADMIN, [AppUser(rotated, "drift")]) == [
        "reader: password set, edits experiment drift"
    ]
    search = "/api/2.0/mlflow/experiments/search?max_results=5"
    assert _as(auth_server, rotated, "GET", search).ok
    assert _as(auth_server, first, "GET", search).status_code == 401


def test_bad_inputs_are_refused_naming_what(auth_server: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no username/password files"):
        main([f"--tracking-uri={auth_server}", f"--admin={tmp_path / 'missing'}", f"--user={tmp_path}"])
    admin_dir = _write(tmp_path / "admin", ADMIN)
    with pytest.raises(SystemExit, match="must not be the admin"):
        main([f"--tracking-uri={auth_server}", f"--admin={admin_dir}", f"--user={admin_dir}"])
    wrong = _write(tmp_path / "wrong", Credentials("admin", "not-the-password"))
    reader = _write(tmp_path / "reader", Credentials("someone", "password-x"))
    assert main([f"--tracking-uri={auth_server}", f"--admin={wrong}", f"--user={reader}"]) == 1


def _client_reads(uri: str, home: Path, model: str) -> subprocess.CompletedProcess[str]:
    """A fresh process as a pod runs it: HOME holds `.mlflow/credentials`, no MLflow variable is set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    code = f"from mlflow import MlflowClient; print(MlflowClient({uri!r}).get_registered_model({model!r}).name)"
    command = [sys.executable, "-c", code]
    return subprocess.run(
        command, env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=120, check=False
    )


def test_an_app_signs_in_from_its_credentials_file(auth_server: str, tmp_path: Path) -> None:
    """The Secret's `credentials` key (infra/k8s/tracking.py: client_credentials), mounted at ~/.mlflow."""
    reader = Credentials("file-reader", "file-reader-password")
    _as(auth_server, ADMIN, "POST", "/api/2.0/mlflow/registered-models/create", name="from-file")
    argv = [f"--tracking-uri={auth_server}", f"--admin={_write(tmp_path / 'admin', ADMIN)}"]
    assert main([*argv, f"--user={_write(tmp_path / 'reader', reader)}"]) == 0
    for home, password in ((tmp_path / "home", reader.password), (tmp_path / "wrong", "not-the-password")):
        (home / ".mlflow").mkdir(parents=True)
        (home / ".mlflow" / "credentials").write_text(client_credentials(reader.username, password))
    read = _client_reads(auth_server, tmp_path / "home", "from-file")
    assert read.returncode == 0 and read.stdout.strip() == "from-file", read.stderr[-2000:]
    refused = _client_reads(auth_server, tmp_path / "wrong", "from-file")
    assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr[-2000:]
