"""The dashboard's screens; each has its own ``.tcss`` beside it."""
