"""`train.py serve`: a trained checkpoint behind HTTP with LitServe (batching, health, a demo page)."""
