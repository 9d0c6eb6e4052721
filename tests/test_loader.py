"""Loading rulesets: interpolation, extends/merge, anchors, positions and strictness."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from rulesmon.config.loader import builtin_names, load, load_text
from rulesmon.config.models import SCHEDULER_LOGS
from rulesmon.diagnostics import Diagnostic, RulesetError
from rulesmon.lint import lint_file

# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work inside tmp_path so that diagnostics carry short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def put(base: Path, name: str, text: str) -> Path:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def ok(path: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load(path, env or {}).ruleset


def errors(path: Path, env: dict[str, str] | None = None) -> list[Diagnostic]:
    with pytest.raises(RulesetError) as info:
        load(path, env or {})
    assert info.value.diagnostics
    return info.value.diagnostics


def pos(path: Path, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based (line, col) of the nth occurrence of `needle` in the file."""
    text = path.read_text(encoding="utf-8")
    start = -1
    for _ in range(nth):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, col


def rule(rs, name: str):  # type: ignore[no-untyped-def]
    return next(r for r in rs.rules if r.name == name)


PARENT = """
version: 1
name: parent
every: 60s
description: the parent
defaults:
  severity: error
  resolve: false
  labels: {team: infra, env: prod}
notify:
  team: "json://localhost/team"
  ops: "json://localhost/ops"
jobs:
  train:
    slurm: {user: alice}
    logs: ["train.log"]
  evals:
    slurm: {user: bob}
rules:
  - name: crashed
    when: job.state == "FAILED"
    severity: critical
    for: 5m
    notify: team
  - name: timed-out
    when: job.state == "TIMEOUT"
    notify: ops
"""


# --- interpolation --------------------------------------------------------------------------------


def test_var_is_replaced(here: Path) -> None:
    """`${VAR}` is replaced by the variable's value, also inside a longer string."""
    p = put(here, "r.yaml", """
        version: 1
        name: "${RS_NAME}"
        description: "owned by ${WHO} on ${WHO}'s cluster"
    """)
    rs = ok(p, {"RS_NAME": "demo", "WHO": "alice"})
    assert rs.name == "demo"
    assert rs.description == "owned by alice on alice's cluster"


def test_default_used_when_unset(here: Path) -> None:
    """`${VAR:-default}` gives the default when VAR is not set, and `${VAR:-}` gives ''."""
    p = put(here, "r.yaml", """
        version: 1
        name: "${RS_NAME:-fallback-name}"
        description: "[${NOPE:-}]"
    """)
    rs = ok(p, {})
    assert rs.name == "fallback-name"
    assert rs.description == "[]"


def test_set_but_empty_var_uses_default(here: Path) -> None:
    """As in the shell, `${VAR:-default}` gives the default also when VAR is set but empty."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        description: "${EMPTY:-fallback}"
    """)
    assert ok(p, {"EMPTY": ""}).description == "fallback"
    assert ok(p, {}).description == "fallback"


def test_set_but_empty_var_without_default_is_empty(here: Path) -> None:
    """A set-but-empty `${VAR}` without a default is the empty string, not RM301."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        description: "[${EMPTY}]"
    """)
    assert ok(p, {"EMPTY": ""}).description == "[]"


def test_set_var_ignores_default(here: Path) -> None:
    """A set variable's value is used and its default ignored."""
    p = put(here, "r.yaml", """
        version: 1
        name: "${RS_NAME:-fallback}"
    """)
    assert ok(p, {"RS_NAME": "real"}).name == "real"


def test_double_dollar_is_a_literal(here: Path) -> None:
    """`$${X}` gives a literal `${X}`, is not looked up, and needs no variable to be set."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        description: "$${HOME} and $${UNSET_VAR:-d} and ${WHO}"
    """)
    rs = ok(p, {"HOME": "/root", "WHO": "bob"})
    assert rs.description == "${HOME} and ${UNSET_VAR:-d} and bob"


def test_unset_var_without_default_is_rm301(here: Path) -> None:
    """An unset `${VAR}` without default is RM301 at the value, naming the variable."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        description: "hello ${NOT_SET_VAR}"
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM301"]
    assert "NOT_SET_VAR" in diags[0].message
    assert (diags[0].line, diags[0].col) == pos(p, '"hello')


def test_every_unset_var_is_reported(here: Path) -> None:
    """All unset variables of a file are reported at once, each at its own line."""
    p = put(here, "r.yaml", """
        version: 1
        name: "${FIRST_UNSET}"
        description: "${SECOND_UNSET}"
    """)
    diags = errors(p)
    assert [(d.code, d.line) for d in diags] == [("RM301", 2), ("RM301", 3)]
    assert "FIRST_UNSET" in diags[0].message and "SECOND_UNSET" in diags[1].message


def test_malformed_reference_is_rm305(here: Path) -> None:
    """A reference that is not `${NAME}` or `${NAME:-default}` is RM305."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        description: "${not a name}"
    """)
    assert [d.code for d in errors(p)] == ["RM305"]


SECRET = "hunter2-secret-token"

SECRET_FILES = {
    "invalid-url": """
        version: 1
        name: s
        notify:
          team: "notaservice://${SECRET}@host/x"
          other: "${SECRET}"
        jobs:
          train:
            slurm: {user: alice}
        rules:
          - name: crashed
            when: job.state == "FAILED"
            notify: team
    """,
    "echoed-bad-values": """
        version: 1
        name: s
        every: "${SECRET}"
        rules:
          - name: crashed
            when: job.state == "FAILED"
            severity: "${SECRET}"
            notify: "${SECRET}"
    """,
    "with-unset-var": """
        version: 1
        name: "${SECRET}"
        description: "${SECRET} ${NOT_SET_VAR}"
    """,
    "string-literal-in-condition": """
        version: 1
        name: s
        notify:
          team: "json://localhost/x"
        jobs:
          train:
            slurm: {user: alice}
        rules:
          - name: crashed
            when: job.state == "${SECRET}"
            notify: "${SECRET}"
    """,
}


@pytest.mark.parametrize("case", sorted(SECRET_FILES))
def test_set_variable_values_never_appear_in_diagnostics(here: Path, case: str) -> None:
    """The value of a set variable is never printed by lint, even when the value is wrong."""
    p = put(here, "s.yaml", SECRET_FILES[case])
    diags = lint_file(p, {"SECRET": SECRET})
    assert diags, "each case is a ruleset with at least one finding"
    for d in diags:
        assert "hunter2" not in d.message, d.render()
        assert "hunter2" not in d.render()


def test_invalid_secret_url_is_rm407_without_the_secret(here: Path) -> None:
    """An invalid notify URL built from a secret is RM407, its message names only the scheme."""
    p = put(here, "s.yaml", SECRET_FILES["invalid-url"])
    diags = lint_file(p, {"SECRET": SECRET})
    assert {d.code for d in diags} == {"RM407"}
    assert any("notaservice://" in d.message for d in diags)


def test_secret_fragments_in_conditions_and_templates_are_not_printed(here: Path) -> None:
    """A secret interpolated into a condition or template is never printed, not even in pieces
    (the unknown-fact check quotes the tokens it parses out of it, such as 'hunter2')."""
    p = put(here, "s.yaml", """
        version: 1
        name: s
        notify:
          team: "json://localhost/x"
        jobs:
          train:
            slurm: {user: alice}
        rules:
          - name: leaky
            when: ${SECRET} > 1
            notify: team
            message: "{{ ${SECRET} }}"
    """)
    diags = lint_file(p, {"SECRET": SECRET})
    assert diags
    leaked = [d.render() for d in diags if "hunter2" in d.message]
    assert leaked == []


# --- extends --------------------------------------------------------------------------------------


def test_extends_relative_path_from_each_files_folder(here: Path) -> None:
    """A relative extends path is resolved from the folder of the file that names it (here a
    folder named with extends_path; the parents are trusted, as they declare targets)."""
    put(here, "shared/grand.yaml", """
        version: 1
        name: grand
        notify:
          grand: "json://localhost/grand"
    """)
    put(here, "shared/parent.yaml",
        PARENT.replace("name: parent",
                        "name: parent\nextends: [{path: grand.yaml, trust: true}]"))
    p = put(here, "project/child.yaml", """
        version: 1
        name: child
        extends: [{path: ../shared/parent.yaml, trust: true}]
    """)
    rs = load(p, {}, extends_path=[here / "shared"]).ruleset
    assert rs.name == "child"
    assert set(rs.notify) == {"grand", "team", "ops"}
    assert [r.name for r in rs.rules] == ["crashed", "timed-out"]
    assert set(rs.jobs) == {"train", "evals"}


def test_two_parents_apply_left_to_right(here: Path) -> None:
    """With two parents, the right one wins over the left one, and the child over both."""
    put(here, "p1.yaml", """
        version: 1
        name: p1
        every: 10s
        notify: {a: "json://localhost/a"}
        rules:
          - {name: r-one, when: job.state == "FAILED", for: 1m}
    """)
    put(here, "p2.yaml", """
        version: 1
        name: p2
        every: 20s
        description: from p2
        notify: {b: "json://localhost/b"}
        rules:
          - {name: r-two, when: job.state == "TIMEOUT"}
    """)
    lr = put(here, "lr.yaml", """
        version: 1
        name: lr
        extends: [{path: p1.yaml, trust: true}, {path: p2.yaml, trust: true}]
    """)
    rl = put(here, "rl.yaml", """
        version: 1
        name: rl
        extends: [{path: p2.yaml, trust: true}, {path: p1.yaml, trust: true}]
        description: from the child
    """)
    a, b = ok(lr), ok(rl)
    assert a.every == 20.0 and a.description == "from p2"
    assert b.every == 10.0 and b.description == "from the child"
    assert set(a.notify) == set(b.notify) == {"a", "b"}
    assert [r.name for r in a.rules] == ["r-one", "r-two"]
    assert [r.name for r in b.rules] == ["r-two", "r-one"]


def test_child_overrides_scalars(here: Path) -> None:
    """A scalar in the child (every, name) replaces the parent's; unset ones are inherited."""
    put(here, "parent.yaml", PARENT)
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: [{path: parent.yaml, trust: true}]  # it declares targets
        every: 15s
    """)
    rs = ok(p)
    assert (rs.name, rs.every, rs.description) == ("child", 15.0, "the parent")


def test_notify_and_jobs_merge_by_key(here: Path) -> None:
    """notify and jobs merge by key: a same-named child entry replaces the parent's whole entry."""
    put(here, "parent.yaml", PARENT)
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: [{path: parent.yaml, trust: true}]  # it declares targets
        notify:
          team: "json://localhost/new-team"
          extra: "json://localhost/extra"
        jobs:
          train:
            slurm: {user: carol}
    """)
    rs = ok(p)
    assert rs.notify["team"].urls == ["json://localhost/new-team"]
    assert rs.notify["ops"].urls == ["json://localhost/ops"]
    assert rs.notify["extra"].urls == ["json://localhost/extra"]
    assert rs.jobs["train"].slurm.user == "carol"
    # replaced, not deep-merged: the parent's train.log is gone, leaving a slurm job's
    # default logs (its own output)
    assert [spec.path for spec in rs.jobs["train"].logs] == [
        entry["path"] for entry in SCHEDULER_LOGS]
    assert rs.jobs["evals"].slurm.user == "bob"


def test_defaults_deep_merge(here: Path) -> None:
    """defaults merge deeply: nested labels merge by key, untouched defaults are inherited."""
    put(here, "parent.yaml", PARENT)
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: [{path: parent.yaml, trust: true}]  # it declares targets
        defaults:
          labels: {env: dev, owner: me}
          notify: [team]
    """)
    d = ok(p).defaults
    assert d.severity == "error" and d.resolve is False
    assert d.labels == {"team": "infra", "env": "dev", "owner": "me"}
    assert d.notify == ["team"]


def test_rules_merge_by_name_field_by_field(here: Path) -> None:
    """A child rule with a parent's name changes only the fields it gives, in the parent's place."""
    put(here, "parent.yaml", PARENT)
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: [{path: parent.yaml, trust: true}]  # it declares targets
        rules:
          - name: new-rule
            when: job.state == "RUNNING"
          - name: crashed
            for: 10m
    """)
    rs = ok(p)
    assert [r.name for r in rs.rules] == ["crashed", "timed-out", "new-rule"]
    crashed = rule(rs, "crashed")
    assert crashed.for_ == 600.0
    assert crashed.when == 'job.state == "FAILED"'
    assert crashed.severity == "critical" and crashed.notify == ["team"]


def test_rule_can_be_disabled_by_name(here: Path) -> None:
    """`{name: x, enabled: false}` disables an inherited rule and keeps the rest of it."""
    put(here, "parent.yaml", PARENT)
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: [{path: parent.yaml, trust: true}]  # it declares targets
        rules:
          - {name: timed-out, enabled: false}
    """)
    rs = ok(p)
    t = rule(rs, "timed-out")
    assert t.enabled is False and t.when == 'job.state == "TIMEOUT"'
    assert rule(rs, "crashed").enabled is True


@pytest.mark.parametrize(("body", "verb"), [("for: 10m", "overrides"),
                                             ("enabled: false", "disables")])
def test_override_of_unknown_rule_is_rm304(here: Path, body: str, verb: str) -> None:
    """A child rule without `when` whose name is not inherited is RM304 at its name."""
    put(here, "parent.yaml", PARENT)
    p = put(here, "child.yaml", f"""
        version: 1
        name: child
        extends: [{{path: parent.yaml, trust: true}}]  # it declares targets
        rules:
          - name: crashd
            {body}
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM304"]
    assert "crashd" in diags[0].message and verb in diags[0].message
    assert (diags[0].path, diags[0].line, diags[0].col) == ("child.yaml", *pos(p, "crashd"))


def test_extends_cycle_is_rm303_at_the_extends_entry(here: Path) -> None:
    """a → b → a is RM303 at the extends entry of the linted file, where the cycle starts."""
    a = put(here, "a.yaml", """
        version: 1
        name: a
        extends: [b.yaml]
    """)
    b = put(here, "b.yaml", """
        version: 1
        name: b
        extends:
          - a.yaml
    """)
    for start, other, entry in ((a, b, "b.yaml"), (b, a, "a.yaml")):
        diags = lint_file(start, {})
        assert [d.code for d in diags] == ["RM303"]
        assert (diags[0].path, diags[0].line, diags[0].col) == (start.name, *pos(start, entry))
        assert "cycle" in diags[0].message and other.name in diags[0].message


def test_cycle_below_the_linted_file_points_where_it_starts(here: Path) -> None:
    """x → a → b → a is RM303 at a's extends entry, where the cycle starts, not in x."""
    put(here, "x.yaml", "version: 1\nname: x\nextends: a.yaml\n")
    a = put(here, "a.yaml", "version: 1\nname: a\nextends: b.yaml\n")
    put(here, "b.yaml", "version: 1\nname: b\nextends: a.yaml\n")
    diags = lint_file(here / "x.yaml", {})
    assert [d.code for d in diags] == ["RM303"]
    assert (diags[0].path, diags[0].line, diags[0].col) == ("a.yaml", *pos(a, "b.yaml"))


def test_self_extends_is_rm303(here: Path) -> None:
    """A ruleset extending itself is RM303 at its own extends value."""
    p = put(here, "self.yaml", """
        version: 1
        name: self
        extends: self.yaml
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM303"]
    assert (diags[0].line, diags[0].col) == pos(p, "self.yaml")


def test_missing_parent_is_rm302(here: Path) -> None:
    """A parent file that does not exist is RM302 at the extends entry, naming it."""
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: [parents/nope.yaml]
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM302"]
    assert "parents/nope.yaml" in diags[0].message
    assert (diags[0].line, diags[0].col) == pos(p, "parents/nope.yaml")


def test_unknown_builtin_is_rm302_listing_builtins(here: Path) -> None:
    """`builtin:NAME` for a name that is not shipped is RM302 listing every builtin."""
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: "builtin:zzz-no-such-builtin"
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM302"]
    msg = diags[0].message
    assert "zzz-no-such-builtin" in msg and "builtins: " in msg
    for name in builtin_names():
        assert name in msg
    assert (diags[0].line, diags[0].col) == pos(p, '"builtin:')


def test_unknown_key_in_parent_reported_at_parent(here: Path) -> None:
    """A schema error inside a parent is reported with the parent's path, line and column."""
    parent = put(here, "parents/base.yaml", """
        version: 1
        name: base
        jobs:
          train:
            slurm: {usr: alice}
    """)
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: parents/base.yaml
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM201"]
    assert (diags[0].path, diags[0].line, diags[0].col) == \
        ("parents/base.yaml", *pos(parent, "usr"))


def test_bad_value_in_parent_reported_at_parent(here: Path) -> None:
    """A bad value inside a parent rule is reported at the value in the parent."""
    parent = put(here, "base.yaml", """
        version: 1
        name: base
        rules:
          - name: r
            when: job.state == "FAILED"
            for: banana
    """)
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: base.yaml
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM205"]
    assert (diags[0].path, diags[0].line, diags[0].col) == ("base.yaml", *pos(parent, "banana"))


def test_unset_var_in_parent_reported_at_parent(here: Path) -> None:
    """An unset variable inside a trusted parent is RM301 at the parent's value."""
    parent = put(here, "base.yaml", """
        version: 1
        name: base
        description: "${PARENT_ONLY_VAR}"
    """)
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: [{path: base.yaml, trust: true}]
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM301"]
    assert (diags[0].path, diags[0].line) == ("base.yaml", pos(parent, "${PARENT")[0])


def test_yaml_error_in_parent_reported_at_parent(here: Path) -> None:
    """A YAML syntax error in a parent is reported with the parent's path."""
    put(here, "base.yaml", "version: 1\nname: [unclosed\n")
    p = put(here, "child.yaml", """
        version: 1
        name: child
        extends: base.yaml
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM101"]
    assert diags[0].path == "base.yaml" and diags[0].line >= 2


def test_load_text_extends_from_base(here: Path) -> None:
    """load_text resolves relative extends from `base` and merges like load."""
    put(here, "sub/parent.yaml", PARENT)
    text = ("version: 1\nname: t\nextends: [{path: parent.yaml, trust: true}]\n"
            "rules:\n  - {name: crashed, for: 1h}\n")
    rs = load_text(text, env={}, base=here / "sub").ruleset
    assert rule(rs, "crashed").for_ == 3600.0 and rule(rs, "crashed").severity == "critical"


# --- anchors and merge keys -----------------------------------------------------------------------


def test_x_prefixed_keys_are_ignored(here: Path) -> None:
    """Top-level keys starting with `x-` are allowed, hold anything, and are ignored."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        x-notes: {anything: [1, 2, {deep: true}]}
        x-string: just text
    """)
    rs = ok(p)
    assert rs.name == "x"


def test_plain_anchor_and_alias(here: Path) -> None:
    """An anchor in an `x-` key can be reused with a plain alias."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        x-targets: &targets [team, ops]
        notify:
          team: "json://localhost/t"
          ops: "json://localhost/o"
        defaults:
          notify: *targets
    """)
    assert ok(p).defaults.notify == ["team", "ops"]


def test_merge_keys_work(here: Path) -> None:
    """`<<: *anchor` merges a shared block into a rule; keys of the rule win over it."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        x-rule-defaults: &rd
          severity: critical
          for: 5m
        rules:
          - <<: *rd
            name: crashed
            when: job.state == "FAILED"
          - <<: *rd
            name: timed-out
            when: job.state == "TIMEOUT"
            for: 1m
    """)
    rs = ok(p)
    assert rule(rs, "crashed").severity == "critical" and rule(rs, "crashed").for_ == 300.0
    assert rule(rs, "timed-out").for_ == 60.0


def test_error_in_merged_block_points_at_anchor(here: Path) -> None:
    """A bad value brought in by `<<: *anchor` is reported at the anchor's line, not the alias."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        x-rule-defaults: &rd
          severity: warning
          for: banana
        rules:
          - <<: *rd
            name: crashed
            when: job.state == "FAILED"
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM205"]
    assert (diags[0].line, diags[0].col) == pos(p, "banana")


def test_merge_key_alone_regression(here: Path) -> None:
    """Regression: a mapping made only of `<<: *anchor` is loaded, not an internal error.

    ruamel.yaml leaves `lc.data` unset (None) on a map with no keys of its own, and
    yamlio._key_positions calls `m.lc.data.get(key)` on it (AttributeError).
    """
    p = put(here, "r.yaml", """
        x-a: &a {k: 1}
        y:
          <<: *a
    """)
    diags = lint_file(p, {})
    assert "RM009" not in {d.code for d in diags}, [d.render() for d in diags]
    assert {d.code for d in errors(p)} <= {"RM201", "RM202"}  # y unknown; no version, no name


# --- positions ------------------------------------------------------------------------------------


def test_unknown_key_points_at_the_key(here: Path) -> None:
    """An unknown key is RM201 at the key's own line and column, with a did-you-mean."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        jobs:
          train:
            slurm:
              user: alice
              partiton: gpu
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM201"]
    assert (diags[0].line, diags[0].col) == pos(p, "partiton")
    assert '"partition"' in diags[0].message


def test_bad_value_points_at_the_value(here: Path) -> None:
    """A bad value is reported at the value's column, not at its key."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        every: banana
        rules:
          - name: r
            when: job.state == "FAILED"
            severity: urgent
    """)
    diags = errors(p)
    assert [(d.code, d.line, d.col) for d in diags] == [
        ("RM205", *pos(p, "banana")), ("RM204", *pos(p, "urgent"))]


def test_top_level_unknown_key_is_an_error(here: Path) -> None:
    """A top-level key that is neither in the language nor `x-` prefixed is RM201."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        rulez: []
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM201"]
    assert (diags[0].line, diags[0].col) == pos(p, "rulez")


# --- strictness -----------------------------------------------------------------------------------


def test_quoted_number_is_not_coerced(here: Path) -> None:
    """`workers: "4"` is RM203 at the value: strings are never silently coerced to numbers."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        jobs:
          embed:
            local:
              command: run.sh
              workers: "4"
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM203"]
    assert (diags[0].line, diags[0].col) == pos(p, '"4"')
    assert "integer" in diags[0].message


def test_yes_is_a_string_not_a_boolean(here: Path) -> None:
    """`resolve: yes` is RM203: in YAML 1.2 `yes` is a string, and it is not coerced to true."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        rules:
          - name: r
            when: job.state == "FAILED"
            resolve: yes
    """)
    diags = errors(p)
    assert [d.code for d in diags] == ["RM203"]
    assert (diags[0].line, diags[0].col) == pos(p, "yes")


def test_true_is_a_boolean(here: Path) -> None:
    """`resolve: true` is accepted as a boolean (the control for the `yes` case)."""
    p = put(here, "r.yaml", """
        version: 1
        name: x
        rules:
          - name: r
            when: job.state == "FAILED"
            resolve: true
    """)
    assert rule(ok(p), "r").resolve is True


def test_version_must_be_the_integer_one(here: Path) -> None:
    """`version: "1"` is an error (a string, not the integer 1)."""
    p = put(here, "r.yaml", """
        version: "1"
        name: x
    """)
    assert errors(p)[0].line == 1
