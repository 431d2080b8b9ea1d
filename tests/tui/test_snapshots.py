"""Screenshots of the main screen with candidates, the review screen and the help screen.

Candidates come from a scripted generator through the app's real streaming and recording path, so the
pictures do not depend on sampling or timing.
Regenerate the baselines with ``pytest tests/tui --snapshot-update`` after an intended change.
"""

from __future__ import annotations

from tui_helpers import ready, review_loaded, scripted_generate, settle

SIZE = (100, 30)
TITLES = [
    "Streaming Candidate Titles from Small Language Models",
    "Curating Paper Titles with a [bold]Human[/bold] in the Loop",
    "Titlecraft: Fast Title Suggestions for Abstracts",
    "A Study of Title Generation",
    "Small Models, Good Titles",
]


async def curate(pilot) -> None:
    """Generate fixed candidates, then accept one, edit one and reject one with a reason."""
    app = pilot.app
    await ready(app, pilot)
    app.generator.generate = scripted_generate(TITLES)
    await pilot.press("ctrl+g")
    await settle(app, pilot)
    await pilot.press("a", "down", "down", "e")
    await pilot.pause()
    await pilot.press("ctrl+u", *"Titlecraft: Curated Title Suggestions", "enter")
    await pilot.press("down", "r")
    await pilot.pause()
    await pilot.press(*"too generic", "enter")
    await settle(app, pilot)
    await pilot.press("up", "up", "up")
    await pilot.pause()


def test_main_screen_with_candidates(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=curate)


def test_review_screen(snap_compare, make_app):
    async def review(pilot) -> None:
        await curate(pilot)
        await pilot.press("v")
        await review_loaded(pilot.app, pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=review)


def test_help_screen(snap_compare, make_app):
    async def help_screen(pilot) -> None:
        await settle(pilot.app, pilot)
        await pilot.press("tab", "question_mark")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=help_screen)
