"""Make the README's screenshots: docs/screenshot_main.png and docs/screenshot_file_picker.png.

    .venv/bin/python docs/make_screenshots.py        (starts its own Xvfb; mock provider)

A small demo project is created in a temporary folder; the real app runs at 1280x800 under
the ImGui Test Engine, which clicks through a mock run (plan, accept, approve) and opens the
file picker, then captures the window.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SIZE = (1280, 800)

DEMO_FILES = {
    "src/cli.py": '"""Command line."""\nimport argparse\n\n\ndef main(argv=None):\n    """Parse and run."""\n'
                  '    p = argparse.ArgumentParser()\n    p.add_argument("--verbose", action="store_true")\n'
                  '    return p.parse_args(argv)\n',
    "src/store.py": '"""Storage."""\n\n\nclass Store:\n    """Key-value store."""\n\n    def get(self, key):\n'
                    '        """Value of key."""\n        return self._data.get(key)\n',
    "src/util/text.py": "def slug(s):\n    return s.lower().replace(' ', '-')\n",
    "tests/test_cli.py": "from src.cli import main\n\n\ndef test_main():\n    assert main([])\n",
    "README.md": "# Demo\n\nA small tool.\n",
}


def main() -> int:
    os.environ.setdefault("MMA_MOCK_CHUNK_DELAY", "0.01")
    from bench.common import xvfb_display
    with xvfb_display():
        from imgui_bundle import hello_imgui
        from imgui_bundle.immapp import testing

        import gui_2
        root = Path(tempfile.mkdtemp()) / "demo"
        for rel, text in DEMO_FILES.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        app = gui_2.App(root, provider="mock")

        def wait(ctx, predicate, frames: int = 3000) -> None:
            for _ in range(frames):
                if predicate():
                    return
                ctx.yield_()
            raise RuntimeError("timed out")

        def test(ctx) -> None:
            ctx.item_click("//Project/##new_file_path")
            ctx.key_chars("src/**/*.py")
            ctx.item_click("//Project/Add file")
            ctx.item_click("//MMA Dashboard/##epic")
            ctx.key_chars("Add a --verbose flag to the CLI")
            ctx.item_click("//MMA Dashboard/Plan Epic")
            wait(ctx, lambda: app.mma.tracks)
            ctx.item_click(f"//MMA Dashboard/tracks/Accept##{app.mma.tracks[0]['id']}")
            wait(ctx, lambda: any(a.ticket_id == "T1" for a in app.mma.pending_approvals.values()))
            rid = next(a.request_id for a in app.mma.pending_approvals.values() if a.ticket_id == "T1")
            ctx.item_click(f"//Approvals/Approve##{rid}")
            wait(ctx, lambda: len(app.mma.pending_approvals) >= 2)
            ctx.yield_(30)
            testing.capture(ctx, str(REPO / "docs" / "screenshot_main.png"))
            hello_imgui.get_runner_params().docking_params.focus_dockable_window("Project")
            ctx.item_click("//Project/Browse##files")
            ctx.yield_(3)
            ctx.set_ref(ctx.window_info("//Project/##picker").window)
            ctx.item_click("##pick:README.md")
            ctx.item_open("src##dir:src")
            ctx.item_click("src##dir:src/cli.py##name:src|cli.py")
            app.ctx.inputs.preview_mode = "skeleton"
            wait(ctx, lambda: app.ctx.previews.get(("src/cli.py", "skeleton")))
            ctx.yield_(10)
            testing.capture(ctx, str(REPO / "docs" / "screenshot_file_picker.png"))
            ctx.item_click("//MMA Dashboard/Auto-approve")
            wait(ctx, lambda: app.mma.mma_status in ("completed", "blocked"))

        rp, addons = app.build_runner_params(SIZE, ini_disable=True)
        testing.run(test_function=test, runner_params=rp, add_ons_params=addons)
        app.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
