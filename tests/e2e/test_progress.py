"""Long work shows a progress bar on a terminal, and nothing of it in pipes."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

from tests.conftest import MLOOP


def run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*MLOOP, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_data_add_draws_a_bar_on_a_terminal_only(project: Path) -> None:
    folder = project / "data"
    folder.mkdir()
    for i in range(300):
        (folder / f"f{i}.bin").write_bytes(os.urandom(20000))
    code, screen = run_on_a_terminal(["data", "add", "many", "data"], project)
    assert code == 0, screen
    assert "adding many" in screen  # the bar's label, drawn while it ran
    assert "many:1: 300 files" in screen

    (folder / "extra.bin").write_bytes(b"x")
    piped = subprocess.run(
        [*MLOOP, "data", "add", "many", "data"], cwd=project, capture_output=True, text=True
    )
    assert piped.returncode == 0
    assert "adding many" not in piped.stdout + piped.stderr


def test_models_predict_draws_a_bar_on_a_terminal_only(project: Path) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import mloop

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x1": rng.normal(size=20_001), "x2": rng.normal(size=20_001)})
    model = LogisticRegression().fit(frame, (frame.x1 > 0).astype(int))
    mloop.register_model(model, "churn", input_example=frame.head(100))
    frame.to_csv(project / "rows.csv", index=False)
    args = ["models", "predict", "churn:1", "-i", "rows.csv", "-o", "out.csv"]
    code, screen = run_on_a_terminal(args, project)
    assert code == 0, screen
    assert "predicting with churn:1" in screen  # the bar's label, drawn while it ran
    assert "predicted 20001 rows with churn:1" in screen

    quiet_code, quiet = run_on_a_terminal([*args, "-q"], project)
    assert quiet_code == 0 and "predicting with" not in quiet
    piped = subprocess.run([*MLOOP, *args], cwd=project, capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert "predicting with" not in piped.stdout + piped.stderr
