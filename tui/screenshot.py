"""Write the README's screenshot: ``python -m tui.screenshot [--model SPEC] [--out docs/screenshot.svg]``.

It runs the real app headless on a temporary store, pastes a sample abstract, generates with a fixed
seed (twice: the first run only warms the model up, so the status line shows steady-state speed),
accepts the top candidate, rejects one with a reason, and saves the main screen as SVG.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from tui.app import TitlecraftApp

SIZE = (110, 32)
SAMPLE_ABSTRACT = (
    "The dominant sequence transduction models are based on complex recurrent or convolutional neural "
    "networks that include an encoder and a decoder. The best performing models also connect the encoder "
    "and decoder through an attention mechanism. We propose a new simple network architecture, the "
    "Transformer, based solely on attention mechanisms, dispensing with recurrence and convolutions "
    "entirely. Experiments on two machine translation tasks show these models to be superior in quality "
    "while being more parallelizable and requiring significantly less time to train."
)


async def take(model: str, out: Path, seed: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        app = TitlecraftApp(model_spec=model, db_path=Path(folder) / "titlecraft.db", device="cpu")
        async with app.run_test(size=SIZE) as pilot:
            while app.generator is None and app.model_error is None:
                await pilot.pause(0.2)
            if app.model_error:
                raise SystemExit(f"the model did not load: {app.model_error}")
            app.sampling["seed"] = seed
            app.editor.text_area.insert(SAMPLE_ABSTRACT)
            for _ in range(2):
                await pilot.press("ctrl+g")
                while app.running is not None or app.pending:
                    await pilot.pause(0.2)
            await pilot.press("a", "down", "down", "r")
            await pilot.pause()
            await pilot.press(*"too generic", "enter")
            while app.pending:
                await pilot.pause(0.2)
            await pilot.press("up", "up")
            await pilot.pause(0.5)
            out.parent.mkdir(parents=True, exist_ok=True)
            app.save_screenshot(out.name, path=str(out.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.svg"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(take(args.model, args.out, args.seed))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
