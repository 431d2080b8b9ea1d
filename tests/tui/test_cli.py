"""A bare ``titlecraft`` (and ``titlecraft --db ...``) opens the app; other subcommands are untouched."""

from __future__ import annotations

import pytest

from tui import cli


def test_bare_titlecraft_runs_the_app(monkeypatch):
    started = []
    monkeypatch.setattr("tui.app.TitlecraftApp.run", lambda app: started.append(app))
    assert cli.main([]) == 0
    (app,) = started
    assert (app.model_spec, app.db_path, app.device) == ("embedded", None, "auto")


def test_options_without_a_subcommand_go_to_the_app(monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr("tui.app.TitlecraftApp.run", lambda app: started.append(app))
    assert cli.main(["--db", str(tmp_path / "x.db"), "--model", "embedded-base", "--device", "cpu"]) == 0
    (app,) = started
    assert (app.model_spec, app.db_path, app.device) == ("embedded-base", str(tmp_path / "x.db"), "cpu")


def test_help_still_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "tui" in capsys.readouterr().out


def test_an_empty_store_path_is_refused_before_the_app_opens(monkeypatch, capsys):
    """`--db ""` is Path("."): the app would have tried to keep its store in the current folder."""
    started = []
    monkeypatch.setattr("tui.app.TitlecraftApp.run", lambda app: started.append(app))
    assert cli.main(["--db", ""]) == 2
    assert capsys.readouterr().err == "error: --db is empty: give a path to write to\n"
    assert not started
