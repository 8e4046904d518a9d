"""The names of a data set's classes, in the order of the model's outputs."""


def class_names(datamodule: object, num_classes: int) -> list[str]:
    """The data module's `class_names`, else "0", "1", ... for data sets whose classes have no names."""
    names = getattr(datamodule, "class_names", None)
    return list(names) if names else [str(index) for index in range(num_classes)]
