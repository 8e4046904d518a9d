"""The LitServe API around a Predictor: one request is one input (or a list of feature rows), and
concurrent requests are run through the net together, up to `max_batch_size` inputs."""

import io
from typing import Any

import litserve as ls
import torch
from fastapi import HTTPException
from PIL import Image, UnidentifiedImageError

from src.errors import UserInputError
from src.tools.predictor import ImageInputs, Predictor, load_predictor


def bad_request(detail: str) -> HTTPException:
    """A 400 whose `detail` is one sentence a client can act on (LitServe passes HTTPExceptions on as they are)."""
    return HTTPException(status_code=400, detail=detail)


class PredictorAPI(ls.LitAPI):
    """POST /predict: an image as multipart form field `file`, or feature values as a JSON object (one
    row) or a list of objects; answers what `Predictor.answers` says, one object per input."""

    def __init__(self, ckpt_path: str, max_batch_size: int = 1, batch_timeout: float = 0.0) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.ckpt_path = ckpt_path
        self.predictor: Predictor | None = None

    def setup(self, device: str) -> None:
        self.predictor = load_predictor(self.ckpt_path, device=device)

    @property
    def takes_images(self) -> bool:
        return isinstance(self.predictor.inputs, ImageInputs)  # type: ignore[union-attr]

    def decode_request(self, request):  # noqa: ANN001 - unannotated: LitServe then hands over the parsed body
        """The raw inputs of one request (N x ...), and whether it was a single input (answered as an
        object, not a list). Every check of the request happens here, so a bad one fails alone.
        `request` is the parsed body: a form (images) or the JSON value (feature rows)."""
        if self.takes_images:
            return self._image(request), True
        if hasattr(request, "getlist"):  # a form, where this model takes JSON
            raise bad_request(f"this model takes feature values as JSON: {self._expected()}")
        single = isinstance(request, dict)
        rows = [request] if single else request
        if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
            raise bad_request(
                f"the body must be a JSON object of feature values, or a non-empty list of them: {self._expected()}"
            )
        try:
            return self.predictor.inputs.raw(rows), single  # type: ignore[union-attr]
        except UserInputError as error:
            raise bad_request(str(error)) from None
        except (TypeError, ValueError) as error:
            raise bad_request(f"feature values must be numbers ({error})") from None

    def _image(self, request: Any) -> torch.Tensor:
        upload = request.get("file") if hasattr(request, "get") and hasattr(request, "getlist") else None
        if upload is None or not hasattr(upload, "file"):
            raise bad_request("this model takes an image: send it as multipart form field 'file'")
        data = upload.file.read()
        if not data:
            raise bad_request("the uploaded file 'file' is empty")
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return self.predictor.inputs.raw(image.copy())  # type: ignore[union-attr]
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, UserInputError) as error:
            name = getattr(upload, "filename", None) or "the upload"
            reason = (
                "not a format PIL reads" if isinstance(error, UnidentifiedImageError) else str(error).splitlines()[0]
            )
            raise bad_request(f"{name} is not an image that can be read ({reason})") from None

    def _expected(self) -> str:
        return f"the model needs {self.predictor.inputs.feature_names}"  # type: ignore[union-attr]

    def batch(self, inputs: list[tuple[torch.Tensor, bool]]) -> list[tuple[torch.Tensor, bool]]:
        return inputs  # requests hold different numbers of rows: concatenated in predict

    def predict(self, requests: Any) -> Any:
        """Runs every input of the batch through the net at once, then hands each request its own rows."""
        batched = isinstance(requests, list)
        requests = requests if batched else [requests]
        sizes = [len(raw) for raw, _ in requests]
        outputs = self.predictor.run(torch.cat([raw for raw, _ in requests]))  # type: ignore[union-attr]
        answers = self.predictor.answers(outputs)  # type: ignore[union-attr]
        per_request, start = [], 0
        for (_, single), size in zip(requests, sizes, strict=True):
            mine = answers[start : start + size]
            per_request.append(mine[0] if single else mine)
            start += size
        return per_request if batched else per_request[0]

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def encode_response(self, output):  # noqa: ANN001, ANN201 - unannotated: LitServe then answers plain JSON
        return output
