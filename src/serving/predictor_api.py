"""The LitServe API around a Predictor: one request is one input (or a list of feature rows), and
concurrent requests are run through the net together, up to `max_batch_size` requests at a time.

LitServe decodes a whole batch inside one `try`, so a request that raised in `decode_request` would
fail every request batched with it. Here a bad request is decoded into a `Refused` instead, passed
over by `predict`, and answered alone as a 400 by `encode_response`."""

import io
from dataclasses import dataclass
from typing import Any

import litserve as ls
import torch
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError

from src.datamodules.image_decoding import FORMAT_NAMES, PIL_FORMATS
from src.errors import UserInputError, first_line
from src.serving.shutdown import ignore_interrupts_in_worker
from src.tools.predictor import ImageInputs, Predictor, load_predictor


@dataclass(frozen=True)
class Refused:
    """A request that cannot be answered, with one sentence the client can act on."""

    detail: str


@dataclass(frozen=True)
class Decoded:
    """A request's raw inputs (N x ...) and whether it was a single input (answered as an object, not a list)."""

    raw: torch.Tensor
    single: bool


class PredictorAPI(ls.LitAPI):
    """POST /predict: an image as multipart form field `file`, or feature values as a JSON object (one
    row) or a list of objects; answers what `Predictor.answers` says, one object per input."""

    def __init__(
        self, ckpt_path: str, max_batch_size: int = 1, batch_timeout: float = 0.0, max_pixels: int = 50_000_000
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.ckpt_path = ckpt_path
        self.max_pixels = max_pixels
        self.predictor: Predictor | None = None

    def setup(self, device: str) -> None:
        ignore_interrupts_in_worker()  # runs in the inference worker: Ctrl-C is the main process's to handle
        self.predictor = load_predictor(self.ckpt_path, device=device)

    def decode_request(self, request):  # noqa: ANN001 - unannotated: LitServe then hands over the parsed body
        """Every check of one request: its raw inputs, or why it is refused. `request` is the parsed
        body: a form (images) or the JSON value (feature rows)."""
        try:
            if isinstance(self.predictor.inputs, ImageInputs):  # type: ignore[union-attr]
                return Decoded(self._image(request), single=True)
            return self._rows(request)
        except UserInputError as refusal:
            return Refused(str(refusal))

    def _rows(self, request: Any) -> Decoded:
        expected = f"the model needs {self.predictor.inputs.feature_names}"  # type: ignore[union-attr]
        if hasattr(request, "getlist"):  # a form, where this model takes JSON
            raise UserInputError(f"this model takes feature values as JSON: {expected}")
        rows = [request] if isinstance(request, dict) else request
        if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
            raise UserInputError(
                f"the body must be a JSON object of feature values, or a non-empty list of them: {expected}"
            )
        return Decoded(self.predictor.inputs.raw(rows), single=isinstance(request, dict))  # type: ignore[union-attr]

    def _image(self, request: Any) -> torch.Tensor:
        upload = request.get("file") if hasattr(request, "getlist") else None
        if upload is None or not hasattr(upload, "file"):
            raise UserInputError("this model takes an image: send it as multipart form field 'file'")
        if (count := len(request.getlist("file"))) > 1:  # answering the first alone would drop the others silently
            raise UserInputError(f"send one image per request: this one has {count} 'file' fields")
        data = upload.file.read()
        name = getattr(upload, "filename", None) or "the upload"
        if not data:
            raise UserInputError(f"{name} is empty")
        Image.init()  # loads every format plugin once: open(formats=...) fails on one not yet loaded
        try:
            with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as image:  # the header alone, so far
                if image.width * image.height > self.max_pixels:
                    raise UserInputError(
                        f"{name} is {image.width}x{image.height} pixels, more than this server decodes "
                        f"({self.max_pixels / 1e6:g} megapixels, serve --max_image_mp): send it smaller"
                    )
                image.load()
                return self.predictor.inputs.raw(image.copy())  # type: ignore[union-attr]
        except UnidentifiedImageError:
            raise UserInputError(f"{name} is not an image that can be read (not {FORMAT_NAMES})") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise UserInputError(f"{name} is not an image that can be read ({first_line(error)})") from None

    def batch(self, inputs: list[Decoded | Refused]) -> list[Decoded | Refused]:
        return inputs  # requests hold different numbers of rows: concatenated in predict

    def predict(self, requests: Any) -> Any:
        """Runs the inputs of every answerable request of the batch through the net at once, then hands
        each request its own answers (a Refused passes through)."""
        batched = isinstance(requests, list)
        requests = requests if batched else [requests]
        good = [request for request in requests if isinstance(request, Decoded)]
        answers: list[dict[str, Any]] = []
        finite = torch.ones(0, dtype=torch.bool)
        if good:
            outputs = self.predictor.run(torch.cat([request.raw for request in good]))  # type: ignore[union-attr]
            answers = self.predictor.answers(outputs)  # type: ignore[union-attr]
            finite = torch.isfinite(outputs).all(dim=1)
        results, start = [], 0
        for request in requests:
            if isinstance(request, Refused):
                results.append(request)
                continue
            mine, start = slice(start, start + len(request.raw)), start + len(request.raw)
            if not finite[mine].all():
                results.append(
                    Refused("the model's output is not finite for these values: are they in the data's range?")
                )
            else:
                results.append(answers[mine][0] if request.single else answers[mine])
        return results if batched else results[0]

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def encode_response(self, output):  # noqa: ANN001, ANN201 - unannotated: LitServe then answers plain JSON
        if isinstance(output, Refused):
            return JSONResponse({"detail": output.detail}, status_code=400)
        return output
