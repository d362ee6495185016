"""Storage housekeeping: check the artifact store against what metadata references (fsck) and
remove what nothing references (gc)."""
