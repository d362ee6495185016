"""`mloop models card`: the card of real versions (an ad-hoc run, a template pipeline, a model
registered from nowhere), in Markdown, as a standalone HTML page, and as JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression

import mloop
from mloop.domain.model import ModelVersion
from tests.conftest import run_mloop

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by `make system`
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

GATES = """
models:
  churn:
    holdout: holdout
    label: label
    gates:
      - accuracy >= 0.8
      - accuracy >= champion + 0.01
"""

DOCS = """# Model card

<!-- a comment the card leaves out -->

## Intended use

Scores **existing customers** for the retention team's weekly call list.
Not for pricing decisions. <script>alert("x")</script>

- one list a week
- reviewed by a person

## Metrics

NUMBERS FROM THE DOCS, WHICH THE CARD TAKES FROM THE REGISTRY INSTEAD

## Limitations

Untested on customers younger than a month (`tenure < 1`).
"""


def write_data(root: Path, n: int = 400) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "group": rng.choice(["a", "b"], n)}
    )
    frame["label"] = (frame.x1 + 0.5 * frame.x2 > 0).astype(int)
    (root / "data").mkdir(exist_ok=True)
    frame.iloc[: n * 3 // 4].to_csv(root / "data/train.csv", index=False)
    frame.iloc[n * 3 // 4 :].to_csv(root / "data/holdout.csv", index=False)


def fit_and_register(c: float) -> ModelVersion:
    with mloop.start_run("fit", params={"C": c}):
        frame = mloop.data.get("train").to_pandas()
        model = LogisticRegression(C=c).fit(frame[["x1", "x2"]], frame["label"])
        mloop.log_metric("accuracy", model.score(frame[["x1", "x2"]], frame["label"]))
        return mloop.register_model(model, "churn")


def section(text: str, title: str) -> str:
    """The body of one `## ` section of the Markdown card."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert found, f"no section {title!r} in:\n{text}"
    return found.group(1)


def reviewed_versions(project: Path, cli) -> ModelVersion:
    """churn:1 promoted, churn:2 (weak) forced over its failed gates; the project has docs."""
    write_data(project)
    mloop.data.add("train", "data/train.csv", message="first export | weekly")
    mloop.data.add("holdout", "data/holdout.csv")
    (project / "mloop.yaml").write_text("project: cards\n" + GATES)
    (project / "docs").mkdir()
    (project / "docs/model_card.md").write_text(DOCS)
    fit_and_register(1.0)
    weak = fit_and_register(0.0005)
    assert cli("models", "promote", "churn:1").code == 0
    forced = cli("models", "promote", "churn:2", "--force", "--reason", "legal asked <b>now</b>")
    assert forced.code == 0, forced.err
    return weak


def test_a_card_has_lineage_data_metrics_gates_signature_events_and_the_docs(
    project: Path, cli
) -> None:
    weak = reviewed_versions(project, cli)

    done = cli("models", "card", "churn:2")
    assert done.code == 0, done.err
    card = done.out
    assert card.startswith("# Model card: churn:2\n")
    model = section(card, "Model")
    assert "- **aliases:** champion" in model and "- **flavor:** sklearn" in model
    assert f"- **digest:** {weak.digest}" in model and "- **status:** ready" in model
    intended = section(card, "Intended use")
    assert "Scores **existing customers** for the retention team" in intended
    assert "- reviewed by a person" in intended and "a comment" not in card
    assert "Untested on customers younger" in section(card, "Limitations")
    assert "NUMBERS FROM THE DOCS" not in card  # measured values come from the registry
    lineage = section(card, "Lineage")
    assert "- **code:** not in git" in lineage
    assert f"- **run:** {weak.run_id} (fit, finished, by " in lineage
    env = section(card, "Environment")
    assert "- **python:** CPython 3.11" in env
    assert f"| scikit-learn | {sklearn.__version__} |" in env
    assert f"| numpy | {np.__version__} |" in env and "| mloop | 0.1.0 |" in env
    data = section(card, "Dataset versions")
    assert "- **train:1:** 1 file, " in data and "first export \\| weekly" in data
    assert "*train:1 data/train.csv: 300 rows*" in data
    assert re.search(r"\| x1 \| float64 \| 0 \| min -?\d.*, max \d.*, mean ", data)
    assert re.search(r"\| group \| string \| 0 \| top [ab] \(\d+\), [ab] \(\d+\); 2 distinct", data)
    assert "| C | 0.0005 |" in section(card, "Params")
    assert f"| accuracy | {weak.metrics['accuracy']:.6g} |" in section(card, "Metrics")
    gates = section(card, "Gates (last promotion)")
    assert re.search(r"\| accuracy >= champion \+ 0.01 \| FAILED \| 0\.\d+ \| 1 \|", gates)
    assert "needs >=" in gates
    assert "| x1 | float64 | no |" in section(card, "Signature")
    events = section(card, "Events")
    assert "model.version_registered" in events
    assert "model.alias_set (forced promotion)" in events
    assert "reason: legal asked <b>now</b>; alias=champion" in events

    page = cli("models", "card", "churn:2", "--html", "--output", "review/card.html")
    assert page.code == 0, page.err
    assert "wrote the model card of churn:2 to review/card.html" in page.out
    html = (project / "review/card.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "legal asked &lt;b&gt;now&lt;/b&gt;" in html
    assert "<strong>existing customers</strong>" in html and "<li>one list a week</li>" in html
    assert not re.search(r"(src|href)=|<link|@import|url\(", html)  # nothing from elsewhere
    assert '<td class="failed">FAILED</td>' in html
    assert f"<dd>{weak.digest}</dd>" in html

    shown = json.loads(cli("models", "card", "churn@champion", "--json").out)
    assert shown["ref"] == "churn:2"
    titles = [s["title"] for s in shown["sections"]]
    assert titles[:3] == ["Model", "Intended use", "Limitations"]
    assert titles[-1] == "Events"


def test_the_html_card_renders_in_a_browser_and_runs_nothing(project: Path, cli) -> None:
    from playwright.sync_api import sync_playwright

    reviewed_versions(project, cli)
    assert cli("models", "card", "churn:2", "--html", "-o", "card.html").code == 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto((project / "card.html").as_uri())
            headings = page.locator("h2").all_inner_texts()
            text = page.inner_text("body")
            failed = page.locator("td.failed").first
            color = failed.evaluate("cell => getComputedStyle(cell).color")
            script_count = page.evaluate("document.scripts.length")
        finally:
            browser.close()
    assert dialogs == [] and script_count == 0  # the docs' <script> is text, never code
    assert requests == [(project / "card.html").as_uri()]  # nothing fetched from elsewhere
    assert {
        "Model",
        "Intended use",
        "Lineage",
        "Dataset versions",
        "Gates (last promotion)",
    } <= set(headings)
    assert '<script>alert("x")</script>' in text  # shown to the reviewer as written
    assert "legal asked <b>now</b>" in text
    assert color not in ("rgb(0, 0, 0)", "")  # a failed gate stands out


def test_without_docs_or_a_run_the_card_says_what_is_missing(project: Path, cli) -> None:
    model = LogisticRegression().fit(np.eye(3), [0, 1, 1])
    mloop.register_model(model, "plain", input_example=np.eye(3))
    done = cli("models", "card", "plain")
    assert done.code == 0, done.err
    assert "Not written: this project has no docs/model_card.md." in section(
        done.out, "Intended use"
    )
    lineage = section(done.out, "Lineage")
    assert "Registered outside any run: nothing records the data or code" in lineage
    assert "No dataset version was recorded." in section(done.out, "Dataset versions")
    assert "No promotion has evaluated this version's gates." in section(done.out, "Gates")
    assert "| f0 | float64 | yes |" in section(done.out, "Signature")  # no profile: nullable
    missing = cli("models", "card", "plain:7")
    assert missing.code == 1 and missing.err.startswith("error: ")


HOSTILE = '<script>alert("card")</script>'


def test_hostile_values_in_the_html_card_are_text_never_markup(project: Path, cli) -> None:
    model = LogisticRegression().fit(np.eye(3), [0, 1, 1])
    with mloop.start_run("fit", params={"note": HOSTILE, HOSTILE: 1}):
        mloop.register_model(model, "hostile", description=HOSTILE, input_example=np.eye(3))
    assert cli("models", "card", "hostile", "--html", "-o", "card.html").code == 0
    page = (project / "card.html").read_text()
    assert "<script" not in page
    escaped = "&lt;script&gt;alert(&#34;card&#34;)&lt;/script&gt;"
    assert f"<dt>description</dt><dd>{escaped}</dd>" in page
    assert f"<tr><td>note</td><td>{escaped}</td></tr>" in page
    assert f"<tr><td>{escaped}</td><td>1</td></tr>" in page


def test_a_template_pipelines_version_has_its_pipeline_steps_and_the_projects_docs(
    tmp_path: Path, cli
) -> None:
    root = tmp_path / "demo"
    assert cli("init", str(root), "--template", "classification").code == 0
    done = run_mloop("run", cwd=root)
    assert done.code == 0, done.out + done.err
    card = run_mloop("models", "card", "churn:1", cwd=root)
    assert card.code == 0, card.err
    text = card.out
    # the template's prompt, kept until a person writes the text
    prompt = "TODO (not written yet): what the model is for"
    assert prompt in section(text, "Intended use")
    assert "Where `churn` comes from" in section(text, "Data")  # ${dataset} filled in
    lineage = section(text, "Lineage")
    assert "- **pipeline:** train = pipeline:training" in lineage
    assert re.search(r"- \*\*pipeline run:\*\* [0-9a-f]{32} \(train, finished\)", lineage)
    steps = re.findall(r"^\| (\w+) \| finished \| [0-9a-f]{32} \|", lineage, re.M)
    assert steps == ["ingest", "validate", "prepare", "train", "evaluate", "register"]
    assert "*churn:1 data/churn.csv: 500 rows*" in section(text, "Dataset versions")
    params = section(text, "Params")
    assert "| C | 1.0 |" in params and "| test_size | 0.2 |" in params
    assert re.search(r"\| accuracy \| 0\.\d+ \|", section(text, "Metrics"))
