"""The domain (layer 0): mloop's vocabulary as frozen typed records, and the pure rules on them.

Nothing here does I/O or imports a framework; everything above may import it. Records are frozen
dataclasses: cheap to build in hot paths (a CLI listing, a metric flush) and still validated into
and out of JSON by the wire layers.
"""
