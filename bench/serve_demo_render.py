"""Does the demo page of `train.py serve` render and answer? Load it in headless Chromium and look.

    python bench/serve_demo_render.py      # needs Debian's chromium; writes bench/results/serve_demo.png

Trains circles briefly, serves the checkpoint on 127.0.0.1, opens `/demo?x1=0&x2=0` (the link
fills the form and asks the server), and checks in the rendered page that the answer shown is
the one POST /predict gives for the same point; then saves a screenshot of the page.
"""

import html
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.command_line import parse_no_options  # noqa: E402
from bench.tensorboard_render import chromium, find_chromium, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
POINT = {"x1": 0.0, "x2": 0.0}  # the centre of the circles: the inner ring's class, 1


def main() -> None:
    parse_no_options(__doc__)
    browser = find_chromium()
    if browser is None:
        sys.exit("Chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        fit = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/circles.yaml"), *quiet]
        subprocess.run([*fit, "--trainer.max_epochs", "50"], cwd=work, check=True, capture_output=True)
        ckpt = next((work / "lightning_logs/circles/version_0/checkpoints").glob("epoch=*.ckpt"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = [sys.executable, str(ROOT / "train.py"), "serve", "--ckpt_path", str(ckpt), "--port", str(port)]
        server = subprocess.Popen(serve, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("the server did not start")
                time.sleep(0.25)
            expected = httpx.post(f"{url}/predict", json=POINT).json()
            page_url = f"{url}/demo?" + "&".join(f"{key}={value}" for key, value in POINT.items())
            dom = chromium(browser, page_url, "--dump-dom", height=900)
            found = re.search(r'data-answered="([^"]*)"', dom)
            if found is None:
                sys.exit("the page shows no answer")
            shown = json.loads(html.unescape(found.group(1)))
            if shown != expected:
                sys.exit(f"the page shows {shown}, POST /predict answers {expected}")
            RESULTS.mkdir(exist_ok=True)
            screenshot = RESULTS / "serve_demo.png"
            chromium(browser, page_url, f"--screenshot={screenshot}", height=700)
            print(f"The page shows class {shown['class']} at {shown['probability']:.4f}, as POST /predict answers.")
            print(f"Screenshot: {screenshot.relative_to(ROOT)}")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
