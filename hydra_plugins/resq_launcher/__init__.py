"""Hydra launchers for ResQ sweeps that survive their jobs (`hydra/launcher=local`, `hydra/launcher=slurm`)."""
