"""What only development and demos need: local stack, simulated fleet, benchmarks; never imported by runtime code."""
