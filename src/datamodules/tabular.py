"""Any CSV table: numeric feature columns and one target, for classification or regression."""

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from src.checkpointing.checkpoint_io import sha256_of
from src.datamodules.csv_table import (
    TRAINABLE_MAX,
    CsvRows,
    decimal_comma_hint,
    is_missing,
    numeric_columns,
    parse_number,
    read_rows,
    unnamed,
)
from src.datamodules.in_memory import InMemoryDataModule
from src.datamodules.splits import SplitIndices, check_fractions, split_indices, stratified_split
from src.datamodules.standardisation import fit_standardisation, standardise
from src.errors import UserInputError

Task = Literal["auto", "classification", "regression"]


class TabularDataModule(InMemoryDataModule):
    """Rows of a CSV file (header line first): numeric features and one target column.

    - Features: `feature_columns`, or by default every column but the target and the
      `id_columns`. Every feature must hold numbers: a column with text is refused by name,
      in one line that says how to drop it (`feature_columns`), keep it beside the
      predictions (`id_columns`) or encode it. Text is never encoded silently: a misspelt
      number would otherwise turn a numeric column into categories without a word.
    - Task: `classification`, `regression`, or `auto`: classification when the target holds
      text labels, regression when it holds only numbers (say `classification` for numeric
      class labels such as 0/1/2). The classes are the sorted distinct labels (numeric labels
      sorted by value and named by it: `1.0` is class `1`), exposed as `class_names` and
      `num_classes` for the model, the figures and the predictions CSV.
    - Splits: seeded; stratified for classification (each split keeps the class proportions),
      plain shuffled for regression. The test split is drawn first, so `val_fraction` never
      changes it.
    - Missing cells (empty, NA, N/A, NaN, null, none, ?, #N/A and other spreadsheet errors) in
      features are refused with their line and column, or with `fill_missing: mean` replaced by
      the training split's column mean. A missing target is always refused.
    - Standardisation: features scaled to zero mean and unit variance on the training split;
      a column that is constant there (a pixel that is always 0) is only centred.
    - The checkpoint keeps what prediction needs: feature and class names, the fill values
      and the standardisation (`state_dict`), so `train.py predict` uses the training run's
      values. `csv_path` is read only when first needed: a model restored from its checkpoint
      (predict, export) never reads it, and `test` of a restored model reads it with the
      checkpoint's features, classes, fill values and standardisation: every row of a file
      other than the training one, the seeded test split of the training file.
    - Predictions (`train.py predict --input new.csv`): the `id_columns` (every input column
      when None), then `class`, `probability` and `p_<class>` per class, or `predicted_<target>`.

    Args:
        csv_path: the CSV file to train on.
        target_column: the column to predict.
        feature_columns: the input columns; None: every column but the target and the ids.
        id_columns: columns that are not features but are copied into the predictions (an id,
            a name); None copies every column of the file given to `predict`.
        task: classification, regression, or auto (text labels mean classification).
        fill_missing: `refuse` missing feature cells, or fill them with the training split's
            column `mean`.
        standardize: scale features to zero mean and unit variance, fitted on the training split.
        val_fraction: share of the rows held out for validation.
        test_fraction: share of the rows held out for testing.
        batch_size: training batch size; None (default) trains on the whole split at once.
        eval_batch_size: validation/test batch size; None is the whole split.
        seed: seed of the split and of the shuffling.
    """

    def __init__(
        self,
        csv_path: Path,
        target_column: str,
        feature_columns: list[str] | None = None,
        id_columns: list[str] | None = None,
        task: Task = "auto",
        fill_missing: Literal["refuse", "mean"] = "refuse",
        standardize: bool = True,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        check_fractions(val_fraction, test_fraction)
        self.csv_path = Path(csv_path)
        self.id_columns = list(id_columns) if id_columns is not None else None
        self.fill_missing = fill_missing
        self.standardize = standardize
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.target_name = target_column
        self.feature_columns = list(feature_columns) if feature_columns is not None else None
        self.requested_task = task
        self.fitted = False  # standardisation and fill values: fitted in setup() or loaded from a checkpoint
        self.table_read = False
        self.raw_inputs: dict[str, torch.Tensor] = {}  # per split, filled but not standardised (figures)
        self._stage: str | None = None  # what setup() last built the splits for
        self._training_split: dict[str, Any] | None = None  # a trained model's seed and fractions

    # What reading csv_path gives (or a checkpoint's state, for all but inputs and targets); read when first asked.
    _FROM_TABLE = frozenset(
        {"feature_names", "task", "class_names", "targets", "inputs", "input_shape", "num_classes"}
        | {"feature_mean", "feature_std", "fill_values"}
    )

    def __getattr__(self, name: str) -> object:
        # A restored model knows all but the rows: a regression has no num_classes to read.
        needed = {"inputs", "targets"} if self.__dict__.get("restored") else TabularDataModule._FROM_TABLE
        if name in needed and not self.__dict__.get("table_read", True):
            self._read_table()
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _read_table(self) -> None:
        """Read csv_path: its features, task, classes, inputs (N x F, NaN where a cell is missing
        and fill_missing is mean) and targets; for a restored model, with the checkpoint's
        features and classes."""
        self.table_read = True
        table = read_rows(self.csv_path, f"CSV file not found: {self.csv_path} (set data.csv_path to an existing file)")
        if self.restored:
            table.require([*self.feature_names, self.target_name], "the trained model's features and target")
            _, _, self.targets = self._read_targets(table, self.task, self.class_names)
        else:
            self._training_sha256 = sha256_of(self.csv_path)  # the training file is known by its bytes too
            self.feature_names = self._choose_features(table, self.feature_columns)
            self.task, self.class_names, self.targets = self._read_targets(table, self.requested_task)
            features = len(self.feature_names)
            self.feature_mean, self.feature_std = torch.zeros(features), torch.ones(features)
            self.fill_values = torch.zeros(features)
        self.inputs = numeric_columns(
            table,
            self.feature_names,
            allow_missing=self.fill_missing == "mean",
            missing_hint="fill it in, drop the row, or set --data.fill_missing mean (the training split's mean)",
            largest=TRAINABLE_MAX,
        )
        self._describe()

    def _describe(self) -> None:
        """The shapes LightningCLI links into the model: input size, and classes for a classifier."""
        self.input_shape: tuple[int, ...] = (len(self.feature_names),)
        if self.task == "classification":  # linked into a ClassificationModule; a regression has none
            self.num_classes = len(self.class_names)

    # --- reading the table --------------------------------------------------------------
    def _choose_features(self, table: CsvRows, feature_columns: list[str] | None) -> list[str]:
        target, ids = self.target_name, self.id_columns or []
        table.require([target], "data.target_column")
        table.require(ids, "data.id_columns")
        if target in ids:
            raise UserInputError(f"data.target_column {target!r} is also in data.id_columns; remove it from the ids")
        if feature_columns is not None:
            table.require(list(feature_columns), "data.feature_columns")
            clash = [name for name in feature_columns if name == target or name in ids]
            if clash:
                raise UserInputError(f"data.feature_columns {clash} also name the target or an id column; remove them")
            features = list(feature_columns)
        else:
            features = [name for name in table.header if not unnamed(name) and name != target and name not in ids]
            self._report_unnamed_columns(table)
        if not features:
            raise UserInputError(f"{table.path} has no feature columns besides the target {target!r} and the ids")
        text = {name: example for name in features if (example := _first_text(table, name))}
        if text:
            name, (cell, line) = next(iter(text.items()))
            if decimal_comma_hint(cell):
                raise UserInputError(
                    f"{table.path}, line {line}: column {name!r} is not a number ({cell!r}){decimal_comma_hint(cell)}"
                )
            numeric = [n for n in features if n not in text]
            listed = ", ".join(numeric if len(numeric) <= 6 else [*numeric[:3], "..."])
            raise UserInputError(
                f"{table.path}: feature column(s) {list(text)} hold text ({cell!r} in {name!r} on line {line}) and "
                f"features must be numbers: copy them into the predictions with --data.id_columns "
                f"'[{', '.join([*ids, *text])}]', leave them out with --data.feature_columns '[{listed}]', "
                "or encode them as numbers (one 0/1 column per category)"
            )
        return features

    def _report_unnamed_columns(self, table: CsvRows) -> None:
        """A column without a name is no feature: pandas' row index (`to_csv` without index=False), which
        would give away the row order, or a spreadsheet's empty trailing column. Said when it holds values."""
        filled = [
            f"{position + 1} {name!r}" if name else str(position + 1)
            for position, name in enumerate(table.header)
            if unnamed(name) and any(row[position].strip() for row in table.rows)
        ]
        if filled:
            self._announce(
                f"{table.path}: column(s) {', '.join(filled)} have no name and are not used as features (a row "
                "index, as pandas' to_csv writes one?); to use one, give it a name in the header"
            )

    def _read_targets(
        self, table: CsvRows, task: Task, known_classes: list[str] | None = None
    ) -> tuple[str, list[str], torch.Tensor]:
        """The resolved task, the class names (classification: `known_classes` when a trained
        model gives them) and the targets: class indices (int64, N) or values (float32, N x 1)."""
        target = self.target_name
        cells = table.column(target)
        for line, cell in zip(table.lines, cells, strict=True):
            if is_missing(cell):
                label = f", or rename it in the file if {cell!r} is a class" if cell.strip() else ""
                raise UserInputError(
                    f"{table.path}, line {line}: the target column {target!r} has no value ({cell!r} is read as "
                    f"missing); drop the row{label}"
                )
        numbers = [_number(cell) for cell in cells]
        all_numbers = all(value is not None for value in numbers)
        text = [(line, cell) for line, cell, value in zip(table.lines, cells, numbers, strict=True) if value is None]
        if task != "classification" and text and all(decimal_comma_hint(cell) for _, cell in text):
            line, cell = text[0]  # numbers with a decimal comma, not class labels
            raise UserInputError(
                f"{table.path}, line {line}: the target column {target!r} is not a number ({cell!r})"
                f"{decimal_comma_hint(cell)}"
            )
        if task == "auto":
            task = "regression" if all_numbers else "classification"
        if task == "regression":
            if not all_numbers:
                line, cell = next((ln, c) for ln, c, v in zip(table.lines, cells, numbers, strict=True) if v is None)
                raise UserInputError(
                    f"{table.path}: the target column {target!r} holds text ({cell!r} on line {line}), which a "
                    "regression cannot predict: train a classifier with --config configs/tabular_classification.yaml"
                )
            return task, [], numeric_columns(table, [target], largest=TRAINABLE_MAX)  # finite, as it checks
        labels = [_number_name(value) for value in numbers] if all_numbers else cells
        if known_classes is not None:
            unknown = next(((ln, c) for ln, c in zip(table.lines, labels, strict=True) if c not in known_classes), None)
            if unknown is not None:
                raise UserInputError(
                    f"{table.path}, line {unknown[0]}: the label {unknown[1]!r} is not a class the model was trained "
                    f"on ({', '.join(known_classes)})"
                )
            names = list(known_classes)
        else:
            names = [_number_name(value) for value in sorted(set(numbers))] if all_numbers else sorted(set(labels))
            if all_numbers:
                self._check_numbers_are_classes(table, numbers)  # type: ignore[arg-type]
        if len(names) < 2:
            raise UserInputError(
                f"{table.path}: the target column {target!r} holds one class only ({names[0]!r}); a classifier "
                "needs rows of at least two classes"
            )
        index = {name: position for position, name in enumerate(names)}
        return task, names, torch.tensor([index[label] for label in labels], dtype=torch.long)

    def _check_numbers_are_classes(self, table: CsvRows, numbers: list[float]) -> None:
        """Numbers used as class labels repeat (0/1, grades 1 to 5, many rows each) or count the
        classes (0 to K-1, 1 to K); a column of more than 10 other numbers with under 5 rows each is a
        quantity, which a classifier would learn as hundreds of classes."""
        distinct = sorted(set(numbers))
        codes = all(value.is_integer() for value in distinct) and distinct[-1] - distinct[0] == len(distinct) - 1
        if len(distinct) > 10 and len(numbers) < 5 * len(distinct) and not (codes and distinct[0] in (0, 1)):
            raise UserInputError(
                f"{table.path}: the target column {self.target_name!r} holds {len(distinct)} different numbers in "
                f"{len(numbers)} rows (under 5 rows each): a quantity to predict, not class labels; train a "
                "regression with --config configs/tabular_regression.yaml (class labels written as numbers "
                "are taken as such when they run 0 to K-1 or 1 to K)"
            )

    def _not_classification(self) -> UserInputError:
        return UserInputError(
            f"the target {self.target_name!r} of {self.csv_path} holds numbers, so this is a regression: train "
            "it with --config configs/tabular_regression.yaml, or say --data.task classification if the "
            "numbers are class labels"
        )

    @property
    def has_test_split(self) -> bool:
        return self.test_fraction > 0

    # --- splits, missing values and standardisation ------------------------------------
    def _check_model(self) -> None:
        """A classifier needs class labels and a regressor numbers: say which config fits."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is None or hasattr(module, "probabilities") == (self.task == "classification"):
            return
        if self.task == "classification":
            raise UserInputError(
                f"the target {self.target_name!r} of {self.csv_path} holds class labels {self.class_names[:3]} but "
                f"the model {type(module).__name__} is a regressor: use --config configs/tabular_classification.yaml"
            )
        raise self._not_classification()

    def split(self, settings: dict[str, Any] | None = None) -> SplitIndices:
        """Train, validation and test rows: stratified by class for classification. `settings` (seed,
        val_fraction, test_fraction) replace this module's: a trained model's test split is the one it
        was trained beside, whatever seed a later config gives."""
        given = {"seed": self.seed, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
        chosen = {**given, **(settings or {})}
        val, test, seed = chosen["val_fraction"], chosen["test_fraction"], chosen["seed"]
        if self.task == "classification":
            return stratified_split_indices(self.targets, val, test, seed, self.class_names)
        return split_indices(len(self.targets), val, test, seed)

    def setup(self, stage: str | None = None) -> None:
        self._check_model()
        self._stage = stage  # built again for it if a checkpoint's state arrives after the splits (load_state_dict)
        if self.splits or stage == "predict":  # prediction uses the checkpoint's fill and standardisation
            return
        if self.restored and stage == "test":
            self._setup_restored_test()
            return
        parts = self.split(self._training_split if self.restored else None)
        if not self.restored:  # a trained model keeps the fill values and standardisation it was trained with
            self._fit_preprocessing(self.inputs[parts.train])
        self.fitted = True
        self.raw_inputs = {name: self.fill(self.inputs[index]) for name, index in parts._asdict().items()}
        self.splits = {
            name: (self.transform(self.raw_inputs[name]), self.targets[index])
            for name, index in parts._asdict().items()
        }

    def _fit_preprocessing(self, train_x: torch.Tensor) -> None:
        """Fill values and standardisation from the training split's rows."""
        if self.fill_missing == "mean":
            self.fill_values = torch.nanmean(train_x, dim=0)
            empty = [name for name, value in zip(self.feature_names, self.fill_values, strict=True) if value.isnan()]
            if empty:
                raise UserInputError(
                    f"{self.csv_path}: feature column(s) {empty} have no value in any training row, so there is "
                    "no mean to fill with; drop them with data.feature_columns"
                )
            train_x = self.fill(train_x)
        if self.standardize:
            self.feature_mean, self.feature_std = fit_standardisation(train_x)

    def _setup_restored_test(self) -> None:
        """A trained model's test with its checkpoint's fill values and standardisation: the seeded test
        split of its training file, or every row of another file."""
        trained_on = self.__dict__.get("_training_sha256")  # None in checkpoints from before it was kept
        same_bytes = trained_on is not None and sha256_of(self.csv_path) == trained_on
        same_path = self.csv_path.resolve() == self.training_csv.resolve()
        if same_path and trained_on is not None and not same_bytes:
            raise UserInputError(
                f"{self.csv_path} has changed since the model was trained on it (other bytes), so its seeded test "
                "split no longer holds out the rows the model never saw: test on the file as it was trained on, or "
                "on a file of new rows only"
            )
        if same_path or same_bytes:  # moved or copied: still the split
            rows = self.split(self._training_split).test
        else:
            rows = torch.arange(len(self.targets))
            self._announce(
                f"Testing on all {len(rows)} rows of {self.csv_path} (not the training file {self.training_csv})"
            )
        self.raw_inputs = {"test": self.fill(self.inputs[rows])}
        self.splits = {"test": (self.transform(self.raw_inputs["test"]), self.targets[rows])}

    def fill(self, x: torch.Tensor) -> torch.Tensor:
        """Missing cells (NaN) replaced by the training split's column means; refused for a model
        trained to refuse them (read with a config that says `fill_missing: mean`)."""
        if self.fill_missing == "refuse" and torch.isnan(x).any():
            raise UserInputError(
                f"{self.csv_path} has missing feature cells and the model was trained to refuse them "
                "(data.fill_missing refuse): fill them in or drop those rows"
            )
        return torch.where(torch.isnan(x), self.fill_values.expand_as(x), x)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the training split's standardisation (identity when it is off)."""
        if not self.standardize:
            return x
        return standardise(x, self.feature_mean, self.feature_std)

    def input_normalization(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return (self.feature_mean, self.feature_std) if self.standardize else None

    # --- what the checkpoint keeps, so prediction needs no training split ----------------
    def state_dict(self) -> dict[str, object]:
        return {
            "task": self.task,
            "feature_names": list(self.feature_names),
            "target_name": self.target_name,
            "class_names": list(self.class_names),
            "feature_mean": self.feature_mean,
            "feature_std": self.feature_std,
            "fill_values": self.fill_values if self.fill_missing == "mean" else None,  # None: refuse missing cells
            "id_columns": self.id_columns,
            "csv_path": str(self.training_csv),
            "csv_sha256": self.__dict__.get("_training_sha256"),
            "split": self._training_split  # a trained model's, kept whatever the config says
            or {"seed": self.seed, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction},
        }

    @property
    def training_csv(self) -> Path:
        """The file the model was (or is being) trained on."""
        return Path(self.__dict__.get("_training_csv", self.csv_path))

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        set_up_from_the_files = bool(self.splits) and not self.restored
        names = ("task", "feature_names", "target_name", "class_names")
        saved = {name: state_dict[name] for name in names}
        here = {name: self.__dict__.get(name) for name in names}
        # fit, validate or test of a model not restored before: the splits were built from this CSV
        if self.splits and not self.restored and saved != here:
            changed = [name for name in names if saved[name] != here[name]]
            raise UserInputError(
                f"the checkpoint was trained with other {', '.join(changed)} than {self.csv_path} gives now "
                f"({', '.join(f'{n}: {saved[n]} vs {here[n]}' for n in changed)}); "
                "use the training run's CSV and settings"
            )
        self.task, self.feature_names, self.target_name = saved["task"], saved["feature_names"], saved["target_name"]
        self.class_names = list(saved["class_names"])
        self.feature_mean, self.feature_std = state_dict["feature_mean"], state_dict["feature_std"]
        fill = state_dict["fill_values"]
        trained_fill = "refuse" if fill is None else "mean"
        if trained_fill != self.fill_missing:
            self._announce(f"data.fill_missing is {trained_fill}, as the model was trained (not {self.fill_missing})")
            self.fill_missing = trained_fill
        self.fill_values = fill if fill is not None else torch.zeros(len(self.feature_names))
        if "csv_path" in state_dict:
            self._training_csv = Path(str(state_dict["csv_path"]))
        self._training_sha256 = state_dict.get("csv_sha256")
        self._training_split = state_dict.get("split")  # None in checkpoints from before it was kept
        self.fitted = self.restored = True
        self._describe()
        if set_up_from_the_files:  # Lightning sets the data up before it restores a checkpoint: again, as trained
            self.splits, self.raw_inputs = {}, {}
            self.setup(self._stage)


def stratified_split_indices(
    labels: torch.Tensor, val_fraction: float, test_fraction: float, seed: int, class_names: list[str]
) -> SplitIndices:
    """Seeded train/val/test indices of the same sizes as `split_indices` (the test part drawn
    first), with each class shared out in proportion, so every split keeps the class balance."""
    check_fractions(val_fraction, test_fraction)
    num_test = math.ceil(len(labels) * test_fraction)  # the sizes split_indices gives
    num_val = round(len(labels) * val_fraction)
    generator = np.random.RandomState(seed)
    test, val, train = stratified_split(
        labels,
        [num_test, num_val],
        class_names,
        lambda members: torch.from_numpy(generator.permutation(members.numpy())),
        "row(s)",
        "add rows of it, lower data.val_fraction and data.test_fraction, or drop that class",
    )
    return SplitIndices(train=train, val=val, test=test)


def _number(cell: str) -> float | None:
    try:
        return parse_number(cell)
    except ValueError:
        return None


def _number_name(value: float) -> str:
    """A numeric class label's name: 1.0 -> '1', 0.5 -> '0.5'; in full where 6 digits would give two
    labels one name (0.1 and 0.10000001)."""
    if value.is_integer():
        return str(int(value))
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _first_text(table: CsvRows, name: str) -> tuple[str, int] | None:
    """The first cell of a column that is neither missing nor a number, with its line."""
    for line, cell in zip(table.lines, table.column(name), strict=True):
        if not is_missing(cell) and _number(cell) is None:
            return cell, line
    return None
