"""Image classifiers: models (and, as they land, data, training and robust evaluation) on the shared core."""
