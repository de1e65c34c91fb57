"""The site: `bash docs/build.sh` builds docs/ with mkdocs in strict mode (broken links and anchors
between pages fail), `--port N` serves it. Links to repository files outside docs/ (which the site
shows as paths) must point at files that exist.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from docs_support import DOCS, REPO, pages

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (pip install '.[docs]')"
)
LINK = re.compile(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)")


def _env() -> dict[str, str]:
    # The mkdocs of this interpreter's environment first on PATH.
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


@needs_mkdocs
def test_the_site_builds_in_strict_mode(tmp_path):
    proc = subprocess.run(["bash", "docs/build.sh", "--out", str(tmp_path / "site")], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in pages():
        rel = page.relative_to(DOCS).with_suffix("")
        html = tmp_path / "site" / ("index.html" if rel.name == "index" else f"{rel}/index.html")
        assert html.is_file(), f"{page} has no page on the site"
    quickstart = (tmp_path / "site" / "quickstart" / "index.html").read_text()
    assert "skyrl train examples/quickstart.toml" in quickstart and "<table>" in quickstart


@needs_mkdocs
def test_build_serves_the_site_with_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["bash", "docs/build.sh", "--out", str(tmp_path / "site"), "--port", str(port)], cwd=REPO,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/tutorial/", timeout=5) as response:
                    assert response.status == 200
                    assert "Tutorial: GSM8K" in response.read().decode()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "the site was not served"
                time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server this test started (its own process group)
        proc.wait(timeout=30)


def test_build_refuses_unknown_arguments():
    proc = subprocess.run(["bash", "docs/build.sh", "--prot", "8000"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument '--prot'" in proc.stderr


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_links_to_repository_files_point_at_files(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    for target in LINK.findall(text):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"docs/{page.relative_to(DOCS)} links to {target}, which does not exist"
