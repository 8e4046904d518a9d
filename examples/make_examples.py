"""Write the tutorial's own data from scikit-learn's real data sets, so README's commands run as written.

    python examples/make_examples.py            # writes data/examples/ (ignored by git)

- `cancer.csv`: the breast cancer table (569 rows): an `id` column, 30 numeric features and
  `diagnosis`, `malignant` or `benign` (the CSV walk-through).
- `digits/`: the 1,797 8x8 handwritten digits as PNG files, `train/<name>/` and `test/<name>/`
  (80/20, stratified), one folder per digit `zero` ... `nine` (the image-folder walk-through).
- `new_digits/`: six digits of the test split as unlabelled images to predict (their names in
  `labels.txt`).
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write_cancer_csv(path: Path) -> int:
    """The breast cancer table as a CSV with an id column and text labels; returns the row count."""
    data = load_breast_cancer()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *(name.replace(" ", "_") for name in data.feature_names), "diagnosis"])
        for index, (features, target) in enumerate(zip(data.data, data.target, strict=True)):
            writer.writerow([f"p{index}", *(f"{value:.6g}" for value in features), data.target_names[target]])
    return len(data.target)


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """The indices of the training and test digits: 80/20, stratified, seeded."""
    digits = load_digits()
    return train_test_split(np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=0)


def write_digits(root: Path) -> dict[str, int]:
    """The digits as grayscale PNG files under root/{train,test}/<name>/; returns the split sizes."""
    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)  # stored as 0-16
    train, test = digits_split()
    for split, chosen in (("train", train), ("test", test)):
        for index in chosen:
            folder = root / split / DIGIT_NAMES[digits.target[index]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index], "L").save(folder / f"{index:04d}.png")
    return {"train": len(train), "test": len(test)}


def write_new_digits(root: Path, count: int = 6) -> list[Path]:
    """The first `count` test digits as unlabelled PNG files (`digit_<i>.png`), for `train.py predict
    --input`; their true names are in `labels.txt` beside them, one per line."""
    digits = load_digits()
    _, test = digits_split()
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, index in enumerate(test[:count]):
        path = root / f"digit_{number}.png"
        Image.fromarray(np.round(digits.images[index] * 255 / 16).astype(np.uint8), "L").save(path)
        paths.append(path)
    labels = [f"{path.name} {DIGIT_NAMES[digits.target[index]]}" for path, index in zip(paths, test, strict=False)]
    (root / "labels.txt").write_text("\n".join(labels) + "\n")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("data/examples"), help="folder to write into")
    folder = parser.parse_args().output
    rows = write_cancer_csv(folder / "cancer.csv")
    sizes = write_digits(folder / "digits")
    new = write_new_digits(folder / "new_digits")
    print(f"{folder / 'cancer.csv'}: {rows} rows")
    print(f"{folder / 'digits'}: {sizes['train']} training and {sizes['test']} test images, 10 classes")
    print(f"{folder / 'new_digits'}: {len(new)} images to predict")


if __name__ == "__main__":
    main()
