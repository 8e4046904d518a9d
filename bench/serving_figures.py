"""Serving throughput and latency: LitServe with and without batching, against a bare FastAPI handler.

    python bench/serving_figures.py        # writes bench/results/serving.{json,md}; about 4 minutes

One checkpoint of a CIFAR-10 net (AirbenchNet, widths 32/96/192, 32x32 RGB inputs), trained
for one epoch on a small synthetic image folder (its accuracy does not matter here), is served
three ways, one after the other on 127.0.0.1:

- plain: a bare FastAPI handler (uvicorn, one process) that runs the same Predictor on each
  request as it comes, one image per forward pass: no batching;
- litserve, batch 1: `train.py serve --max_batch_size 1`;
- litserve, batch 32: `train.py serve --max_batch_size 32 --batch_timeout 0.01`.

Against each, in ROUNDS rounds (the three servers in a rotated order each round, so a drift of
the machine's speed touches all three), 1, 8 and 32 concurrent clients (threads of this process, each with its own HTTP
connection) post 32x32 PNG images as multipart field `file` for REQUESTS_PER_LEVEL requests in
all; throughput is requests / wall seconds, latency each request's round trip; the table gives
each figure's median over the rounds, with the rounds' range for throughput. Server and
clients share the machine's cores, as a server and its load generator on one host do.
"""

import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.command_line import parse_no_options  # noqa: E402

RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
CLIENTS = (1, 8, 32)
REQUESTS_PER_LEVEL = 768
ROUNDS = 3
CLASSES = 10

PLAIN_SERVER = """
import io, sys
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image
sys.path.insert(0, sys.argv[3])
from src.tools.predictor import load_predictor

predictor = load_predictor(sys.argv[1])
app = FastAPI()

@app.get("/health")
def health():
    return "ok"

@app.post("/predict")
def predict(file: UploadFile = File(...)):
    with Image.open(io.BytesIO(file.file.read())) as image:
        raw = predictor.inputs.raw(image.convert("RGB"))
    return predictor.answers(predictor.run(raw))[0]

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def synthetic_tree(root: Path, per_class: int = 20) -> Path:
    """10 classes of 32x32 images, each class a colour with noise: enough to train one epoch."""
    generator = torch.Generator().manual_seed(0)
    for label in range(CLASSES):
        folder = root / "train" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        base = torch.tensor([(label * 25) % 256, (label * 70) % 256, (label * 130) % 256], dtype=torch.float32)
        for index in range(per_class):
            noise = torch.randint(-40, 40, (32, 32, 3), generator=generator).float()
            pixels = (base + noise).clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(pixels, "RGB").save(folder / f"{index:03d}.png")
    return root


def train_checkpoint(work: Path) -> Path:
    tree = synthetic_tree(work / "images")
    command = [
        sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/image_folder.yaml"),
        "--data.data_dir", str(tree), "--data.image_size", "32", "--data.cache_dir", str(work / "cache"),
        "--model.net.init_args.widths", "[32, 96, 192]", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    subprocess.run(command, cwd=work, check=True, capture_output=True)
    return work / "lightning_logs/image_folder/version_0/checkpoints/last.ckpt"


def request_images(count: int = 64) -> list[bytes]:
    generator = torch.Generator().manual_seed(1)
    images = []
    for _ in range(count):
        pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def start(command: list[str], url: str, cwd: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{command} did not become healthy")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def load(url: str, images: list[bytes], clients: int) -> dict[str, float]:
    """REQUESTS_PER_LEVEL posts from `clients` threads; throughput and latency percentiles (ms)."""
    per_client = REQUESTS_PER_LEVEL // clients

    def client(index: int) -> list[float]:
        latencies = []
        with httpx.Client(timeout=60) as session:
            for k in range(per_client):
                payload = images[(index * per_client + k) % len(images)]
                began = time.perf_counter()
                response = session.post(f"{url}/predict", files={"file": ("x.png", payload)})
                latencies.append(time.perf_counter() - began)
                response.raise_for_status()
        return latencies

    with httpx.Client(timeout=60) as warm:  # one request first: the first forward pass is slower
        warm.post(f"{url}/predict", files={"file": ("x.png", images[0])}).raise_for_status()
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = sorted(x for chunk in pool.map(client, range(clients)) for x in chunk)
    seconds = time.perf_counter() - began
    quantile = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(quantile[49] * 1000, 1),
        "p99_ms": round(quantile[98] * 1000, 1),
    }


def main() -> None:
    parse_no_options(__doc__)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        ckpt = train_checkpoint(work)
        images = request_images()
        (work / "plain_server.py").write_text(PLAIN_SERVER)
        setups = {
            "plain FastAPI, no batching": lambda port: [
                sys.executable, str(work / "plain_server.py"), str(ckpt), str(port), str(ROOT)],
            "LitServe, max_batch_size 1": lambda port: [
                sys.executable, str(ROOT / "train.py"), "serve", "--ckpt_path", str(ckpt), "--port", str(port),
                "--max_batch_size", "1", "--accelerator", "cpu"],
            "LitServe, max_batch_size 32": lambda port: [
                sys.executable, str(ROOT / "train.py"), "serve", "--ckpt_path", str(ckpt), "--port", str(port),
                "--max_batch_size", "32", "--batch_timeout", "0.01", "--accelerator", "cpu"],
        }  # fmt: skip
        rounds: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in setups}
        names = list(setups)
        for round_index in range(ROUNDS):
            for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
                port = free_port()
                url = f"http://{HOST}:{port}"
                process = start(setups[name](port), url, work)
                try:
                    rounds[name].append({str(clients): load(url, images, clients) for clients in CLIENTS})
                finally:
                    stop(process)
                print(f"round {round_index}", name, json.dumps(rounds[name][-1]), flush=True)
    results = {name: {str(c): summary([r[str(c)] for r in runs]) for c in CLIENTS} for name, runs in rounds.items()}
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    record = {
        "machine": machine,
        "requests_per_level": REQUESTS_PER_LEVEL,
        "rounds": ROUNDS,
        "results": results,
        "every_round": rounds,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "serving.md").write_text(markdown(record))
    print((RESULTS / "serving.md").read_text())


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds, and the range of the throughput."""
    figures = {key: statistics.median(run[key] for run in runs) for key in ("requests_per_s", "p50_ms", "p99_ms")}
    rates = [run["requests_per_s"] for run in runs]
    return {**figures, "requests_per_s_min": min(rates), "requests_per_s_max": max(rates)}


def markdown(record: dict) -> str:
    lines = [
        "# Serving: LitServe with and without batching, against a bare FastAPI handler (bench/serving_figures.py)",
        "",
        f"A CIFAR-10 net (AirbenchNet 32/96/192) on 32x32 PNG uploads; {record['requests_per_level']} "
        f"requests per row and round, {record['rounds']} rounds: medians, with the range of the rounds' "
        f"throughput; server and clients on one machine ({record['machine']}).",
        "",
        "| server | clients | requests/s (range) | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for name, levels in record["results"].items():
        for clients, figures in levels.items():
            rate = f"{figures['requests_per_s']} ({figures['requests_per_s_min']}-{figures['requests_per_s_max']})"
            row = f"| {name} | {clients} | {rate} | {figures['p50_ms']} | {figures['p99_ms']} |"
            lines.append(row)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
