"""The CLI as a user sees it: output, exit codes, one-line errors, tables afterwards."""

from __future__ import annotations

import psycopg

HEAD = "id,name,amount,day\n"


def one_error_line(result):
    assert result.exit_code != 0, result.output
    lines = [l for l in result.output.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_dataset_create_with_inferred_types_then_load(cli, conn, write):
    f = write("p.csv", HEAD + "1,Ada,1.5,2024-01-01\n2,Alan,2,2024-01-02\n")
    r = cli("dataset", "create", "people", "--key", "id", "--from", f)
    assert r.exit_code == 0, r.output
    for col, typ in (("id", "bigint"), ("name", "text"), ("amount", "numeric"), ("day", "date")):
        assert col in r.output and typ in r.output
    r = cli("load", "people", f)
    assert r.exit_code == 0, r.output
    assert "inserted" in r.output and "2" in r.output
    assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 2
    r = cli("load", "people", f)
    assert r.exit_code == 0 and "skipped" in r.output
    r = cli("dataset", "list")
    assert "people" in r.output and "public.people" in r.output
    r = cli("dataset", "show", "people")
    assert "amount" in r.output and "numeric" in r.output and "recent loads" in r.output


def test_load_summary_runs_and_rejects(cli, conn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric, day date")
    cli("load", "t", write("a.csv", HEAD + "1,a,1,2024-01-01\n2,b,2,2024-01-02\n"))
    r = cli("load", "t", write("b.csv", HEAD + "1,a,1,2024-01-01\n2,b,9,2024-01-02\n3,c,x,2024-01-03\n"),
            "--mode", "upsert")
    assert r.exit_code == 0, r.output
    out = {l.split()[0]: l.split()[-1] for l in r.output.splitlines() if l.startswith("  ") and len(l.split()) == 2}
    assert out["updated"] == "1" and out["rejected"] == "1" and out["unchanged"] == "1"
    run_id = conn.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]
    r = cli("runs")
    assert r.exit_code == 0 and str(run_id) in r.output
    r = cli("runs", "show", run_id)
    assert r.exit_code == 0, r.output
    assert "line 4" in r.output and "amount" in r.output and "22P02" in r.output and "3,c,x,2024-01-03" in r.output
    assert "validate" in r.output and "apply" in r.output


def test_bad_input_gives_one_line_and_leaves_target(cli, conn, write, tmp_path):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric, day date")
    cli("load", "t", write("a.csv", HEAD + "1,a,1,2024-01-01\n"))
    before = conn.execute("SELECT * FROM t").fetchall()
    cases = {
        "missing file": (["load", "t", tmp_path / "nope.csv"], "not found"),
        "unknown dataset": (["load", "nope", write("x.csv", HEAD)], "unknown dataset nope"),
        "wrong delimiter": (["load", "t", write("semi.csv", "id;name;amount;day\n1;a;1;2024-01-01\n")], "delimiter right"),
        # a bad record is rejected alone: with no reject allowed, nothing is published
        "invalid encoding": (["load", "t", write("enc.csv", HEAD.encode() + b"2,caf\xe9,1,2024-01-01\n"),
                              "--max-rejects", "0"], "nothing was published"),
        "unterminated quote": (["load", "t", write("uq.csv", HEAD + '2,"open,1,2024-01-01\n'), "--max-rejects", "0"],
                               "nothing was published"),
        "empty file": (["load", "t", write("empty.csv", "")], "empty"),
        "bad mode": (["dataset", "create", "u", "--key", "id", "--columns", "id nosuchtype"], "unknown type"),
        "bad key": (["dataset", "create", "u", "--key", "zz", "--columns", "id bigint"], "key column zz"),
        "exists": (["dataset", "create", "t", "--key", "id", "--columns", "id bigint"], "already exists"),
        "unknown run": (["runs", "show", "999999"], "unknown run"),
    }
    for name, (args, needle) in cases.items():
        line = one_error_line(cli(*args))
        assert needle in line, (name, line)
    assert conn.execute("SELECT * FROM t").fetchall() == before
    # a later good load still works
    r = cli("load", "t", write("b.csv", HEAD + "1,a,1,2024-01-01\n2,b,2,2024-01-02\n"))
    assert r.exit_code == 0 and conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2


def test_no_database_is_one_clear_line(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from deltapipe.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELTAPIPE_DSN", raising=False)
    r = CliRunner().invoke(main, ["dataset", "list"])
    line = one_error_line(r)
    assert "no database" in line and "server start" in line
    r = CliRunner().invoke(main, ["dataset", "list", "--dsn", "postgresql://nobody@127.0.0.1:1/none"])
    assert "cannot connect" in one_error_line(r)


def test_not_installed_database(cli, dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA deltapipe CASCADE")
    assert "deltapipe init" in one_error_line(cli("dataset", "list"))


def test_help_explains(cli):
    r = cli("load", "--help")
    assert r.exit_code == 0
    for word in ("snapshot", "upsert", "append", "changes", "--force", "--delimiter", "--encoding", "--no-header"):
        assert word in r.output
