"""Model layer: imports only torch, einops and its own modules."""
