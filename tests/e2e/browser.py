"""A real browser for end-to-end checks of pages: a headless Chromium screenshot, and how much of
it is drawn.

A page that loads but shows nothing (a blank page, an error page, images that did not load)
passes any check of the HTML text; a screenshot does not. ``drawn_fraction`` tells a drawn page
from an empty one without comparing against a reference image, which would break on every font
or layout change.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import image as mpimg

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# Flags for a headless run as root on a machine without network: no sandbox (root), no GPU, and
# none of the background traffic (updates, sync, QUIC probes) that would wait on timeouts.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    """The Chromium executable on PATH (Debian's package installs ``chromium``), or None."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(
    target: str | Path,
    out_png: Path,
    width: int = 1400,
    height: int = 2400,
    timeout_s: float = 60.0,
    script_time_ms: int = 0,
) -> Path:
    """Load ``target`` (a URL, or a local file) in headless Chromium and save a PNG of the
    ``width`` x ``height`` viewport to ``out_png``.

    ``script_time_ms`` lets a page's scripts run that long (Chromium's virtual time) before the
    picture is taken: pages that fetch their data after loading (Prometheus' graph page) are
    otherwise shot before they draw anything.
    Each call gets a fresh profile directory, so no cache or state of an earlier run leaks in.
    Raises ``RuntimeError`` with Chromium's output when no PNG comes out."""
    executable = chromium()
    if executable is None:
        raise RuntimeError("no Chromium on PATH (Debian: apt-get install chromium)")
    url = target if isinstance(target, str) and "://" in target else Path(target).resolve().as_uri()
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        result = subprocess.run(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={out_png}",
                f"--window-size={width},{height}",
                *([f"--virtual-time-budget={script_time_ms}"] if script_time_ms else []),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if not out_png.exists():
        raise RuntimeError(
            f"Chromium wrote no screenshot of {url} (exit {result.returncode}):\n"
            f"{result.stderr[-2000:]}"
        )
    return out_png


def rendered_dom(url: str, script_time_ms: int = 10_000, timeout_s: float = 60.0) -> str:
    """The page's DOM after its scripts ran for ``script_time_ms``: what a test reads to tell
    that a chart was drawn (an SVG with paths), not just its empty frame."""
    executable = chromium()
    if executable is None:
        raise RuntimeError("no Chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        result = subprocess.run(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={script_time_ms}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(f"Chromium could not render {url}:\n{result.stderr[-2000:]}")
    return result.stdout


def drawn_fraction(png: Path, tolerance: float = 0.02) -> float:
    """The share of pixels that differ from the background colour (the most common one) by more
    than ``tolerance`` in some channel: near 0 for a blank page, well above for a drawn one."""
    pixels = mpimg.imread(str(png))
    if pixels.dtype == np.uint8:
        pixels = pixels.astype(np.float32) / 255.0
    if pixels.ndim == 2:  # greyscale
        pixels = np.stack([pixels] * 3, axis=-1)
    rgb = pixels[:, :, :3].reshape(-1, 3)
    levels = np.round(rgb * 255).astype(np.int64)
    packed = (levels[:, 0] << 16) | (levels[:, 1] << 8) | levels[:, 2]
    mode = int(np.bincount(packed).argmax())
    background = np.array([(mode >> 16) & 255, (mode >> 8) & 255, mode & 255]) / 255.0
    differs = np.abs(rgb - background).max(axis=1) > tolerance
    return float(differs.mean())
