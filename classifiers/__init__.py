"""Image classifiers on the shared core: data (``classifiers.data``), models (``classifiers.models``), the papers'
training methods and recipes (``classifiers.training``) and robustness evaluation (``classifiers.evaluation``)."""
