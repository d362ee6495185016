"""HTTP interfaces (layer 4): the model-serving app (`inference.py`, run by `workers.py`).

Thin like the CLI: parse the request, call one service (`mloop.services.serving`), format the
answer. Every error a client can cause is a 4xx with `{"error": {"code", "message", "hint"}}`;
a 500 is a bug.
"""
