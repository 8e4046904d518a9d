"""`python train.py serve --ckpt_path CKPT`: the checkpoint behind HTTP on 127.0.0.1:8000.

    POST /predict   an image as multipart form field `file`, or feature values as a JSON object
                    (or a list of them); answers {"class", "probability", "probabilities"} or
                    {"prediction"}, one object per input
    GET  /health    200 once every worker has loaded the model, 503 before
    GET  /info      the task, classes, expected input, checkpoint file and sha256
    GET  /demo      a page to try the model by hand

SIGTERM and Ctrl-C stop every worker and free the port (exit 143 or 130).
Concurrent requests are run through the net together (up to --max_batch_size requests, waiting at
most --batch_timeout seconds for more). With LIT_SERVER_API_KEY set in the environment, /predict,
/info and /health need the header `X-API-Key: <that value>` (401 without it); /demo asks for it.
"""

import errno
import logging
import os
import socket
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentParser

from src.errors import UserInputError
from src.serving.demo_page import PAGE
from src.serving.readiness import announce_when_ready, scheme, url_host
from src.serving.request_limits import RequestLimits
from src.serving.shutdown import forked_children_end_with_parent, stop_leftover_workers, stopped_by_signals
from src.serving.snapshot import checkpoint_snapshot
from src.tools.predictor import ImageInputs, Predictor, load_predictor


def serve(
    ckpt_path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch_size: int = 16,
    batch_timeout: float = 0.005,
    max_body_mb: float = 10.0,
    max_image_mp: float = 50.0,
    accelerator: Literal["auto", "cpu", "cuda", "mps"] = "auto",
    devices: int | Literal["auto"] = "auto",
    workers_per_device: int = 1,
    timeout: float = 30.0,
) -> None:
    """Serve a trained checkpoint over HTTP with LitServe.

    Args:
        ckpt_path: the checkpoint file (a .ckpt of any run: it holds all the model needs).
        host: the address to listen on: 127.0.0.1 (this machine), 0.0.0.0 (other machines too) or ::.
        port: the TCP port (1024..65535).
        max_batch_size: the most requests run through the net at once; 1 turns batching off.
        batch_timeout: seconds to wait for more requests to fill a batch.
        max_body_mb: the largest request body accepted (larger ones get 413).
        max_image_mp: the most megapixels an uploaded image may have (more get 400): a small file
            can hold a huge image, and decoding one takes about 30 bytes a pixel.
        accelerator: where the model runs.
        devices: how many devices to use.
        workers_per_device: model copies per device.
        timeout: seconds a request may wait for its answer before a 504.
    """
    check_options(host, port, max_batch_size, batch_timeout, max_body_mb, max_image_mp, workers_per_device, timeout)
    if ckpt_path in ("last", "best") and not Path(ckpt_path).is_file():
        raise UserInputError(
            f"serve --ckpt_path {ckpt_path}: serve takes the checkpoint file itself (it has no --config to find a "
            "run by), e.g. --ckpt_path lightning_logs/<name>/version_N/checkpoints/last.ckpt"
        )
    accelerator, devices = serving_devices(accelerator, devices)
    load_predictor(ckpt_path)  # checked here first: a bad checkpoint ends in one line naming it, not in a worker
    check_port_free(host, port)
    with checkpoint_snapshot(Path(ckpt_path)) as (snapshot, sha256):  # what /info describes, every worker runs
        predictor = load_predictor(snapshot)
        import litserve as ls  # reads LIT_SERVER_API_KEY when imported

        from src.serving.predictor_api import PredictorAPI

        api = PredictorAPI(
            str(snapshot),
            max_batch_size=max_batch_size,
            batch_timeout=batch_timeout,
            max_pixels=int(max_image_mp * 1e6),
        )
        server = ls.LitServer(
            api,
            accelerator=accelerator,
            devices=devices,
            workers_per_device=workers_per_device,
            timeout=timeout,
            model_metadata=model_description(predictor, Path(ckpt_path), sha256),
            middlewares=[(RequestLimits, {"max_bytes": int(max_body_mb * 1024 * 1024)})],
        )
        from fastapi.responses import HTMLResponse

        server.app.add_api_route("/demo", lambda: HTMLResponse(PAGE), methods=["GET"], include_in_schema=False)
        api_key = os.environ.get("LIT_SERVER_API_KEY")
        key = " (X-API-Key required)" if api_key else ""
        print(f"Starting the server for {ckpt_path} on {url_host(host)}:{port} ...", flush=True)
        routes = "POST /predict, GET /health, GET /info, a demo page at /demo"
        url = f"{scheme()}://{url_host(host)}:{port}"
        ready = announce_when_ready(host, port, api_key, f"Serving {ckpt_path} at {url}{key}: {routes}")
        forked_children_end_with_parent()
        with stopped_by_signals(port):
            try:
                server.run(host=host, port=port, generate_client_file=False, log_level="warning")
            finally:
                ready.set()
                # LitServe's monitor thread still polls the shared state it has just shut down: its error
                # ("Monitoring worker crashed", a BrokenPipeError) says nothing about this server.
                logging.getLogger("litserve.server").setLevel(logging.CRITICAL)
                stop_leftover_workers(server)


# The addresses and ports LitServe listens on (it refuses others with a traceback).
HOSTS = ("127.0.0.1", "0.0.0.0", "::")
PORTS = range(1024, 65536)


def check_options(
    host: str,
    port: int,
    max_batch_size: int,
    batch_timeout: float,
    max_body_mb: float,
    max_image_mp: float,
    workers: int,
    timeout: float,
) -> None:
    """One line for each value the server cannot run with."""
    if host not in HOSTS:
        raise UserInputError(
            f"--host must be 127.0.0.1 (this machine only), 0.0.0.0 (every IPv4 address of it) or :: (every "
            f"address): LitServe listens on no other, got {host!r}"
        )
    if port not in PORTS:
        raise UserInputError(f"--port must be in 1024..65535 (LitServe's range; lower ports need root), got {port}")
    if max_batch_size < 1:
        raise UserInputError(f"--max_batch_size must be >= 1 (1: no batching), got {max_batch_size}")
    if batch_timeout < 0:
        raise UserInputError(f"--batch_timeout must be >= 0 seconds, got {batch_timeout}")
    if max_body_mb <= 0:
        raise UserInputError(f"--max_body_mb must be > 0, got {max_body_mb}")
    if max_image_mp <= 0:
        raise UserInputError(f"--max_image_mp must be > 0 (megapixels), got {max_image_mp}")
    if workers < 1:
        raise UserInputError(f"--workers_per_device must be >= 1, got {workers}")
    if timeout <= 0:
        raise UserInputError(f"--timeout must be > 0 seconds, got {timeout}")


def serving_devices(accelerator: str, devices: int | str) -> tuple[str, int]:
    """The accelerator and device count the workers get, as torch sees this machine.

    LitServe's own `auto` asks `nvidia-smi`, not torch, and a device it cannot use fails in a
    worker with a traceback: here an impossible choice ends in one line before anything starts.
    """
    import torch

    available = {
        "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "mps": 1 if torch.backends.mps.is_available() else 0,
        "cpu": 1,
    }
    if accelerator == "auto":
        accelerator = next(kind for kind in ("cuda", "mps", "cpu") if available[kind])
    if not available[accelerator]:
        raise UserInputError(
            f"--accelerator {accelerator}: torch finds no {accelerator.upper()} device on this machine; "
            "give --accelerator cpu, or auto (a GPU when torch finds one)"
        )
    count = available[accelerator] if devices == "auto" else devices
    if not isinstance(count, int) or count < 1:
        raise UserInputError(f"--devices must be >= 1 or auto, got {devices}")
    if count > available[accelerator]:
        fix = "give --devices auto to use all of them" if accelerator == "cuda" else "more copies: --workers_per_device"
        raise UserInputError(
            f"--devices {count}: torch finds {available[accelerator]} {accelerator} device(s) on this machine; {fix}"
        )
    return accelerator, count


def check_port_free(host: str, port: int) -> None:
    """Refuse a port that another program holds, before any worker starts."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                fix = "choose another --port, or stop what uses it"
            else:  # an address family this machine lacks (:: without IPv6)
                fix = "give --host 127.0.0.1 (this machine only) or 0.0.0.0 (every IPv4 address)"
            raise UserInputError(f"cannot listen on {host}:{port} ({error.strerror or error}): {fix}") from None


def model_description(predictor: Predictor, checkpoint: Path, sha256: str) -> dict[str, Any]:
    """What GET /info says of the model: task, classes, expected input, the checkpoint and its sha256."""
    inputs = predictor.inputs
    if isinstance(inputs, ImageInputs):
        expected: dict[str, Any] = {
            "kind": "image",
            "field": "file",
            "image_size": list(inputs.image_size),
            "channels": inputs.channels,
        }
    else:
        expected = {"kind": "features", "features": list(inputs.feature_names)}
    return {
        "task": "classification" if predictor.classes is not None else "regression",
        "classes": predictor.classes,
        "target": predictor.target_name,
        "input": expected,
        "checkpoint": str(checkpoint),
        "sha256": sha256,
    }


def main(args: list[str]) -> None:
    """Parse `train.py serve` flags (from serve's signature and docstring) and serve."""
    parser = ArgumentParser(prog="train.py serve", description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_function_arguments(serve, as_group=False)
    config = parser.parse_args(args)
    serve(**{key: value for key, value in vars(config).items() if key != "__path__"})
