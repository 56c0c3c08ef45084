"""Everything that touches torch, transformers, peft and bitsandbytes. Import torch inside functions
or in these submodules only, so that the estimator path stays light."""
