"""The tracking server's own users, made through MLflow's auth API when a stack deploys (the
`mlflow-users` Job): each app signs in as itself, never as the admin.

- `serving` reads (the server's default permission for every user is READ): it loads the pinned
  version's model and nothing else.
- `drift` reads, and edits the one experiment it records its checks in (`drift`).

Idempotent: an existing user gets the password from its Secret again (so a rotated Secret takes
effect), an existing permission is set to the wanted one. Credentials are files (a mounted Secret:
`<dir>/username`, `<dir>/password`), never arguments or environment variables.

    python -m apps.tracking.users --tracking-uri URL --admin DIR --user DIR [--user DIR:EXPERIMENT ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

if TYPE_CHECKING:
    from mlflow.server.auth.client import AuthServiceClient

EDIT = "EDIT"
WAIT_SECONDS = 300  # the server may still be starting when the Job does


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    @classmethod
    def read(cls, directory: Path) -> Credentials:
        try:
            username = (directory / "username").read_text().strip()
            password = (directory / "password").read_text().strip()
        except OSError as error:
            raise SystemExit(f"{directory}: no username/password files ({error.strerror})") from None
        if not username or not password:
            raise SystemExit(f"{directory}: username and password must not be empty")
        return cls(username, password)


@dataclass(frozen=True)
class AppUser:
    credentials: Credentials
    edits: str | None = None  # the one experiment it may record in


def _code(error: MlflowException) -> int:
    return ErrorCode.Value(error.error_code) if isinstance(error.error_code, str) else int(error.error_code)


@contextmanager
def signed_in(credentials: Credentials) -> Iterator[None]:
    """MLflow's clients read the basic-auth credentials from the environment; set only while they run."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = credentials.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = credentials.password
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_for(tracking_uri: str, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(f"{tracking_uri}/health", timeout=5).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{tracking_uri}: the tracking server did not answer /health within {seconds:.0f} s")
        time.sleep(2)


def _ensure_user(auth: AuthServiceClient, user: Credentials) -> str:
    try:
        auth.create_user(user.username, user.password)
        return "created"
    except RestException as error:
        if _code(error) != RESOURCE_ALREADY_EXISTS:
            raise
    auth.update_user_password(user.username, user.password)
    return "password set"


def _ensure_edit(auth: AuthServiceClient, tracking_uri: str, username: str, experiment: str) -> None:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 - after the admin signed in

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    try:
        auth.grant_user_permission(username, "experiment", experiment_id, EDIT)
    except RestException as error:
        if _code(error) != RESOURCE_ALREADY_EXISTS:
            raise
        # Granted before, perhaps with another level: set it again to the wanted one.
        auth.revoke_user_permission(username, "experiment", experiment_id)
        auth.grant_user_permission(username, "experiment", experiment_id, EDIT)


def ensure_users(tracking_uri: str, admin: Credentials, users: Sequence[AppUser]) -> list[str]:
    """Make (or bring back to the Secrets' state) every app user; returns one line per user."""
    from mlflow.server.auth.client import AuthServiceClient  # noqa: PLC0415 - needs mlflow[auth]

    done: list[str] = []
    with signed_in(admin):
        auth = AuthServiceClient(tracking_uri)
        for user in users:
            if user.credentials.username == admin.username:
                raise SystemExit(f"{user.credentials.username}: an app user must not be the admin")
            state = _ensure_user(auth, user.credentials)
            if user.edits:
                _ensure_edit(auth, tracking_uri, user.credentials.username, user.edits)
                state += f", edits experiment {user.edits}"
            done.append(f"{user.credentials.username}: {state}")
    return done


def _user(value: str) -> AppUser:
    directory, _, experiment = value.partition(":")
    return AppUser(Credentials.read(Path(directory)), experiment or None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.tracking.users", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--admin", required=True, type=Path, help="directory with the admin's username, password")
    parser.add_argument("--user", action="append", required=True, help="DIR or DIR:EXPERIMENT (may edit it)")
    args = parser.parse_args(argv)
    admin = Credentials.read(args.admin)
    users = [_user(value) for value in args.user]
    wait_for(args.tracking_uri.rstrip("/"))
    try:
        lines = ensure_users(args.tracking_uri.rstrip("/"), admin, users)
    except MlflowException as error:
        print(f"error: {args.tracking_uri}: {error.message}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
