"""A simulated fleet of air boxes and parking sensors for the demo, tests and bench."""
