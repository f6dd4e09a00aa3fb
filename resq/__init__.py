"""ResQ suite: value factorization for cooperative multi-agent RL."""
