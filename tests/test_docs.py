"""The documentation holds: README.md stays a front door, every relative link of README.md and
docs/*.md leads to a file (and heading) that exists, and every command-line option the pages
give a script is one that script takes. Fast: the parsers are built, no model or TensorFlow."""

import argparse
import functools
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 260

# The scripts whose options the pages are checked against; each is a shim of age_gender.cli.X.
PYTHON_SCRIPTS = ("demo", "annotate", "evaluate", "evaluate_appa_real", "export", "serve",
                  "cache_faces", "create_db", "landmarks")  # fmt: skip
# A script named on a line: ./download.sh, evaluate*.py (both evaluations), bench/X.py, or a
# top-level script (not a module path such as src/age_gender/cli/demo.py or bench/annotate.py
# read as annotate.py). train.py takes Hydra overrides, not options: what follows it is skipped.
SCRIPT = re.compile(
    r"(?<![\w/.*-])(?:\./)?(bench/\w+\.py|evaluate\*\.py|download\.sh|train\.py|"
    + "|".join(rf"{name}\.py" for name in PYTHON_SCRIPTS)
    + r")(?![\w-])"
)
# Script names one after another (`demo.py, annotate.py, serve.py`, "`a.py` and `b.py`") are one
# group: an option after them belongs to one of them.
BETWEEN_GROUP = re.compile(r"^[\s`,]*(?:(?:and|or)[\s`,]*)?$")
OPTION = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(path: Path) -> list[tuple[int, str]]:
    """The page's lines with their numbers, fenced code included (commands are checked there
    too)."""
    return list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown text: lowercase, punctuation dropped
    (hyphens, underscores and spaces kept), spaces to hyphens, repeats numbered -1, -2, ..."""
    anchors, seen, fence = set(), {}, False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        heading = re.match(r" {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fence or not heading:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))  # a link's text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        number = seen.get(slug, 0)
        seen[slug] = number + 1
        anchors.add(slug if number == 0 else f"{slug}-{number}")
    return anchors


@functools.cache
def anchors_of(path: Path) -> frozenset[str]:
    return frozenset(heading_anchors(path.read_text(encoding="utf-8")))


class _Built(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


@functools.cache
def options_of(script: str) -> frozenset[str] | None:
    """The options a script takes; None for train.py (Hydra overrides, not options)."""
    if script == "train.py":
        return None
    if script == "download.sh":  # its `case "$arg" in` patterns: --imdb) ... -h|--help)
        text = (REPO / script).read_text(encoding="utf-8")
        return frozenset(
            option
            for pattern in re.findall(r"^\s*(-[\w|-]+)\)", text, flags=re.MULTILINE)
            for option in pattern.split("|")
        )
    if script.startswith("bench/"):  # benchmarks import TensorFlow: their add_argument lines
        text = (REPO / script).read_text(encoding="utf-8")
        return frozenset(re.findall(r"""["'](--[\w-]+)["']""", text))
    # The command's parse_args builds its parser and parses: stop it there and keep the parser.
    module = importlib.import_module(f"age_gender.cli.{script.removesuffix('.py')}")

    def built(parser, *args, **kwargs):
        raise _Built(parser)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = built
    try:
        module.parse_args([])
    except _Built as stopped:
        return frozenset(stopped.parser._option_string_actions)
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{script}: parse_args did not build an argparse parser")


def script_groups(line: str) -> list[tuple[int, int, list[str]]]:
    """(start, end, scripts) of each group of script names on a line."""
    groups: list[tuple[int, int, list[str]]] = []
    for found in SCRIPT.finditer(line):
        name = found.group(1)
        names = ["evaluate.py", "evaluate_appa_real.py"] if name == "evaluate*.py" else [name]
        if groups and BETWEEN_GROUP.match(line[groups[-1][1] : found.start()]):
            start, _, members = groups[-1]
            groups[-1] = (start, found.end(), members + names)
        else:
            groups.append((found.start(), found.end(), names))
    return groups


def documented_options(path: Path):
    """(line number, option, scripts) for each option on a line that names a script: the
    scripts named on the line, and, for an option that no script name precedes on its line, the
    ones named last on the lines above in the same paragraph (not across table rows)."""
    above: list[str] = []
    for number, line in prose(path):
        if not line.strip() or line.lstrip().startswith(("```", "|")):
            above = []
        groups = script_groups(line)
        for found in OPTION.finditer(line) if groups else ():
            scripts = {name for _, _, names in groups for name in names}
            if not any(end <= found.start() for _, end, _ in groups):
                scripts.update(above)
            yield number, found.group(), sorted(scripts)
        if groups and not line.lstrip().startswith("|"):
            above = groups[-1][2]


def test_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    opening = "\n".join(lines[:8])
    assert "make demo" in opening and "make test" in opening, "README.md opens with make demo/test"
    linked = {
        (REPO / target.split("#")[0]).resolve()
        for _, line in prose(REPO / "README.md")
        for target in LINK.findall(line)
    }
    missing = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda page: page.name)
def test_docs_page_links_back_to_readme(page):
    targets = [target for _, line in prose(page) for target in LINK.findall(line)]
    assert any(target.split("#")[0] == "../README.md" for target in targets)


def test_relative_links_lead_somewhere():
    broken = []
    for page in PAGES:
        fence = False
        for number, line in prose(page):
            if line.lstrip().startswith("```"):
                fence = not fence
            if fence:
                continue
            for target in LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                file, _, anchor = target.partition("#")
                where = (page.parent / file).resolve() if file else page
                if not where.exists():
                    broken.append(f"{page.name}:{number}: {target}: no such file")
                elif anchor and where.suffix == ".md" and anchor not in anchors_of(where):
                    broken.append(f"{page.name}:{number}: {target}: no such heading")
    assert not broken, "\n".join(broken)


def test_documented_options_exist():
    stale = []
    checked = 0
    for page in PAGES:
        for number, option, scripts in documented_options(page):
            known = [options_of(script) for script in scripts if options_of(script) is not None]
            if not known:  # train.py alone: Hydra overrides
                continue
            checked += 1
            if not any(option in options for options in known):
                stale.append(f"{page.name}:{number}: {option} is not an option of {scripts}")
    assert checked > 100, f"only {checked} options found: is the pattern still right?"
    assert not stale, "\n".join(stale)


def test_slugs_follow_github():
    assert heading_anchors("### landmarks.py: alignment by the eyes") == {
        "landmarkspy-alignment-by-the-eyes"
    }
    assert heading_anchors("## evaluate_appa_real.py and evaluate.py") == {
        "evaluate_appa_realpy-and-evaluatepy"
    }
    assert heading_anchors("# A (b)\n# A (b)") == {"a-b", "a-b-1"}
