"""A PyTorch Lightning project template: data modules, Lightning modules and plain nets."""
