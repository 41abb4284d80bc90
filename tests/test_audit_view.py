"""The "Check data" view's state (state/audit_view.py, no Qt): how decisions on the audit's
findings become data.exclude_files / data.relabel on the project, undo, keep, and the counts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from transfer_gui.state.audit_view import AuditView, imbalance_text, label_key, pair_key, summary
from transfer_gui.state.project import Project


@dataclass
class Issue:
    path: str
    given: str
    suggested: str
    score: float
    reason: str = "the model is sure it is another class"


@dataclass
class Pair:
    a: str
    b: str
    similarity: float
    kind: str
    reason: str = "near duplicates"


@dataclass
class Out:
    path: str
    score: float
    reason: str = "far from every class"


@dataclass
class Result:
    """AuditResult's agreed shape, for tests that need no model."""

    label_issues: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    outliers: list = field(default_factory=list)
    class_counts: dict = field(default_factory=dict)
    imbalance: dict | None = None
    seconds: float = 0.5
    asked: list = field(default_factory=list)

    def neighbours(self, path, class_name, k=3):
        self.asked.append((path, class_name, k))
        return [f"/d/{class_name}/n{i}.png" for i in range(k)]


def result(tmp_path) -> Result:
    p = lambda c, i: str(tmp_path / c / f"{i:03d}.png")  # noqa: E731
    return Result(
        label_issues=[Issue(p("blue", 1), "blue", "red", 0.97), Issue(p("red", 4), "red", "green", 0.8)],
        duplicates=[Pair(p("red", 1), p("red", 2), 1.0, "duplicate"), Pair(p("red", 3), p("green", 3), 0.98, "leak"),
                    Pair(p("green", 5), p("green", 6), 0.96, "near")],
        outliers=[Out(p("green", 9), 4.2)],
        class_counts={"red": 30, "green": 20, "blue": 5},
        imbalance={"largest": "red", "smallest": "blue", "ratio": 6.0, "advice": "Turn on class weights."})


def test_exclude_and_move_change_the_config_and_make_the_project_unsaved(tmp_path):
    project, r = Project(), result(tmp_path)
    view = AuditView(project)
    view.set_result(r)
    first, second = r.label_issues
    assert not project.dirty and view.state(first.path).text() == ""
    assert view.move(first.path, first.suggested)
    assert project.cfg.data.relabel == {first.path: "red"} and project.dirty
    assert view.state(first.path).moved_to == "red" and view.state(first.path).text() == "Moved to red"
    assert view.exclude(second.path)
    assert project.cfg.data.exclude_files == (second.path,)
    # a later decision on the same image replaces the earlier one: excluded or moved, never both
    assert view.exclude(first.path)
    assert project.cfg.data.relabel == {} and set(project.cfg.data.exclude_files) == {first.path, second.path}
    assert view.move(second.path, "blue")
    assert project.cfg.data.exclude_files == (first.path,) and project.cfg.data.relabel == {second.path: "blue"}


def test_undo_puts_back_what_the_image_had_and_leaves_the_others(tmp_path):
    project, r = Project(), result(tmp_path)
    view = AuditView(project)
    view.set_result(r)
    a, b = r.label_issues[0].path, r.label_issues[1].path
    view.move(a, "red")
    view.exclude(b)
    view.exclude(a)  # replaces the move
    assert view.undo_text() == "Undo exclude 001.png"
    assert view.undo().action == "exclude"
    assert project.cfg.data.relabel == {a: "red"} and project.cfg.data.exclude_files == (b,)
    project.set("data.exclude_files", [b, "/elsewhere/x.png"])  # changed meanwhile by someone else
    view.undo()
    assert project.cfg.data.exclude_files == ("/elsewhere/x.png",) and project.cfg.data.relabel == {a: "red"}
    view.undo()
    assert project.cfg.data.relabel == {} and view.undo() is None and view.undo_text() == ""


def test_keep_is_not_in_the_config_and_hides_the_finding_at_the_next_check(tmp_path):
    project, r = Project(), result(tmp_path)
    view = AuditView(project)
    view.set_result(r)
    before = project.cfg
    issue, pair = r.label_issues[0], r.duplicates[0]
    view.keep(label_key(issue.path))
    view.keep(pair_key(pair.b, pair.a))  # the pair's key does not depend on its order
    assert project.cfg == before and not project.dirty
    assert view.is_kept(label_key(issue.path)) and view.is_kept(pair_key(pair.a, pair.b))
    assert issue in view.label_issues() and pair in view.duplicates()  # shown as kept until the next check
    view.set_result(result(tmp_path))
    assert [i.path for i in view.label_issues()] == [r.label_issues[1].path]
    assert [(d.a, d.b) for d in view.duplicates()] == [(d.a, d.b) for d in r.duplicates[1:]]
    assert view.counts().hidden == 2
    view.undo()  # the pair's keep: listed again
    assert len(view.duplicates()) == 3 and view.counts().hidden == 1


def test_counts_match_the_result_and_say_leaks_apart(tmp_path):
    view = AuditView(Project())
    r = result(tmp_path)
    view.set_result(r)
    c = view.counts()
    assert (c.label_issues, c.duplicates, c.leaks, c.outliers, c.hidden) == (2, 2, 1, 1, 0)
    assert c.by_kind == {"duplicate": 1, "leak": 1, "near": 1}
    text = summary(r, c)
    assert text.startswith("2 possible label error(s), 2 duplicate pair(s), 1 leak(s) between sets, 1 outlier(s)")
    assert "55 training images" in text
    assert view.classes() == ["blue", "green", "red"]


def test_neighbours_of_a_suspect_come_from_the_result_for_both_classes(tmp_path):
    view = AuditView(Project())
    r = result(tmp_path)
    view.set_result(r)
    given, suggested = view.neighbours(r.label_issues[0])
    assert given == [f"/d/blue/n{i}.png" for i in range(3)] and suggested[0] == "/d/red/n0.png"
    assert r.asked == [(r.label_issues[0].path, "blue", 3), (r.label_issues[0].path, "red", 3)]


def test_relative_paths_in_the_config_match_the_absolute_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = Project()
    project.set("data.exclude_files", ["blue/001.png"])
    view = AuditView(project)
    absolute = os.path.join(str(tmp_path), "blue", "001.png")
    assert view.state(absolute).excluded
    view.move(absolute, "red")  # the relative entry goes; the window stores the absolute path
    assert project.cfg.data.exclude_files == () and project.cfg.data.relabel == {absolute: "red"}


def test_a_refused_change_is_not_on_the_undo_stack(tmp_path):
    project = Project()
    errors: list[str] = []
    project.config_error.connect(errors.append)
    view = AuditView(project)
    assert not view.move(str(tmp_path / "a.png"), " ")  # an empty class name: the config refuses it
    assert errors and "data.relabel" in errors[0] and view.history == [] and project.cfg.data.relabel == {}


def test_imbalance_words_come_from_the_result():
    r = Result(class_counts={"red": 30, "blue": 5},
               imbalance={"largest": "red", "smallest": "blue", "ratio": 6.0, "advice": "Turn on class weights."})
    assert imbalance_text(r) == "Turn on class weights."  # the engine's words, as they are
    r.imbalance["advice"] = ""
    assert imbalance_text(r) == "red has 6.0× the training images of blue."
    assert imbalance_text(Result(class_counts={"red": 3})) == ""


def test_another_project_forgets_the_findings_and_the_undo_stack(tmp_path):
    project, r = Project(), result(tmp_path)
    view = AuditView(project)
    view.set_result(r)
    view.exclude(r.outliers[0].path)
    view.keep(label_key(r.label_issues[0].path))
    project.new()
    assert view.result is None and view.history == [] and not view.kept
    assert view.undo() is None and project.cfg.data.exclude_files == ()
