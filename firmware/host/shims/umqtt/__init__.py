"""Host-only stand-in for micropython-lib's umqtt package (see simple.py)."""
