"""`python train.py optimize --data_dir my_photos/ --output_dir data/chunks`: LitData chunks of an image folder.

Train on them with `--data src.datamodules.ChunkedImageDataModule --data.data_dir data/chunks`
(or `configs/image_chunks.yaml`); `--output_dir s3://bucket/prefix` writes them to object storage,
with credentials from the usual AWS environment variables.
"""

from jsonargparse import ArgumentParser

from src.datamodules.chunk_writer import optimize


def main(args: list[str]) -> None:
    """Parse `train.py optimize` flags (from optimize's signature and docstring), write, say where."""
    parser = ArgumentParser(prog="train.py optimize", description=__doc__.splitlines()[0], exit_on_error=False)
    parser.add_function_arguments(optimize, as_group=False)
    config = parser.parse_args(args)
    record = optimize(**{key: value for key, value in vars(config).items() if key != "__path__"})
    counts = ", ".join(f"{split} {count}" for split, count in record["splits"].items())
    print(
        f"Wrote {sum(record['splits'].values())} images of {len(record['class_names'])} classes as LitData chunks "
        f"to {config.output_dir} ({counts}). Train on them with: python train.py fit --config "
        f"configs/image_chunks.yaml --data.data_dir {config.output_dir}"
    )
