"""Providers: one protocol per stage (base.py), one module per vendor, model files, building."""
