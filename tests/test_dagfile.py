"""The .dag parser: every command DAGMan's input language has, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rulesmon.probes.dagfile import DagError, parse_dag, parse_rescue, parse_vars

FIXTURES = Path(__file__).parent / "fixtures" / "dagman"


def _dag(tmp_path: Path, text: str, name: str = "main.dag") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_recorded_pipeline_parses_with_vars_retries_and_edges() -> None:
    """The DAG of the recorded run has its four nodes, VARS, RETRY counts and edges."""
    dag = parse_dag(FIXTURES / "pipe" / "pipe.dag")
    assert list(dag.nodes) == ["A", "B", "C", "D"]
    assert dag.nodes["A"].vars == {"run_uuid": "r1", "epoch": "1", "ResourceName": "gpu-a",
                                   "rc": "0"}
    assert (dag.nodes["B"].retry, dag.nodes["C"].retry, dag.nodes["A"].retry) == (2, 1, 0)
    assert dag.nodes["A"].children == ["B"] and dag.nodes["D"].parents == ["C"]
    assert (dag.node_status_file, dag.status_interval) == ("pipe.dag.status", 5)


def test_job_options_noop_done_dir_and_keywords_in_any_case(tmp_path: Path) -> None:
    """JOB takes DIR, NOOP and DONE in any order and keywords in any case."""
    dag = parse_dag(_dag(tmp_path, "job A a.sub DIR work NOOP\nJob B b.sub done\n"
                                   "FINAL F f.sub\nSUBDAG EXTERNAL S inner.dag DIR sub\n"
                                   "PROVISIONER P p.sub\nSERVICE W w.sub\n"))
    a, b = dag.nodes["A"], dag.nodes["B"]
    assert (a.dir, a.noop, a.done, b.done) == ("work", True, False, True)
    assert [dag.nodes[n].kind for n in "FSPW"] == ["FINAL", "SUBDAG", "PROVISIONER",
                                                    "SERVICE"]
    assert dag.nodes["S"].submit == "inner.dag" and dag.nodes["S"].dir == "sub"


def test_vars_quotes_escapes_prepend_and_job_macro(tmp_path: Path) -> None:
    """VARS values keep spaces, undo \\" and \\\\, accept PREPEND/APPEND and expand $(JOB)."""
    text = ('JOB A a.sub\n'
            'VARS A first="Alberto Contador" second="\\"quoted\\""\n'
            'VARS A PREPEND third="back\\\\slash" out="$(JOB)-out" retry="$(RETRY)"\n'
            "VARS A misc=\"!@#$%^&*()_-=+=[]{}?/\" single=\"it's\"\n")
    dag = parse_dag(_dag(tmp_path, text))
    assert dag.nodes["A"].vars == {
        "first": "Alberto Contador", "second": '"quoted"', "third": "back\\slash",
        "out": "A-out", "retry": "$(RETRY)", "misc": "!@#$%^&*()_-=+=[]{}?/",
        "single": "it's"}


def test_vars_errors_name_the_file_and_line(tmp_path: Path) -> None:
    """An unquoted value or a macro named queue* is an error at its line."""
    with pytest.raises(DagError) as err:
        parse_dag(_dag(tmp_path, "JOB A a.sub\n\nVARS A epoch=3\n"))
    assert str(err.value).endswith("main.dag:3: VARS A: expected name=\"value\" at 'epoch=3'")
    with pytest.raises(DagError, match=r":2: VARS A: a macro name cannot start with 'queue'"):
        parse_dag(_dag(tmp_path, 'JOB A a.sub\nVARS A Queue_x="1"\n'))
    assert parse_vars('APPEND k="v"', "f", 1, "N") == ({"k": "v"}, "APPEND")


def test_parent_child_many_to_many(tmp_path: Path) -> None:
    """PARENT p1 p2 CHILD c1 c2 links every parent to every child, once."""
    dag = parse_dag(_dag(tmp_path, "JOB A x\nJOB B x\nJOB C x\nJOB D x\n"
                                   "PARENT A B CHILD C D\nPARENT A CHILD C\n"))
    assert dag.nodes["A"].children == ["C", "D"] and dag.nodes["B"].children == ["C", "D"]
    assert dag.nodes["C"].parents == ["A", "B"]
    assert dag.roots() == ["A", "B"]


def test_retry_scripts_abort_and_other_node_commands(tmp_path: Path) -> None:
    """RETRY UNLESS-EXIT, SCRIPT with DEFER and DEBUG, ABORT-DAG-ON RETURN, PRE_SKIP,
    PRIORITY, CATEGORY and DONE land on their node."""
    text = """\
JOB A a.sub
JOB B b.sub
RETRY A 3 UNLESS-EXIT 42
SCRIPT PRE A pre.sh $JOB  arg2
SCRIPT DEFER 4 30 DEBUG post.log ALL POST A post.sh $RETURN
SCRIPT HOLD B hold.sh
ABORT-DAG-ON A 7 RETURN 9
ABORT-DAG-ON B 1
PRE_SKIP A 99
PRIORITY A 10
CATEGORY A gpu
MAXJOBS gpu 2
DONE B
"""
    dag = parse_dag(_dag(tmp_path, text))
    a, b = dag.nodes["A"], dag.nodes["B"]
    assert (a.retry, a.retry_unless_exit) == (3, 42)
    assert a.scripts["PRE"].command == "pre.sh $JOB  arg2"
    post = a.scripts["POST"]
    assert (post.command, post.defer_status, post.defer_time, post.debug_file,
            post.debug_type) == ("post.sh $RETURN", 4, 30, "post.log", "ALL")
    assert b.scripts["HOLD"].command == "hold.sh"
    assert (a.abort_on, a.abort_return, b.abort_on, b.abort_return) == (7, 9, 1, None)
    assert (a.pre_skip, a.priority, a.category, b.done) == (99, 10, "gpu", True)
    assert dag.maxjobs == {"gpu": 2}


def test_all_nodes_applies_to_every_node_and_a_node_setting_wins(tmp_path: Path) -> None:
    """RETRY/VARS ALL_NODES reach every node of the file; a node's own value wins."""
    dag = parse_dag(_dag(tmp_path, 'JOB A x\nJOB B x\nRETRY A 5\nRETRY ALL_NODES 2\n'
                                   'VARS ALL_NODES run_uuid="r1"\nVARS B run_uuid="r2"\n'))
    assert (dag.nodes["A"].retry, dag.nodes["B"].retry) == (5, 2)
    assert dag.nodes["A"].vars["run_uuid"] == "r1" and dag.nodes["B"].vars["run_uuid"] == "r2"


def test_comments_blank_lines_and_continuations(tmp_path: Path) -> None:
    """# comments and blank lines are skipped; a trailing backslash joins the next line, and
    errors report the line where the command starts."""
    text = "# header\n\n   # indented comment\nJOB A a.sub\nVARS A one=\"1\" \\\n  two=\"2\"\n" \
           "PARENT A \\\n CHILD B\n"
    with pytest.raises(DagError, match=r"main.dag:7: CHILD names unknown node 'B'"):
        parse_dag(_dag(tmp_path, text))
    dag = parse_dag(_dag(tmp_path, text + "JOB B b.sub\n"))
    assert dag.nodes["A"].vars == {"one": "1", "two": "2"}
    assert dag.nodes["B"].parents == ["A"]


def test_include_reads_the_file_inline(tmp_path: Path) -> None:
    """INCLUDE adds another file's nodes and commands to the same DAG."""
    (tmp_path / "more.dag").write_text('JOB B b.sub\nVARS A epoch="2"\n', encoding="utf-8")
    dag = parse_dag(_dag(tmp_path, "JOB A a.sub\nINCLUDE more.dag\nPARENT A CHILD B\n"))
    assert dag.nodes["A"].vars == {"epoch": "2"} and dag.nodes["B"].parents == ["A"]
    assert [p.name for p in dag.files] == ["main.dag", "more.dag"]


def test_splice_prefixes_names_and_connects_its_ends(tmp_path: Path) -> None:
    """SPLICE nodes are named S+N (as DAGMan logs them); a splice as parent means its final
    nodes, as child its initial ones; DIR is prepended to the splice's node folders."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "train.dag").write_text(
        'JOB prep p.sub\nJOB fit f.sub DIR fitdir\nVARS fit epoch="1"\nPARENT prep CHILD fit\n'
        'NODE_STATUS_FILE ignored.status\n', encoding="utf-8")
    dag = parse_dag(_dag(tmp_path, "JOB start s.sub\nJOB end e.sub\n"
                                   "SPLICE run1 train.dag DIR sub\nSPLICE run2 train.dag DIR sub\n"
                                   "PARENT start CHILD run1 run2\nPARENT run1 run2 CHILD end\n"))
    assert sorted(dag.nodes) == ["end", "run1+fit", "run1+prep", "run2+fit", "run2+prep",
                                 "start"]
    assert dag.nodes["start"].children == ["run1+prep", "run2+prep"]
    assert dag.nodes["end"].parents == ["run1+fit", "run2+fit"]
    assert dag.nodes["run1+fit"].vars == {"epoch": "1"}
    assert dag.nodes["run1+fit"].dir == "sub/fitdir" and dag.nodes["run1+prep"].dir == "sub"
    assert dag.node_status_file is None  # inside a splice it is ignored, as DAGMan does
    assert dag.splices["run1"] == ["run1+fit", "run1+prep"]


def test_accepted_settings_and_inline_blocks(tmp_path: Path) -> None:
    """NODE_STATUS_FILE, JOBSTATE_LOG, DOT, CONFIG, SET_JOB_ATTR, ENV, SUBMIT-DESCRIPTION and
    inline JOB blocks are accepted; the first NODE_STATUS_FILE wins."""
    text = """\
CONFIG dag.config
DOT dag.dot UPDATE
JOBSTATE_LOG dag.jobstate.log
NODE_STATUS_FILE first.status 30 ALWAYS-UPDATE
NODE_STATUS_FILE second.status
SET_JOB_ATTR Team = "ml"
ENV SET A=1;B=2
SUBMIT-DESCRIPTION common {
    executable = run.sh
    queue
}
JOB A common
JOB B {
    executable = b.sh
}
SAVE_POINT_FILE A
"""
    dag = parse_dag(_dag(tmp_path, text))
    assert (dag.config, dag.dot, dag.jobstate_log) == ("dag.config", "dag.dot",
                                                       "dag.jobstate.log")
    assert (dag.node_status_file, dag.status_interval, dag.status_always_update) == (
        "first.status", 30, True)
    assert dag.nodes["A"].submit == "common" and dag.nodes["B"].submit == "(inline)"


@pytest.mark.parametrize(("text", "message"), [
    ("JOB A\n", ":1: JOB needs a node name and a submit file"),
    ("JOB A a.sub\nJOB A b.sub\n", ":2: node 'A' is defined twice (first at "),
    ("JOB A+B a.sub\n", ":1: node name 'A+B' cannot contain '+'"),
    ("JOB ALL_NODES a.sub\n", ":1: ALL_NODES is reserved"),
    ("JOB A a.sub FAST\n", ":1: JOB A: unexpected 'FAST'"),
    ("JOB A a.sub\nRETRY A many\n", ":2: RETRY A: the number of retries must be an integer"),
    ("JOB A a.sub\nRETRY A 2 UNLESS 3\n", ":2: RETRY A: expected UNLESS-EXIT"),
    ("JOB A a.sub\nVARS Z x=\"1\"\n", ":2: VARS names unknown node 'Z'"),
    ("JOB Alpha a.sub\nRETRY Alpah 1\n", "(did you mean 'Alpha'?)"),
    ("JOB A a.sub\nPARENT A\n", ":2: PARENT needs CHILD"),
    ("JOB A a.sub\nPARENT A CHILD A\n", ":2: node 'A' cannot be its own parent"),
    ("JOB A a.sub\nSCRIPT A pre.sh\n", ":2: SCRIPT needs PRE, POST or HOLD"),
    ("JOB A a.sub\nABORT-DAG-ON A 1 RETURNS 2\n", ":2: ABORT-DAG-ON A: expected RETURN"),
    ("SUBDAG S inner.dag\n", ":1: SUBDAG needs EXTERNAL"),
    ("INCLUDE missing.dag\n", ":1: cannot read"),
    ("SPLICE S missing.dag\n", ":1: cannot read"),
    ("FROBNICATE A\n", ":1: unknown command 'FROBNICATE'"),
    ("JOB A {\n executable = x\n", ":1: inline block `{` is never closed"),
    ("NODE_STATUS_FILE s.status soon\n", ":1: NODE_STATUS_FILE: unexpected 'soon'"),
])
def test_mistakes_are_one_located_line(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake gives one `file:line: message`, never a traceback."""
    with pytest.raises(DagError) as err:
        parse_dag(_dag(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_dag_and_include_cycle(tmp_path: Path) -> None:
    """A missing .dag file and a file that includes itself are located errors."""
    with pytest.raises(DagError, match=r"nope.dag:0: cannot read the DAG file"):
        parse_dag(tmp_path / "nope.dag")
    with pytest.raises(DagError, match=r"nested more than 32 deep"):
        parse_dag(_dag(tmp_path, "INCLUDE self.dag\n", "self.dag"))


def test_binary_garbage_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """Random bytes in a .dag file give a DagError."""
    path = tmp_path / "junk.dag"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DagError):
        parse_dag(path)


@pytest.mark.parametrize("text", ["\\", "\\\n", "JOB A a.sub\n\\\n\nJOB B b.sub\n",
                                  "JOB A a.sub\n \\ \n", "\\\n\\\n# x\n"])
def test_lone_backslash_lines_continue_nothing(tmp_path: Path, text: str) -> None:
    """A continuation line made only of `\\` (at the end, or before a blank line) is an
    empty line, not a crash."""
    dag = parse_dag(_dag(tmp_path, text))
    assert set(dag.nodes) <= {"A", "B"}


_PIECES = ["JOB A a.sub", "JOB B b.sub DIR d", "VARS A x=\"1\"", "VARS A y=\"a\\\"b\"",
           "PARENT A CHILD B", "RETRY A 2", "SCRIPT PRE A pre.sh", "ABORT-DAG-ON A 3",
           "INCLUDE", "SPLICE S", "JOB C {", "}", "{", "\\", "\\\\", " \\", "#", "", "   ",
           "NODE_STATUS_FILE", "RETRY", "VARS", "PARENT", "CHILD", "DONE A", "\x00", "é\\",
           "JOB", "SUBDAG EXTERNAL", "FINAL F f.sub", "PRIORITY A x", "CATEGORY A c",
           "MAXJOBS c 2", "SUBMIT-DESCRIPTION d {", "\"", "VARS A x=\"unclosed"]


def test_fuzzed_dag_files_parse_or_fail_with_a_located_error(tmp_path: Path) -> None:
    """Thousands of random combinations of DAG lines and fragments (lone backslashes, braces,
    truncated commands) each parse or raise one located DagError, never another exception."""
    import random

    rng = random.Random(7)
    for i in range(3000):
        lines = [rng.choice(_PIECES) + rng.choice(["", " ", "\\", " \\"])
                 for _ in range(rng.randint(0, 8))]
        text = "\n".join(lines) + rng.choice(["", "\n", "\\", "\\\n"])
        path = tmp_path / f"f{i % 10}.dag"
        path.write_text(text, encoding="utf-8")
        try:
            parse_dag(path)
        except DagError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(tmp_path)), text


def test_rescue_dag_done_nodes_retries_and_failed_list() -> None:
    """A recorded partial rescue DAG gives its DONE nodes, RETRY counts and failed nodes."""
    done, retries, failed = parse_rescue(FIXTURES / "pipe" / "pipe.dag.rescue001")
    assert done == {"A", "B"}
    assert retries == {"B": 2, "C": 1}
    assert failed == ["C"]
    assert parse_rescue(FIXTURES / "abort" / "abort.dag.rescue005") == ({"P"}, {}, [])
