"""Where LitData chunks live: a local folder or object storage (`s3://bucket/prefix`), and the
`dataset.json` this template writes beside them. S3 credentials come from the usual AWS
environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...)."""

import json
from pathlib import Path
from typing import Any

from src.datamodules.image_decoding import SPLITS
from src.errors import UserInputError, first_line

DATASET_RECORD = "dataset.json"
CREDENTIALS = (
    "check the bucket and the AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for "
    "S3-compatible storage) environment variables"
)


def import_litdata() -> Any:
    """litdata, or one line saying how to install it."""
    try:
        import litdata
    except ImportError:
        raise UserInputError("LitData chunks need litdata, an optional extra: pip install -e '.[litdata]'") from None
    return litdata


def is_remote(location: str) -> bool:
    """Whether `location` is an object-storage URL (`s3://bucket/prefix`) rather than a folder."""
    return "://" in location


def join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"


def bucket_and_key(url: str) -> tuple[str, str]:
    """("bucket", "prefix/name") of "s3://bucket/prefix/name"."""
    bucket, _, key = url.split("://", 1)[1].partition("/")
    return bucket, key


def s3_client() -> Any:
    """boto3's S3 client (installed with litdata), configured from the environment."""
    import_litdata()
    import boto3

    return boto3.client("s3")


def storage_error(where: str, error: Exception) -> UserInputError:
    """The one line for an S3 call that failed: a missing bucket, no credentials, no connection."""
    return UserInputError(f"cannot read {where} ({first_line(error)}); {CREDENTIALS}")


def read_record(location: str) -> dict[str, Any]:
    """`dataset.json` of the chunks at `location`; a missing one, an unreachable bucket or
    missing credentials end in one line."""
    where = join(location, DATASET_RECORD)
    if not is_remote(location):
        path = Path(where)
        if not path.is_file():
            raise UserInputError(
                f"{location} holds no LitData chunks written by this template (no {DATASET_RECORD}); "
                "write them with `python train.py optimize --data_dir my_photos/ --output_dir DIR`"
            )
        return json.loads(path.read_text())
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = bucket_and_key(where)
    try:
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as error:
        raise storage_error(where, error) from None
    return json.loads(body)


def occupied(location: str, names: set[str], fix: str, chunks_only: bool = False) -> UserInputError:
    """The one line for an `--output_dir` that already holds `names` (its top-level entries): finished
    chunks, the leftovers of an `optimize` that failed part way (split folders that hold nothing but
    LitData's files: `chunks_only`), or something else of the user's (an image folder, say)."""
    if DATASET_RECORD in names:
        found = (
            f"already holds LitData chunks written by `optimize` ({DATASET_RECORD}): train on them with "
            f"--data.data_dir {location}, or"
        )
    elif chunks_only and names <= set(SPLITS):
        found = (
            f"holds the leftovers of an `optimize` that did not finish (split folders, no {DATASET_RECORD}): "
            "delete them and run it again, or"
        )
    else:
        found = "is not empty (LitData would delete what it overwrites):"
    return UserInputError(f"--output_dir {location} {found} {fix}")


def holds_only_chunks(folder: Path) -> bool:
    """Whether every file under `folder` is one LitData writes (index.json, chunk-*.bin and their
    partial forms), in split folders: the leftovers of `optimize`, never a user's data."""
    found = False
    for path in folder.rglob("*"):  # stops at the first other file: an image folder is not walked whole
        if path.is_file():
            if path.parent.parent != folder or not (path.name.endswith(".json") or path.name.startswith("chunk-")):
                return False
            found = True
    return found


def check_empty(location: str) -> None:
    """Refuse to write chunks where anything already is: LitData would delete what it overwrites."""
    if not is_remote(location):
        path = Path(location)
        if path.exists() and not path.is_dir():
            raise UserInputError(f"--output_dir {location} is a file: give a new or empty folder")
        if path.exists() and any(path.iterdir()):
            raise occupied(
                location,
                {entry.name for entry in path.iterdir()},
                "give a new or empty folder",
                holds_only_chunks(path),
            )
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = bucket_and_key(location)
    folder = prefix.strip("/") + "/" if prefix.strip("/") else ""  # "": the bucket's root, so the whole bucket
    try:
        found = s3_client().list_objects_v2(Bucket=bucket, Prefix=folder, Delimiter="/", MaxKeys=1000)
    except (BotoCoreError, ClientError) as error:
        raise storage_error(location, error) from None
    if found.get("KeyCount", 0):
        keys = [item["Key"] for item in found.get("Contents", [])]
        keys += [item["Prefix"].rstrip("/") for item in found.get("CommonPrefixes", [])]
        raise occupied(location, {key[len(folder) :] for key in keys}, "give a new, empty prefix")  # never "delete"


def write_record(location: str, record: dict[str, Any]) -> None:
    """Write `dataset.json` beside the chunks at `location` (a folder or `s3://`)."""
    text = json.dumps(record, indent=2)
    if not is_remote(location):
        Path(join(location, DATASET_RECORD)).write_text(text)
        return
    bucket, key = bucket_and_key(join(location, DATASET_RECORD))
    s3_client().put_object(Bucket=bucket, Key=key, Body=text.encode())
