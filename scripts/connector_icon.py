"""Draw the custom connector's icon (``connector/icon.png``) with Pillow.

Power Platform shows a connector's icon on its brand colour: a square PNG, 100 to 230 pixels
a side, under 1 MB, on a solid background of ``iconBrandColor`` (``connector/apiProperties.json``),
which is read from there so the two cannot drift. The drawing: a white microphone over sound
waves. ``python scripts/connector_icon.py`` rewrites the file; tests/unit/test_connector.py
checks the committed one.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageColor, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SIZE = 230
SCALE = 4  # drawn large, then downsampled: smooth edges on a solid background


def brand_colour() -> str:
    properties = json.loads((ROOT / "connector" / "apiProperties.json").read_text(encoding="utf-8"))
    return str(properties["properties"]["iconBrandColor"])


def draw(path: Path = ROOT / "connector" / "icon.png") -> None:
    big = SIZE * SCALE
    background = ImageColor.getrgb(brand_colour())
    image = Image.new("RGB", (big, big), background)
    pen = ImageDraw.Draw(image)
    white = (255, 255, 255)
    unit = big / 23
    # The microphone's head, its stand and its base.
    pen.rounded_rectangle((9 * unit, 3 * unit, 14 * unit, 13 * unit), radius=2.5 * unit, fill=white)
    pen.arc((7 * unit, 6 * unit, 16 * unit, 15.5 * unit), 0, 180, fill=white, width=int(unit))
    pen.line((11.5 * unit, 15.5 * unit, 11.5 * unit, 18.5 * unit), fill=white, width=int(unit))
    pen.line((8.5 * unit, 19 * unit, 14.5 * unit, 19 * unit), fill=white, width=int(unit))
    # Sound waves either side.
    for offset, reach in ((4.5, 3.0), (7.0, 5.0)):
        for side in (-1, 1):
            x = 11.5 * unit + side * offset * unit
            pen.line(
                (x, (8 - reach / 2) * unit, x, (8 + reach / 2) * unit), fill=white, width=int(unit * 0.9)
            )
    image.resize((SIZE, SIZE), Image.Resampling.LANCZOS).save(path, format="PNG", optimize=True)


if __name__ == "__main__":
    draw()
