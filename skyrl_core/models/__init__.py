"""Model folders: tiny local models (``tiny``) and loading models/tokenizers (``loading``).

Import the sub-modules directly; this package imports nothing heavy.
"""
