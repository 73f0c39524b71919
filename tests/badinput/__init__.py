"""Corpora of bad input: stack configs (``configs``) and deploy/*.toml mistakes (``tomls``), each with the
words its message must contain."""
