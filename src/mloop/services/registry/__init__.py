"""The model registry (layer 2): register model versions with their lineage and signature,
point aliases at them, promote through gates, load them safely, and describe them."""
