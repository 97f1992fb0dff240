"""Render each Teams card JSON of a directory to a PNG, 460 px wide, with the ``adaptivecards`` renderer.

Microsoft's own JavaScript renderer (npm ``adaptivecards``) runs in headless Chromium: one page per
card, rendered once to measure it (``--dump-dom``) and once to photograph it at its own height. The
host config approximates Teams' light theme (Segoe UI sizes and colours, Teams' spacing). Prints each
card's height and the renderer's parse warnings, and fails if ``help`` is 1,200 px or taller or a card
has warnings (an element the renderer does not know is dropped silently otherwise).

    .venv/bin/python scripts/render_cards.py CARDS_DIR ADAPTIVECARDS_JS [--chromium chromium]
"""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 460
MAX_HELP_HEIGHT = 1200
TIMEOUT = 60

# an approximation of Teams' light host config: its font and type ramp, colours and spacing
HOST_CONFIG = {
    "fontFamily": "'Segoe UI', 'Helvetica Neue', sans-serif",
    "supportsInteractivity": True,
    "spacing": {"small": 4, "default": 8, "medium": 16, "large": 20, "extraLarge": 24, "padding": 16},
    "separator": {"lineThickness": 1, "lineColor": "#EEEEEE"},
    "fontSizes": {"small": 12, "default": 14, "medium": 14, "large": 18, "extraLarge": 24},
    "fontWeights": {"lighter": 200, "default": 400, "bolder": 600},
    "containerStyles": {
        "default": {"backgroundColor": "#FFFFFF", "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#616161"}, "accent": {"default": "#5B5FC7"},
            "good": {"default": "#237B4B"}, "warning": {"default": "#835C00"},
            "attention": {"default": "#C4314B"}}},
        "emphasis": {"backgroundColor": "#F5F5F5", "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#616161"}}},
        "good": {"backgroundColor": "#E7F2DA", "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#484644"}}},
        "warning": {"backgroundColor": "#FBF6D9", "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#484644"}}},
        "attention": {"backgroundColor": "#FCF4F6", "foregroundColors": {
            "default": {"default": "#242424", "subtle": "#484644"}}},
    },
    "actions": {"maxActions": 6, "buttonSpacing": 8, "showCard": {"actionMode": "inline", "inlineTopMargin": 16},
                "actionsOrientation": "horizontal", "actionAlignment": "left"},
    "factSet": {"title": {"weight": "bolder", "wrap": True, "maxWidth": 150}, "value": {"wrap": True},
                "spacing": 12},
}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><script src="{script}"></script>
<style>body {{ margin: 0; background: #FFFFFF; }} #card {{ width: {width}px; }}
.ac-pushButton {{ padding: 4px 12px; border: 1px solid #D1D1D1; border-radius: 4px; background: #FFFFFF;
  font: 600 14px 'Segoe UI', sans-serif; }}
.ac-pushButton.style-destructive {{ background: #C4314B; color: #FFFFFF; border-color: #C4314B; }}
.ac-pushButton.style-positive {{ background: #5B5FC7; color: #FFFFFF; border-color: #5B5FC7; }}</style>
</head><body><div id="card"></div><script>
const host = document.getElementById("card");
const warnings = [];
try {{
  const card = new AdaptiveCards.AdaptiveCard();
  card.hostConfig = new AdaptiveCards.HostConfig({host_config});
  const context = new AdaptiveCards.SerializationContext();
  card.parse({payload}, context);
  for (let i = 0; i < context.eventCount; i++) warnings.push(context.getEventAt(i).message);
  host.appendChild(card.render());
}} catch (e) {{ warnings.push("render failed: " + e); }}
host.setAttribute("data-height", Math.ceil(host.getBoundingClientRect().height));
host.setAttribute("data-warnings", JSON.stringify(warnings));
</script></body></html>
"""


def _script(obj: object) -> str:
    # inline JSON inside <script>: a "</" in a string must not end the element
    return json.dumps(obj, ensure_ascii=False).replace("</", "<\\/")


def _chromium(chromium: str, *args: str) -> str:
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             "--allow-file-access-from-files", *args], capture_output=True, text=True,
                            timeout=TIMEOUT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"chromium failed: {result.stderr[-500:]}")
    return result.stdout


def render(card_path: Path, png: Path, *, script: Path, chromium: str, work: Path) -> tuple[int, list[str]]:
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.pop("msteams", None)  # Teams-only, unknown to the renderer
    page = work / (card_path.stem + ".html")
    page.write_text(PAGE.format(script=script.as_uri(), width=WIDTH, host_config=_script(HOST_CONFIG),
                                payload=_script(card)), encoding="utf-8")
    dom = _chromium(chromium, "--dump-dom", page.as_uri())
    height = re.search(r'data-height="(\d+)"', dom)
    warned = re.search(r'data-warnings="([^"]*)"', dom)
    if height is None or warned is None:
        raise SystemExit(f"{card_path.name}: the page did not render")
    pixels = max(1, int(height.group(1)))
    _chromium(chromium, f"--window-size={WIDTH},{pixels}", f"--screenshot={png}", page.as_uri())
    return pixels, list(json.loads(html.unescape(warned.group(1))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", type=Path)
    parser.add_argument("script", type=Path, help="adaptivecards.min.js")
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for card_path in sorted(args.cards.glob("*.teams.json")):
            name = card_path.name.removesuffix(".teams.json")
            pixels, warnings = render(card_path, args.cards / f"{name}.png", script=args.script.resolve(),
                                      chromium=args.chromium, work=Path(tmp))
            print(f"{name:48} {WIDTH} x {pixels:5} px" + (f"  warnings: {warnings}" if warnings else ""))
            if warnings:
                failures.append(f"{name}: {warnings}")
            if name == "help" and pixels >= MAX_HELP_HEIGHT:
                failures.append(f"help is {pixels} px tall at {WIDTH} px (limit {MAX_HELP_HEIGHT})")
    for failure in failures:
        print("FAIL", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
