"""Data stage: sources (logic_minilm, hf_model, file, synthetic), corpus, extraction, cache,
streaming and normalisation. Everything downstream receives an `ActivationSet`."""
