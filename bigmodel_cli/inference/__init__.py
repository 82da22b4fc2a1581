"""Using a trained run: `evaluate` scores it on a split, `predict` answers new inputs,
`generate` continues text from a language model. Each opens the run the same way (its
config, vocabulary and normalization) and never trains."""
