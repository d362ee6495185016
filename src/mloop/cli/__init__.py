"""The command line (layer 4): parse, make one service call, format the answer.

Built on argparse: the whole CLI must start in a few tens of milliseconds (`mloop data status`
on 10,000 files has ~100 ms in all), and Typer's import alone costs ~100 ms here. Each noun has
a module with `register(subparsers)`; handlers import services only when they run.
"""
