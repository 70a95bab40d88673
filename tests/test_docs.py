"""The documentation against the code (no database needed):

- docs/cli.md has a section `deltapipe <path>` for every command and group of the click
  group `deltapipe.cli.main` (and none for a command that does not exist), and the option
  table of each section lists exactly the options of that command;
- docs/sql-api.md has a section `deltapipe.NAME` for every public routine in sql/manifest.txt
  (and none for a routine that does not exist), whose signature shows its parameters as created;
- docs/errors.md's tables list exactly the SQLSTATE codes the code raises, and exactly the
  reject reasons SQL writes into deltapipe.reject.sqlstate;
- every relative link in README.md, CONTRIBUTING.md and docs/*.md points to an existing file
  (and, for a link into a Markdown file, to an existing heading).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SQL = ROOT / "sql"
CONTROLLER = ROOT / "controller" / "deltapipe"
CODE = re.compile(r"^DP\d{3}$")


# ---------------------------------------------------------------- Markdown helpers
def _lines(path: Path):
    """(heading text or None, line) for each line; headings inside fenced code blocks are not headings."""
    fence = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        yield (m.group(1).replace("`", "").strip() if m else None), line


def sections(path: Path) -> dict[str, str]:
    """Heading text (without #'s and backticks) -> the text up to the next heading of any level (the
    texts of headings that repeat are joined)."""
    out: dict[str, str] = {}
    title, body = None, []
    for heading, line in list(_lines(path)) + [("", "")]:
        if heading is None:
            body.append(line)
            continue
        if title is not None:
            out[title] = out.get(title, "") + "\n".join(body)
        title, body = heading, []
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    s = heading.strip().lower().replace("`", "")
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for h in (h for h, _ in _lines(path) if h is not None):
        a = slug(h)
        n = seen.get(a, 0)
        seen[a] = n + 1
        out.add(a if n == 0 else "%s-%d" % (a, n))
    return out


def table_rows(text: str) -> list[list[str]]:
    """Cells of the Markdown table rows in text (header and separator rows included)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])])
    return rows


# ---------------------------------------------------------------- (a) the CLI
def command_paths() -> dict[str, click.Command]:
    from deltapipe.cli import main

    out: dict[str, click.Command] = {}

    def walk(group: click.Group, path: str) -> None:
        for name, cmd in group.commands.items():
            p = "%s %s" % (path, name)
            out[p] = cmd
            if isinstance(cmd, click.Group):
                walk(cmd, p)
    walk(main, "deltapipe")
    return out


def cli_sections() -> dict[str, str]:
    return {h: body for h, body in sections(DOCS / "cli.md").items() if h.startswith("deltapipe ")}


def test_cli_md_has_every_command():
    documented = set(cli_sections())
    missing = sorted(set(command_paths()) - documented)
    assert not missing, "commands without a section `deltapipe ...` in docs/cli.md: %s" % missing


def test_cli_md_documents_no_command_that_does_not_exist():
    extra = sorted(set(cli_sections()) - set(command_paths()))
    assert not extra, "docs/cli.md documents commands that do not exist: %s" % extra


def _long_opts(cmd: click.Command) -> set[str]:
    out = set()
    for p in cmd.params:
        if isinstance(p, click.Option):
            for o in p.opts + p.secondary_opts:
                if o.startswith("--") and o not in ("--help",):
                    out.add(o)
    return out


def _documented_opts(body: str) -> set[str]:
    """Options named in the first cell of the section's option table (`--a / --b`, `--x N`, `-j, --workers N`)."""
    out = set()
    for cells in table_rows(body):
        if cells and cells[0].startswith("`-"):
            out.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", cells[0]))
    return out


@pytest.mark.parametrize("path", sorted(command_paths()))
def test_cli_md_option_table_matches_the_command(path):
    cmd = command_paths()[path]
    body = cli_sections().get(path)
    if body is None:
        pytest.fail("no section %s in docs/cli.md" % path)
    have = _long_opts(cmd) - {"--dsn"}   # --dsn is described once, at the top of cli.md
    documented = _documented_opts(body) - {"--dsn"}
    assert not have - documented, "%s: options missing from its table in docs/cli.md: %s" % (path, sorted(have - documented))
    assert not documented - have, "%s: docs/cli.md lists options it does not have: %s" % (path, sorted(documented - have))
    if "--dsn" not in _long_opts(cmd):
        assert "--dsn" not in _documented_opts(body), "%s: docs/cli.md lists --dsn, which it does not take" % path


def test_cli_md_names_the_commands_without_dsn():
    """cli.md says every command takes --dsn except the ones it names: those must be exactly the ones without."""
    no_dsn = {p for p, c in command_paths().items()
              if "--dsn" not in _long_opts(c) and not (isinstance(c, click.Group) and not c.params)}
    intro = (DOCS / "cli.md").read_text().split("\n## ", 1)[0]
    m = re.search(r"except(.*?)\.\s", intro, re.S)
    assert m, "the introduction of docs/cli.md should say which commands take no --dsn (\"... except `...`.\")"
    named = set(re.findall(r"`(deltapipe [a-z -]+?)`", m.group(1)))
    assert named == no_dsn, "commands without --dsn: in the code %s, named in docs/cli.md %s" % (sorted(no_dsn), sorted(named))


# ---------------------------------------------------------------- (b) the SQL API
_MANIFEST_ENTRY = re.compile(r"^(functions|procedures)/deltapipe\.([A-Za-z0-9_]+)\.sql$")


def public_routines() -> dict[str, Path]:
    out = {}
    for line in (SQL / "manifest.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _MANIFEST_ENTRY.match(line)
        assert m, "unexpected manifest line %r" % line
        if not m.group(2).startswith("_"):
            out[m.group(2)] = SQL / line
    return out


def signature(text: str, name: str | None = None) -> list[tuple[str, str]]:
    """(name, type) of each parameter of the first deltapipe.NAME( ... ) in text (the CREATE statement,
    or the signature shown in the docs); INOUT ones included, defaults left out."""
    m = re.search(r"deltapipe\.%s\s*\(" % (re.escape(name) if name else r"\w+"), text)
    assert m, "no deltapipe.%s( in %r" % (name or "NAME", text[:80])
    depth, i = 1, m.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    out = []
    for part in re.split(r",(?![^()]*\))", text[m.end():i - 1]):
        words = part.split()
        if words and words[0].upper() in ("IN", "OUT", "INOUT", "VARIADIC"):
            words = words[1:]
        if words:
            typ = []
            for w in words[1:]:
                if w.upper() == "DEFAULT" or w == "=":
                    break
                typ.append(w.lower())
            out.append((words[0], " ".join(typ)))
    return out


def routine_signature(name: str) -> list[tuple[str, str]]:
    text = public_routines()[name].read_text()
    m = re.search(r"CREATE\s+OR\s+REPLACE\s+(?:FUNCTION|PROCEDURE)\s+(deltapipe\.\w+\s*\(.*)", text, re.I | re.S)
    assert m, "no CREATE OR REPLACE in %s" % public_routines()[name]
    return signature(m.group(1), name)


def sql_sections() -> dict[str, str]:
    out = {}
    for h, body in sections(DOCS / "sql-api.md").items():
        m = re.search(r"\bdeltapipe\.([A-Za-z0-9_]+)", h)
        if m and not h.lower().startswith("catalog"):
            out[m.group(1)] = body
    return out


def test_sql_api_md_has_every_public_routine():
    missing = sorted(set(public_routines()) - set(sql_sections()))
    assert not missing, "public routines without a section `deltapipe.NAME` in docs/sql-api.md: %s" % missing


def test_sql_api_md_documents_no_routine_that_does_not_exist():
    extra = sorted(set(sql_sections()) - set(public_routines()))
    assert not extra, "docs/sql-api.md documents routines that are not in sql/manifest.txt: %s" % extra


@pytest.mark.parametrize("name", sorted(public_routines()))
def test_sql_api_md_shows_the_signature(name):
    """The section's first code block shows the routine's parameters (names and types) as the CREATE has them."""
    body = sql_sections().get(name)
    if body is None:
        pytest.fail("no section deltapipe.%s in docs/sql-api.md" % name)
    block = re.search(r"```sql\n(.*?)```", body, re.S)
    assert block, "deltapipe.%s: its section in docs/sql-api.md has no ```sql block with the signature" % name
    want, shown = routine_signature(name), signature(block.group(1), name)
    assert shown == want, "deltapipe.%s: docs/sql-api.md shows %s, the code has %s" % (name, shown, want)


# ---------------------------------------------------------------- (c) SQLSTATE codes
def _sql_code(path: Path) -> str:
    """The file without -- comments (string literals kept; a '--' inside one is rare enough here)."""
    return "\n".join(re.sub(r"--.*$", "", line) for line in path.read_text().splitlines())


def sql_raised_codes() -> dict[str, set[str]]:
    """DPnnn codes SQL raises: RAISE ... USING ERRCODE = 'DPnnn' (also a CASE of literals), and
    deltapipe._fail('DPnnn', ...) calls, written directly or as format(... _fail(%L, ...) ..., 'DPnnn')."""
    out: dict[str, set[str]] = {}
    for path in sorted(SQL.rglob("*.sql")):
        code = _sql_code(path)
        found = set(re.findall(r"ERRCODE\s*=\s*'(DP\d{3})'", code))
        for case in re.findall(r"ERRCODE\s*=\s*CASE\b(.*?)\bEND\b", code, re.S):
            found |= set(re.findall(r"'(DP\d{3})'", case))
        for line in code.splitlines():
            if re.search(r"_fail\s*\(", line):
                found |= set(re.findall(r"'(DP\d{3})'", line))
        for c in found:
            out.setdefault(c, set()).add(path.name)
    return out


def sql_reject_codes() -> dict[str, set[str]]:
    """Reject reasons: DP1nn literals SQL writes into deltapipe.reject.sqlstate (not raised)."""
    raised = sql_raised_codes()
    out: dict[str, set[str]] = {}
    for path in sorted(SQL.rglob("*.sql")):
        for c in re.findall(r"'(DP1\d\d)'", _sql_code(path)):
            if c not in raised:
                out.setdefault(c, set()).add(path.name)
    return out


def python_raised_codes() -> dict[str, set[str]]:
    """DPnnn codes Python raises: a "DPnnn" constant passed to DeltapipeError(..., sqlstate=...)
    or to a helper that builds one (pipeline.model._err(msg, code, hint))."""
    out: dict[str, set[str]] = {}
    for path in sorted(CONTROLLER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            values = [k.value for k in node.keywords if k.arg == "sqlstate"]
            if name in ("DeltapipeError", "_err"):
                values += node.args
            for v in values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str) and CODE.match(v.value):
                    out.setdefault(v.value, set()).add(str(path.relative_to(CONTROLLER)))
    return out


def every_dp_literal() -> set[str]:
    """Every 'DPnnn' / "DPnnn" string in the code: each must be classified by one of the patterns above."""
    found = set()
    for path in list(SQL.rglob("*.sql")):
        found |= set(re.findall(r"'(DP\d{3})'", _sql_code(path)))
    for path in CONTROLLER.rglob("*.py"):
        found |= set(re.findall(r"[\"'](DP\d{3})[\"']", path.read_text()))
    return found


def documented_codes() -> tuple[set[str], set[str]]:
    """(codes of the error table, codes of the reject-reason table) in docs/errors.md."""
    errors, rejects = set(), set()
    for title, body in sections(DOCS / "errors.md").items():
        codes = {re.sub(r"[`*]", "", cells[0]) for cells in table_rows(body) if cells}
        codes = {c for c in codes if CODE.match(c)}
        if title.lower().startswith("reject"):
            rejects |= codes
        else:
            errors |= codes
    return errors, rejects


def raised_codes() -> set[str]:
    return set(sql_raised_codes()) | set(python_raised_codes())


def test_the_code_patterns_see_every_code():
    unseen = every_dp_literal() - raised_codes() - set(sql_reject_codes())
    # 'DPnnn' literals that only catch an error (EXCEPTION WHEN SQLSTATE 'DP007') are raised elsewhere
    assert not unseen, "DP codes in the code that neither raise pattern nor reject pattern sees: %s" % sorted(unseen)


def test_errors_md_lists_every_raised_code():
    errors, _ = documented_codes()
    missing = sorted(raised_codes() - errors)
    assert not missing, "codes raised by the code but missing from docs/errors.md: %s" % {
        c: sorted(sql_raised_codes().get(c, set()) | python_raised_codes().get(c, set())) for c in missing}


def test_errors_md_lists_no_code_that_nothing_raises():
    errors, _ = documented_codes()
    extra = sorted(errors - raised_codes())
    assert not extra, "docs/errors.md documents codes nothing raises: %s" % extra


def test_errors_md_says_where_each_code_is_raised():
    """The "raised by" column: SQL, Python, or SQL, Python - as the code has it."""
    sql, py = set(sql_raised_codes()), set(python_raised_codes())
    wrong = []
    for title, body in sections(DOCS / "errors.md").items():
        if title.lower().startswith("reject"):
            continue
        for cells in table_rows(body):
            code = re.sub(r"[`*]", "", cells[0]) if cells else ""
            if CODE.match(code) and len(cells) >= 3:
                said = {w.strip().lower() for w in cells[1].split(",")}
                want = {w for w, s_ in (("sql", sql), ("python", py)) if code in s_}
                if said != want:
                    wrong.append("%s: docs say %s, the code raises it in %s" % (code, cells[1], " and ".join(sorted(want)) or "neither"))
    assert not wrong, "docs/errors.md, column 'raised by': %s" % wrong


def test_errors_md_reject_reasons_match_the_sql():
    _, rejects = documented_codes()
    code = set(sql_reject_codes())
    assert rejects == code, "reject reasons: written by SQL %s, documented %s" % (sorted(code), sorted(rejects))


# ---------------------------------------------------------------- (d) links
MD_FILES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)   # links in code blocks are not links
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_docs_exist():
    for name in ("guide.md", "cli.md", "sql-api.md", "errors.md", "internals.md", "benchmarks.md"):
        assert (DOCS / name).is_file(), "docs/%s is missing" % name


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(md):
    bad = []
    for target in relative_links(md):
        file, _, anchor = target.partition("#")
        dest = (md.parent / file).resolve() if file else md
        if not dest.exists():
            bad.append("%s (no such file)" % target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append("%s (no such heading in %s)" % (target, dest.name))
    assert not bad, "%s: broken links: %s" % (md.relative_to(ROOT), bad)
