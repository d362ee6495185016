"""Data: version datasets (manifests of content-addressed files), profile tables, diff, check out,
and move objects between the local and a remote artifact store."""
