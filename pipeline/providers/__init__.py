"""One protocol per stage (base.py) and its implementations."""
