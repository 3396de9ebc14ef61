"""What a set of weights' codes say: the codes of a split (:mod:`.codes`), and the measures and
densities built on them. Duck-typed on the model's public API (``encode``, ``decode``) and the
datamodule's (``sample_batch``, ``split_size``), so it knows neither the models nor the data."""
