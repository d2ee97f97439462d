"""Re-lock the generated project's dependencies: one uv.lock per cloud choice, stored as templates.

For each choice it renders the template with default answers, runs `uv lock` there, and stores the
result under template/ with the project's name replaced by the `project_slug` answer. Run it after
changing the dependencies in template/pyproject.toml.jinja (`make lock`); a test checks that every
stored lock still matches its pyproject. The checkov tool's lock (template/tools/checkov) is re-locked
in place. Packages already locked keep their versions unless
`--upgrade` is given (then everything resolves anew).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import CLOUD_CHOICES, LOCK_TEMPLATE, TEMPLATE, render, run

DEFAULT_SLUG = "ml-platform"


def template_lock(lock_text: str, slug: str) -> str:
    """Wrap a lock in {% raw %} and make the project's own name a template variable."""
    pattern = re.compile(rf'^name = "{re.escape(slug)}"$', re.MULTILINE)
    if len(pattern.findall(lock_text)) != 1:
        raise SystemExit(f"expected the project {slug!r} exactly once in the lock")
    body = pattern.sub('{% endraw %}name = "{{ project_slug }}"{% raw %}', lock_text)
    return "{% raw %}" + body + "{% endraw %}"


def main(argv: list[str]) -> int:
    upgrade = "--upgrade" in argv
    uv = shutil.which("uv") or sys.exit("uv is not on PATH: run `make install` first")
    for cloud in CLOUD_CHOICES:
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            project = render(Path(tmp) / "project", {"clouds": cloud, "project_slug": DEFAULT_SLUG})
            if upgrade:
                (project / "uv.lock").unlink(missing_ok=True)
            run([uv, "lock", "--python", "3.11"], project)
            text = (project / "uv.lock").read_text()
        (TEMPLATE / LOCK_TEMPLATE.format(cloud=cloud)).write_text(template_lock(text, DEFAULT_SLUG))
        print(f"locked clouds={cloud}: {text.count('[[package]]')} packages in {time.monotonic() - started:.1f}s")
    # The scanner's own lock (tools/checkov: its pins conflict with the Pulumi SDKs'), the same for every choice.
    tool = TEMPLATE / "tools" / "checkov"
    if upgrade:
        (tool / "uv.lock").unlink(missing_ok=True)
    run([uv, "lock", "--python", "3.11"], tool)
    print(f"locked tools/checkov: {(tool / 'uv.lock').read_text().count('[[package]]')} packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
