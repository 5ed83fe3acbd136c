"""Publishing: one version number, the licences, CITATION.cff and the GitHub workflows.

* ``collapse_lib.__version__`` is the version: ``pyproject.toml`` reads it, and ``CITATION.cff``
  and the latest entry of ``CHANGELOG.md`` must say the same.
* ``CITATION.cff`` is valid Citation File Format 1.2.0, checked as ``cffconvert --validate``
  checks it, against the schema vendored in ``tests/data`` (cffconvert itself needs jsonschema 3).
* Every ``run:`` step of every workflow is a ``make`` target of the Makefile, so CI, the GPU build
  and publishing run the same logic as a developer's machine. The workflows' schema check is in
  ``make lint`` (check-jsonschema); a test here shows it rejects a broken workflow, offline.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CFF_SCHEMA = ROOT / "tests" / "data" / "cff-1.2.0.schema.json"
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
CC_BY = "https://creativecommons.org/licenses/by/4.0/"


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def repository_url() -> str:
    return config()["repository"]["url"]


def pages_url() -> str:
    """The GitHub Pages address of the repository (https://ORG.github.io/REPO/)."""
    org, repo = repository_url().removeprefix("https://github.com/").split("/")
    return f"https://{org}.github.io/{repo}/"


def library_version() -> str:
    """``collapse_lib.__version__``, read as setuptools reads it (a literal, without importing)."""
    tree = ast.parse((ROOT / "collapse_lib" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("collapse_lib/__init__.py defines no literal __version__")


class CffLoader(yaml.SafeLoader):
    """YAML as cffconvert reads CITATION.cff: timestamps (date-released) stay strings."""


CffLoader.add_constructor("tag:yaml.org,2002:timestamp", CffLoader.construct_yaml_str)


def load_cff(text: str) -> dict:
    return yaml.load(text, Loader=CffLoader)


def cff_errors(cff: dict) -> list[str]:
    schema = json.loads(CFF_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(cff)
    ]


def changelog_releases() -> list[tuple[str, str]]:
    """(version, date) of each release in CHANGELOG.md, newest first (Unreleased skipped)."""
    text = (ROOT / "CHANGELOG.md").read_text()
    return re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", text, re.M)


# ------------------------------------------------------------------------------ the version


def test_pyproject_reads_the_version_from_collapse_lib():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "the version lives in collapse_lib/__init__.py"
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "collapse_lib.__version__"}


def test_one_version_everywhere():
    version = library_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    cff = load_cff((ROOT / "CITATION.cff").read_text())
    assert str(cff["version"]) == version, "CITATION.cff version"
    assert str(cff["preferred-citation"]["version"]) == version, "preferred-citation version"
    releases = changelog_releases()
    assert releases, "CHANGELOG.md has no release entry '## [x.y.z] - YYYY-MM-DD'"
    latest, date = releases[0]
    assert latest == version, f"CHANGELOG.md's latest entry is {latest}, the library {version}"
    assert str(cff["date-released"]) == date, "CITATION.cff date-released vs CHANGELOG.md"


def test_the_imported_library_has_the_same_version():
    import collapse_lib

    assert collapse_lib.__version__ == library_version()


def test_changelog_is_keep_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog")
    assert "## [Unreleased]" in text and "keepachangelog.com" in text
    versions = [v for v, _ in changelog_releases()]
    keys = [tuple(map(int, v.split("."))) for v in versions]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys), versions
    for version in versions:  # every release has its compare/tag link
        assert re.search(rf"^\[{re.escape(version)}\]: {re.escape(repository_url())}/", text, re.M)


# ------------------------------------------------------------------------------ CITATION.cff


def test_citation_cff_is_valid():
    cff = load_cff((ROOT / "CITATION.cff").read_text())
    assert cff_errors(cff) == []
    assert cff["cff-version"] == "1.2.0"
    assert cff["repository-code"] == repository_url(), "repository-code: _config.yml's URL"
    assert cff["url"] == pages_url()
    assert cff["title"] == config()["title"]
    assert sorted(cff["license"]) == ["CC-BY-4.0", "MIT"]
    assert cff["preferred-citation"]["type"] == "book"


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda c: c.pop("authors"), "authors"),
        (lambda c: c.update({"date-released": "2026-13-45"}), "date-released"),  # format: date
        (lambda c: c.update({"license": "MIT-ish"}), "license"),
        (lambda c: c.update({"cff-version": "1.2"}), "cff-version"),
        (lambda c: c.update({"repository_code": repository_url()}), "repository_code"),
        (lambda c: c["preferred-citation"].update({"type": "novel"}), "type"),
    ],
    ids=["no-authors", "bad-date", "bad-licence", "bad-cff-version", "unknown-key", "bad-type"],
)
def test_an_invalid_citation_cff_fails(change, where):
    cff = load_cff((ROOT / "CITATION.cff").read_text())
    change(cff)
    errors = cff_errors(cff)
    assert errors, f"an invalid CITATION.cff ({where}) passed"
    assert any(where in e for e in errors), errors


def test_the_vendored_cff_schema_is_the_official_one():
    schema = json.loads(CFF_SCHEMA.read_text())
    assert schema["$id"] == "https://citation-file-format.github.io/1.2.0/schema.json"
    jsonschema.Draft7Validator.check_schema(schema)
    assert "cffconvert" in (ROOT / "tests" / "data" / "README.md").read_text()


# ------------------------------------------------------------------------------ licences


def test_licences():
    mit = (ROOT / "LICENSE").read_text()
    assert mit.startswith("MIT License")
    assert "Copyright (c) 2026 The Model Collapse Tutorials authors" in mit
    content = (ROOT / "LICENSE-CONTENT.md").read_text()
    assert "CC BY 4.0" in content and CC_BY in content
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # an SPDX expression (setuptools >= 77), not a table
    assert set(project["license-files"]) == {"LICENSE", "LICENSE-CONTENT.md"}
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(7[7-9]|[89]\d)(\.\d+)*", r) for r in build), build
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^## Licence", readme, re.M), "README: a Licence section"
    assert "CC BY 4.0" in readme and "MIT" in readme and "LICENSE-CONTENT.md" in readme


def test_the_footer_states_the_licences():
    footer = config()["html"]["extra_footer"]
    assert CC_BY in footer and "CC BY 4.0" in footer
    assert f"{repository_url()}/blob/main/LICENSE" in footer


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_header_states_the_licences(path):
    header = "".join(json.loads(path.read_text())["cells"][0]["source"])
    assert f"[CC BY 4.0]({CC_BY})" in header
    assert f"[MIT]({repository_url()}/blob/main/LICENSE)" in header


def test_intro_says_how_to_cite():
    intro = (ROOT / "book" / "intro.md").read_text()
    assert re.search(r"^## How to cite", intro, re.M)
    bibtex = re.search(r"```bibtex\n(.*?)```", intro, re.S)
    assert bibtex, "a BibTeX entry for the book"
    entry = bibtex.group(1)
    assert entry.startswith("@book{")
    assert f"title  = {{{config()['title']}}}" in entry
    assert f"url    = {{{pages_url()}}}" in entry
    assert f"{pages_url()}chapters/" in intro, "how to cite a chapter: its page"


def test_issue_and_edit_buttons_are_configured():
    html = config()["html"]
    for button in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
        assert html.get(button) is True, button
    # the edit button opens the source on main; the launch buttons use repository.branch
    template = config()["sphinx"]["config"]["html_context"]["edit_page_url_template"]
    assert template.startswith("{{ github_url }}/{{ github_user }}/{{ github_repo }}/edit/main/")


# ------------------------------------------------------------------------------ workflows


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?![:=])", text, re.M))
    return {t for t in targets if not t.startswith(".")}


def run_steps(workflow: dict) -> list[tuple[str, str]]:
    """(job, run script) of every ``run:`` step."""
    return [
        (name, step["run"])
        for name, job in workflow.get("jobs", {}).items()
        for step in job.get("steps", [])
        if "run" in step
    ]


def not_make_targets(workflow: dict, targets: set[str]) -> list[str]:
    """The ``run:`` lines that are not ``make TARGET [VAR=value ...]`` with a Makefile target."""
    bad = []
    for job, script in run_steps(workflow):
        for line in script.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line)
            ok = (
                words[0] == "make"
                and len(words) >= 2
                and words[1] in targets
                and all(re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", w) for w in words[2:])
            )
            if not ok:
                bad.append(f"{job}: {line}")
    return bad


def workflow(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); the workflow's triggers are under either.
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_the_three_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "gpu.yml", "publish.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_step_is_a_make_target(path):
    data = workflow(path.name)
    assert run_steps(data), f"{path.name} runs nothing"
    assert not_make_targets(data, makefile_targets()) == []


def test_a_run_step_with_its_own_logic_is_caught():
    targets = makefile_targets()
    assert {"test", "book", "lint"} <= targets and "CHROMIUM" not in targets
    bad = {
        "jobs": {
            "x": {
                "steps": [
                    {"run": "make test"},
                    {"run": "make book DEVICE=cuda\npip install -e .\n"},
                    {"run": "make no-such-target"},
                    {"run": "make test && rm -rf _build"},
                ]
            }
        }
    }
    assert not_make_targets(bad, targets) == [
        "x: pip install -e .",
        "x: make no-such-target",
        "x: make test && rm -rf _build",
    ]


def test_ci_workflow_runs_make_test_on_push_and_pull_request():
    ci = workflow("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    (job,) = ci["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "3.11"
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["cache-dependency-path"] == "requirements/lock.txt"
    assert [r for _, r in run_steps(ci)] == ["make test"]
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artif"))
    assert upload["if"] == "failure()"
    assert "_build/screenshots" in upload["with"]["path"]
    assert "_build/book/chapters/*.ipynb" in upload["with"]["path"]


def test_gpu_workflow_is_opt_in_on_a_gpu_runner():
    gpu = workflow("gpu.yml")
    assert set(gpu["on"]) == {"workflow_dispatch", "pull_request"}
    assert gpu["on"]["pull_request"]["types"] == ["labeled"]
    (job,) = gpu["jobs"].values()
    assert "github.event.label.name == 'gpu'" in job["if"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    (script,) = [r for _, r in run_steps(gpu)]
    assert script.startswith("make book MODE=full DEVICE=cuda ")
    lock = (ROOT / "requirements" / "lock.txt").read_text()
    locked = re.search(r"^torch==([\d.]+)", lock, re.M).group(1)
    torch = job["env"]["TORCH"]
    assert re.fullmatch(rf"torch=={re.escape(locked)}\+cu\d+", torch), (torch, locked)
    assert job["env"]["TORCH_INDEX"].endswith("/" + torch.split("+")[1])


def test_publish_workflow_deploys_pages_and_the_pdf():
    pub = workflow("publish.yml")
    assert pub["on"]["push"]["tags"] == ["v*"] and "workflow_dispatch" in pub["on"]
    scripts = [r for _, r in run_steps(pub)]
    for target in ("book", "pdf", "notebooks-branch"):
        assert any(s.startswith(f"make {target}") for s in scripts), target
    uses = [s.get("uses", "").split("@")[0] for j in pub["jobs"].values() for s in j["steps"]]
    for action in (
        "actions/configure-pages",
        "actions/upload-pages-artifact",
        "actions/deploy-pages",
        "softprops/action-gh-release",
        "peaceiris/actions-gh-pages",
    ):
        assert action in uses, action
    deploy = pub["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    steps = pub["jobs"]["build"]["steps"]
    pages = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-art"))
    assert pages["with"]["path"] == "_build/book/_build/html"
    branch = next(s for s in steps if s.get("uses", "").startswith("peaceiris/actions-gh-pages"))
    assert branch["with"]["publish_branch"] == config()["repository"]["branch"]


def check_jsonschema() -> str:
    exe = Path(sys.executable).with_name("check-jsonschema")
    return str(exe) if exe.exists() else (shutil.which("check-jsonschema") or "check-jsonschema")


def test_workflow_schema_check_passes_and_can_fail(tmp_path):
    """`make lint`'s check, run here too: the workflows pass, a broken copy fails (offline:
    check-jsonschema ships the schema)."""
    cmd = [check_jsonschema(), "--builtin-schema", "vendor.github-workflows"]
    ok = subprocess.run([*cmd, *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "broken.yml"
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    broken.write_text(text.replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    bad = subprocess.run([*cmd, str(broken)], capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "runs_on" in bad.stdout


def test_readme_describes_each_workflow():
    readme = (ROOT / "README.md").read_text()
    for path in WORKFLOWS:
        assert f"`{path.name}`" in readme, path.name
    assert "self-hosted" in readme and "gpu" in readme
