"""timm backbones (TimmNet, the `timm` extra): by name, timm's Hub download (served on loopback here),
a local weights file, the head and preprocessing, and a trained checkpoint that needs no weights."""

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from src.errors import UserInputError
from tests.conftest import QUIET, config, run_cli, run_train_py
from tests.test_pretrained import class_tree, folder_run

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

from src.modules.nets import TimmNet  # noqa: E402
from src.tools.predictor import load_predictor  # noqa: E402

CLASSES = ["a", "b", "c"]


def saved_weights(name: str, path: Path) -> dict[str, torch.Tensor]:
    """A randomly initialised timm model's state_dict (1000 classes, like Hub weights), saved at `path`."""
    torch.manual_seed(0)
    state = timm.create_model(name, pretrained=False).state_dict()
    if path.suffix == ".safetensors":
        safetensors_torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


def test_a_timm_model_by_name_gets_a_head_for_the_task() -> None:
    net = TimmNet((3, 32, 32), 5, name="test_resnet")
    assert net.head_name == "model.fc" and net.model.fc.out_features == 5
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert net.image_size is None and net.mean is None  # random weights: the data's size and standardisation
    # A ViT needs its own input size even without weights; grayscale is repeated to 3 channels.
    vit = TimmNet((1, 28, 28), 4, name="test_vit")
    assert vit.image_size == 160 and vit(torch.randn(2, 1, 28, 28)).shape == (2, 4)
    frozen = TimmNet((3, 32, 32), 3, name="test_efficientnet", freeze_backbone=True)
    trainable = {name for name, parameter in frozen.named_parameters() if parameter.requires_grad}
    assert frozen.head_name == "model.classifier"
    assert trainable == {"model.classifier.weight", "model.classifier.bias"}
    with pytest.raises(UserInputError, match="not a timm model"):
        TimmNet((3, 32, 32), 3, name="resnet_does_not_exist")
    with pytest.raises(UserInputError, match=r"Invalid pretrained tag \(bogus\).*list_pretrained\('test_resnet\*'\)"):
        TimmNet((3, 32, 32), 3, name="test_resnet.bogus", pretrained=True)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_local_weights_file_loads_all_but_the_head_with_its_preprocessing(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"test_efficientnet{suffix}"
    saved = saved_weights("test_efficientnet", path)
    net = TimmNet((3, 32, 32), 3, name="test_efficientnet", weights_file=str(path))
    loaded = net.model.state_dict()
    for key, tensor in saved.items():
        if key.startswith("classifier."):
            assert loaded[key].shape[0] == 3 and tensor.shape[0] == 1000
        else:
            assert torch.equal(loaded[key], tensor), key
    # the weights' own input size and standardisation (timm's resolve_model_data_config), applied in the net
    assert net.image_size == 160 and net.mean == pytest.approx([0.485, 0.456, 0.406])
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("spelled", ["None", "null", " NONE "])
def test_no_weights_file_spelled_as_text_rebuilds_with_the_same_preprocessing(spelled: str) -> None:
    """`--model.net.init_args.weights_file null` reaches a nested net as the text 'None': predict and
    export must rebuild it as the net that trained (no weights, the data's own preprocessing)."""
    args = {"name": "test_resnet", "pretrained": False, "weights_file": spelled}
    net = TimmNet((3, 32, 32), 3, **args)
    rebuilt = TimmNet.offline_init_args(args)
    assert rebuilt == TimmNet.offline_init_args({**args, "weights_file": None})
    assert rebuilt["mean"] is None and net.mean is None  # the data's standardisation, not ImageNet's


def test_a_missing_or_foreign_weights_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no such file"):
        TimmNet((3, 32, 32), 3, name="test_resnet", weights_file=str(tmp_path / "absent.pth"))
    other = tmp_path / "vit.pth"
    saved_weights("test_vit", other)
    with pytest.raises(UserInputError, match="does not load into timm's test_resnet") as error:
        TimmNet((3, 32, 32), 3, name="test_resnet", weights_file=str(other))
    assert "\n" not in str(error.value)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, dict[str, torch.Tensor], list[str]]]:
    """A loopback stand-in for the Hugging Face Hub serving test_resnet's weights as model.safetensors:
    (HF_ENDPOINT, the served state_dict, the paths asked for)."""
    weights = tmp_path / "model.safetensors"
    state = saved_weights("test_resnet", weights)
    body = weights.read_bytes()
    asked: list[str] = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def answer(self) -> bool:
            asked.append(self.path)
            found = self.path.endswith("/resolve/main/model.safetensors")
            self.send_response(200 if found else 404)
            if found:
                self.send_header("X-Repo-Commit", "0" * 40)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            return found

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self.answer()

        def do_GET(self) -> None:  # noqa: N802
            if self.answer():
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", state, asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_pretrained_downloads_from_the_hub_and_the_checkpoint_then_needs_no_network(
    hub: tuple[str, dict[str, torch.Tensor], list[str]], tmp_path: Path
) -> None:
    endpoint, served, asked = hub
    tree = class_tree(tmp_path / "tree", CLASSES, per_class=6)
    hub_env = {"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0"}
    args = [
        *folder_run("finetune_timm", tree, tmp_path, batch_size=6),
        "--model.net.init_args.name",
        "test_resnet",
        "--model.net.init_args.image_size",
        "data",
        "--model.net.init_args.freeze_backbone",
        "true",
        "--trainer.callbacks",
        "[]",
        "--trainer.max_epochs",
        "1",
        *QUIET,
    ]
    fit = run_train_py("fit", *args, cwd=tmp_path, env=hub_env)
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert "/timm/test_resnet.r160_in1k/resolve/main/model.safetensors" in asked
    ckpt = next((tmp_path / "lightning_logs").rglob("last.ckpt"))
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert torch.equal(state["net.model.layer2.0.conv2.weight"], served["layer2.0.conv2.weight"])  # frozen backbone
    # Offline now (the Hub unreachable): predicting from the checkpoint alone fetches nothing.
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    requests = len(asked)
    out = tmp_path / "predictions.csv"
    photos = tree / "train" / "a"
    predict = run_train_py(
        "predict", "--ckpt_path", str(ckpt), "--input", str(photos), "--output", str(out), cwd=tmp_path, env=offline
    )
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert len(asked) == requests and len(out.read_text().splitlines()) == 1 + len(list(photos.iterdir()))
    # Without weights cached, the download's failure is one line naming the local-file alternative.
    failed = run_train_py("fit", *args, cwd=tmp_path, env=offline)
    assert failed.returncode == 2
    line = failed.stderr.strip().splitlines()[-1]
    assert "could not download timm's weights for test_resnet" in line and "--model.net.init_args.weights_file" in line


def test_a_timm_net_learns_and_ships_from_its_checkpoint_alone(in_tmp: Path, tmp_path: Path) -> None:
    tree = class_tree(tmp_path / "tree", CLASSES, per_class=12)
    weights = tmp_path / "test_resnet.safetensors"
    saved_weights("test_resnet", weights)
    args = [
        *folder_run("finetune_timm", tree, tmp_path, batch_size=8),
        "--model.net.init_args.name",
        "test_resnet",
        "--model.net.init_args.weights_file",
        str(weights),
        "--model.net.init_args.image_size",
        "32",
        "--trainer.callbacks",
        "[]",  # the whole net trains from the first epoch
        "--model.optimizer.lr",
        "0.003",
        "--trainer.max_epochs",
        "6",
        "--trainer.check_val_every_n_epoch",
        "1",
        *QUIET,
    ]
    assert run_cli("fit", *args) == 0
    run = in_tmp / "lightning_logs" / "finetune_timm" / "version_0"
    ckpt = next((run / "checkpoints").glob("last.ckpt"))
    states = torch.load(ckpt, weights_only=False)["callbacks"].values()
    best = max(float(state["best_model_score"]) for state in states if "best_model_score" in state)
    assert best >= 0.85  # three colour classes: chance is 0.33
    weights.unlink()  # the checkpoint alone: no weights file, no data
    predictor = load_predictor(ckpt)
    images = sorted((tree / "train" / "b").iterdir())
    answers = predictor.predict(images)
    assert sum(answer["class"] == "b" for answer in answers) >= 0.8 * len(images)
    out = in_tmp / "shipped"
    formats = ["--formats", "[pt2, onnx]", "--output_dir", str(out)]
    assert run_cli("export", "--ckpt_path", str(ckpt), *formats, *QUIET) == 0
    record = json.loads((out / "model.json").read_text())
    assert record["net"]["init_args"]["weights_file"] is None and record["net"]["init_args"]["image_size"] == 32
    assert set(record["files"]) >= {"pt2", "onnx"}


def test_the_timm_config_names_a_timm_net() -> None:
    text = Path(config("finetune_timm")).read_text()
    assert "src.modules.nets.TimmNet" in text and "pretrained: true" in text
