"""Runs: the config, checkpoints, the training loop, a trained run, sample files, locks and ranks."""
