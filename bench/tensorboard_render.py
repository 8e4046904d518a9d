"""Does TensorBoard really show the runs? Render it in headless Chromium and look.

    python bench/tensorboard_render.py          # needs Debian's chromium (apt-get install chromium)

Trains circles and the wave briefly, serves their logs with TensorBoard on 127.0.0.1,
loads the Time Series page in headless Chromium, and checks in the rendered page that the
curves (scalar cards with line charts) and the figures (image cards whose pictures the
server returns as PNGs of the logged size) are there. Saves screenshots to bench/results/.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.command_line import parse_no_options  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def tensorboard(logdir: Path, timeout: float = 60) -> Iterator[str]:
    """Serve `logdir` on a free loopback port; yields its URL once the server answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--reload_interval",
        "0",
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/data/runs", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"TensorBoard did not start on {url}") from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def chromium(browser: str, url: str, *options: str, height: int = 3000, timeout: float = 120) -> str:
    """Load `url` headless (JavaScript run for up to 25 s of virtual time); returns stdout."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size=1400,{height}",
            "--virtual-time-budget=25000",
            *options,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-500:]}")
    return done.stdout


@dataclass
class RenderedPage:
    """What the rendered Time Series page shows: for each scalar card, the last (step, value)
    in its data table; the image cards; the sizes of the pictures the page loaded."""

    scalar_cards: dict[str, tuple[int, float]] = field(default_factory=dict)
    line_charts: int = 0
    image_cards: set[str] = field(default_factory=set)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)


def read_page(url: str, dom: str) -> RenderedPage:
    """Parse the page Chromium rendered; fetch each picture it shows from the server."""
    page = RenderedPage(line_charts=dom.count("<line-chart"))
    starts = [(match.start(), match.group(1)) for match in re.finditer(r"<(scalar-card|image-card) ", dom)]
    ends = [start for start, _ in starts[1:]] + [len(dom)]
    for (start, kind), end in zip(starts, ends[: len(starts)], strict=True):  # none on a page still loading
        card = dom[start:end]
        title = re.search(r'<tb-truncated-path[^>]*title="([^"]+)"', card)
        if title is None:
            continue
        if kind == "image-card":
            page.image_cards.add(title.group(1))
            continue
        # Data table row: run, smoothed, value, step, relative time.
        cells = [c.strip() for c in re.findall(r"<tb-data-table-content-cell[^>]*>(?:\s*<[^>]+>)*\s*([^<]+)<", card)]
        if len(cells) >= 4:
            page.scalar_cards[title.group(1)] = (int(cells[3]), float(cells[2]))
    for source in re.findall(r'<img[^>]*src="(data/plugin/timeseries/imageData\?[^"]+)"', dom):
        address = f"{url}/{source.replace('&amp;', '&')}"
        with urllib.request.urlopen(address, timeout=10) as reply, Image.open(reply) as image:
            page.image_sizes.append(image.size)
    return page


def render(
    browser: str, logdir: Path, tag_filter: str, expected: set[str], screenshot: Path | None = None, tries: int = 3
) -> RenderedPage:
    """Serve `logdir`, show the tags matching `tag_filter` (a regex) and read the page back,
    loading it again (up to `tries` times) until every `expected` card has rendered."""
    with tensorboard(logdir) as url:
        page_url = f"{url}/?forceSVG=true&tagFilter={urllib.parse.quote(tag_filter)}"
        for _ in range(tries):
            page = read_page(url, chromium(browser, page_url, "--dump-dom"))
            if expected <= set(page.scalar_cards) | page.image_cards and len(page.image_sizes) >= len(page.image_cards):
                break
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            chromium(browser, page_url, f"--screenshot={screenshot}", height=1100)
    return page


def train(config: str, logs: Path, *flags: str) -> None:
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "fit",
        "--config",
        str(ROOT / "configs" / f"{config}.yaml"),
        "--trainer.logger.init_args.save_dir",
        str(logs),
        *flags,
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=600, cwd=logs.parent)


def main() -> None:
    parse_no_options(__doc__)
    browser = find_chromium()
    if browser is None:
        sys.exit("Chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as scratch:
        logs = Path(scratch) / "lightning_logs"
        train("circles", logs)
        train("regression", logs)
        checks = {
            "circles": (
                "loss$|val/acc$|decision_boundary",
                {"train/loss", "val/loss", "val/acc", "val/decision_boundary"},
            ),
            "regression": ("val/mse$|/fit|/residuals", {"val/mse", "val/fit", "val/residuals", "test/fit"}),
        }
        for name, (tag_filter, expected) in checks.items():
            page = render(browser, logs / name / "version_0", tag_filter, expected, RESULTS / f"tensorboard_{name}.png")
            print(
                f"{name}: scalar cards (last step, value) {page.scalar_cards}, {page.line_charts} line charts; "
                f"image cards {sorted(page.image_cards)}, picture sizes {sorted(set(page.image_sizes))}"
            )
            missing = expected - set(page.scalar_cards) - page.image_cards
            if missing:
                sys.exit(f"{name}: the page does not show {sorted(missing)}")
    print(f"Screenshots: {RESULTS}/tensorboard_*.png")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
