"""Model cards: one document a risk or compliance reviewer can read without running anything.

A card gathers what the registry, the run store and the event log already know about a version
(lineage, data versions with their profiles, params, metrics, gate results, signature,
environment, events) and the prose only people can write — intended use, limitations — from the
project's `docs/model_card.md`, the file the project templates create. The card is built once as
plain sections and rendered to Markdown or to a standalone HTML page, so both say the same thing;
the HTML escapes every value and loads nothing from elsewhere.
"""

from __future__ import annotations

import html
import re
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import Markup

from mloop.domain.dataset import ColumnProfile, DatasetVersion
from mloop.domain.event import Event
from mloop.domain.gate import GateRecord
from mloop.domain.lineage import Environment
from mloop.domain.model import ColumnSpec, ModelVersion
from mloop.domain.records import human_size
from mloop.domain.run import Run
from mloop.errors import MloopError, NotFound
from mloop.services.registry.models import ModelService

if TYPE_CHECKING:
    import jinja2

DOCS_FILE = Path("docs") / "model_card.md"
INTENDED_USE = "Intended use"
MEASURED = ("metrics",)  # docs sections whose numbers the card takes from the registry
COMMON_PACKAGES = ("numpy", "pandas", "mloop")
FLAVOR_PACKAGES = {"sklearn": ("scikit-learn", "skops", "scipy"), "onnx": ("onnx", "onnxruntime")}


@dataclass(frozen=True, slots=True)
class CardTable:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True, slots=True)
class CardSection:
    """One heading: fields (label, value), prose (a small Markdown subset), then tables."""

    title: str
    fields: tuple[tuple[str, str], ...] = ()
    text: str = ""
    tables: tuple[CardTable, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelCard:
    ref: str
    generated: float
    sections: tuple[CardSection, ...]


def stamp(when: float | None) -> str:
    return "-" if when is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def docs_sections(text: str) -> dict[str, str]:
    """The `## ` sections of a Markdown file by title, HTML comments removed.

    Example:
        >>> docs_sections("# Card\\n## Intended use\\nScoring.\\n")
        {'Intended use': 'Scoring.'}
    """
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    found: dict[str, str] = {}
    title: str | None = None
    lines: list[str] = []
    for line in [*text.splitlines(), "## "]:
        if line.startswith("## "):
            if title:
                found[title] = "\n".join(lines).strip()
            title, lines = line[3:].strip(), []
        elif title is not None:
            lines.append(line)
    return found


def _profile(column: ColumnProfile) -> str:
    if column.kind == "numeric":
        return f"min {_number(column.min)}, max {_number(column.max)}, mean {_number(column.mean)}"
    if column.top:
        shown = ", ".join(f"{value} ({count})" for value, count in column.top[:3])
        more = f"; {column.distinct} distinct" if column.distinct is not None else ""
        return f"top {shown}{more}"
    return "-"


class CardBuilder:
    """Builds cards from the registry and the project's docs (see the module docstring)."""

    def __init__(self, models: ModelService, root: Path) -> None:
        self.models = models
        self.metadata = models.metadata
        self.root = root

    def build(self, ref: str) -> ModelCard:
        """The card of a version (`NAME:V`, `NAME@ALIAS` or `NAME` for the latest).

        Example:
            >>> to_markdown(cards.card("churn:3")).splitlines()[0]  # doctest: +SKIP
            '# Model card: churn:3'
        """
        version = self.models.get(ref)
        run = self._run(version.run_id)
        pipeline = self._run(run.parent_id) if run is not None and run.parent_id else None
        metrics = sorted(version.metrics.items())
        sections = [
            self._model(version),
            *self._prose(version, run, pipeline),
            self._lineage(version, run, pipeline),
            self._environment(version),
            self._datasets(version),
            _listing("Params", ("PARAM", "VALUE"), sorted(version.params.items())),
            _listing("Metrics", ("METRIC", "VALUE"), [(k, _number(x)) for k, x in metrics]),
            self._gates(version),
            self._signature(version),
            self._events(version),
        ]
        return ModelCard(version.ref, time.time(), tuple(sections))

    def _run(self, run_id: str | None) -> Run | None:
        try:
            return self.metadata.runs.get(run_id) if run_id else None
        except NotFound:
            return None

    def _model(self, v: ModelVersion) -> CardSection:
        fields = [
            ("model", v.ref),
            ("aliases", ", ".join(v.aliases) or "none"),
            ("status", v.status),
            ("flavor", v.flavor),
            ("digest", v.digest),
            ("size", human_size(v.size)),
            ("registered", f"{stamp(v.created)} by {v.user}"),
            ("description", v.description),
            ("loading", f"needs trust: {why}" if (why := self.models.trust_reason(v)) else ""),
        ]
        return CardSection("Model", tuple((k, value) for k, value in fields if value))

    def _prose(self, v: ModelVersion, run: Run | None, pipeline: Run | None) -> list[CardSection]:
        path = self.root / DOCS_FILE
        if not path.is_file():
            note = (
                f"Not written: this project has no {DOCS_FILE.as_posix()}. Write what the model "
                "is for, who uses its predictions, and what it must not be used for there, "
                f"under a `## {INTENDED_USE}` heading."
            )
            return [CardSection(INTENDED_USE, text=note)]
        names = ", ".join(sorted({ref.name for ref in v.datasets})) or "-"
        made_by = pipeline or run
        text = string.Template(path.read_text(encoding="utf-8")).safe_substitute(
            model=v.ref,
            dataset=names,
            run_id=made_by.id if made_by else "-",
            step_run_id=run.id if run else "-",
            date=stamp(v.created),
        )
        found = docs_sections(text)
        intended = found.pop(INTENDED_USE, "") or (
            f"Not written: {DOCS_FILE.as_posix()} has no `## {INTENDED_USE}` section."
        )
        kept = [(t, body) for t, body in found.items() if t.lower() not in MEASURED and body]
        return [CardSection(title, text=body) for title, body in [(INTENDED_USE, intended), *kept]]

    def _lineage(self, v: ModelVersion, run: Run | None, pipeline: Run | None) -> CardSection:
        code = "not in git" if v.code.commit is None else v.code.commit
        if v.code.commit and v.code.diff_digest:
            code += f" with uncommitted changes (digest {v.code.diff_digest})"
        fields: list[tuple[str, str]] = [("code", code)]
        if run is None:
            gone = f"The run {v.run_id} is no longer in the metadata store."
            text = "Registered outside any run: nothing records the data or code that made it."
            return CardSection("Lineage", tuple(fields), text=gone if v.run_id else text)
        fields.append(("run", f"{run.id} ({run.name}, {run.status.value}, by {run.user})"))
        fields.append(("run time", f"{stamp(run.started)} to {stamp(run.ended)}"))
        tables: tuple[CardTable, ...] = ()
        if pipeline is not None:
            name = pipeline.pipeline or pipeline.name
            target = pipeline.tags.get("mloop.target", "-")
            fields.append(("pipeline run", f"{pipeline.id} ({name}, {pipeline.status.value})"))
            fields.append(("pipeline", f"{name} = {target}"))
            steps = tuple(_step(c) for c in self.metadata.runs.children(pipeline.id))
            tables = (CardTable(("STEP", "STATUS", "RUN", "NOTE"), steps, "steps"),)
        return CardSection("Lineage", tuple(fields), tables=tables)

    def _environment(self, v: ModelVersion) -> CardSection:
        if v.environment is None:
            return CardSection("Environment", text="No environment was recorded.")
        try:
            env = self.metadata.environments.get(v.environment)
        except NotFound:
            return CardSection("Environment", (("digest", v.environment),), "Not in the store.")
        fields: tuple[tuple[str, str], ...] = (("digest", env.digest), ("python", env.python))
        fields += (("packages", str(env.package_count)),)
        versions = recorded_packages(self.models, env)
        if versions is None:
            return CardSection("Environment", fields, "The package list could not be read.")
        wanted = (*FLAVOR_PACKAGES.get(v.flavor, ()), *COMMON_PACKAGES)
        rows = tuple((name, versions.get(name, "not installed")) for name in wanted)
        return CardSection(
            "Environment", fields, tables=(CardTable(("PACKAGE", "VERSION"), rows, "key"),)
        )

    def _datasets(self, v: ModelVersion) -> CardSection:
        if not v.datasets:
            return CardSection("Dataset versions", text="No dataset version was recorded.")
        fields: list[tuple[str, str]] = []
        tables: list[CardTable] = []
        for ref in v.datasets:
            try:
                found: DatasetVersion = self.metadata.datasets.get_version(ref.name, ref.version)
            except MloopError:
                fields.append((str(ref), "not in the store"))
                continue
            files = f"{found.file_count} file{'s' if found.file_count != 1 else ''}"
            added = f"added {stamp(found.created)} by {found.user}"
            note = f": {found.message}" if found.message else ""
            fields.append((str(ref), f"{files}, {human_size(found.total_size)}, {added}{note}"))
            for table in found.tables:
                rows = tuple((c.name, c.dtype, str(c.nulls), _profile(c)) for c in table.columns)
                caption = f"{ref} {table.path}: {table.rows} rows"
                tables.append(CardTable(("COLUMN", "TYPE", "NULLS", "PROFILE"), rows, caption))
        return CardSection("Dataset versions", tuple(fields), tables=tuple(tables))

    def _gates(self, v: ModelVersion) -> CardSection:
        if not v.gates:
            return CardSection("Gates", text="No promotion has evaluated this version's gates.")
        rows = tuple(_gate(g) for g in v.gates)
        table = CardTable(("GATE", "RESULT", "OBSERVED", "REQUIRED", "DETAIL"), rows)
        return CardSection("Gates (last promotion)", tables=(table,))

    def _signature(self, v: ModelVersion) -> CardSection:
        if v.signature is None:
            return CardSection("Signature", text="No input signature: requests are not checked.")
        sides = (("inputs", v.signature.inputs), ("outputs", v.signature.outputs))
        tables = tuple(
            CardTable(("COLUMN", "TYPE", "NULLABLE"), tuple(_column(c) for c in specs), side)
            for side, specs in sides
            if specs
        )
        return CardSection("Signature", tables=tables)

    def _events(self, v: ModelVersion) -> CardSection:
        events = sorted(self.metadata.events.find(f"model/{v.ref}", limit=500), key=lambda e: e.at)
        return _listing("Events", ("WHEN", "WHO", "ACTION", "DETAIL"), [_event(e) for e in events])


def _step(run: Run) -> tuple[str, ...]:
    cached = run.tags.get("mloop.cached_from")
    note = f"reused from {cached}" if cached else ""
    return (run.tags.get("mloop.step", run.name), run.status.value, run.id, note)


def _gate(g: GateRecord) -> tuple[str, ...]:
    result = "passed" if g.passed else "FAILED"
    return (g.gate, result, _number(g.observed), _number(g.required), g.reason)


def _column(c: ColumnSpec) -> tuple[str, ...]:
    return (c.name, c.dtype, "yes" if c.nullable else "no")


def _event(e: Event) -> tuple[str, ...]:
    forced = e.action == "model.alias_set" and e.reason  # only --force records a reason
    details = [f"reason: {e.reason}"] if e.reason else []
    details += [f"{k}={value}" for k, value in sorted(e.details.items()) if value is not None]
    action = f"{e.action} (forced promotion)" if forced else e.action
    return (stamp(e.at), e.actor, action, "; ".join(details))


def recorded_packages(models: ModelService, env: Environment) -> dict[str, str] | None:
    """An environment's stored package list as {name: version}; None if it cannot be read."""
    try:
        listing = models.artifacts.read_bytes(env.packages_digest).decode()
    except (MloopError, OSError, UnicodeDecodeError):
        return None
    return dict(line.partition("==")[::2] for line in listing.splitlines() if line)


def _listing(title: str, columns: tuple[str, ...], items: Sequence[tuple[str, ...]]) -> CardSection:
    if not items:
        return CardSection(title, text=f"No {title.lower()} were recorded.")
    return CardSection(title, tables=(CardTable(columns, tuple(items)),))


# rendering -----------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(card: ModelCard) -> str:
    """The card as Markdown (GitHub-flavoured tables).

    Example:
        >>> to_markdown(ModelCard("churn:3", 0.0, ())).splitlines()[0]
        '# Model card: churn:3'
    """
    out = [f"# Model card: {card.ref}", "", f"Generated by mloop on {stamp(card.generated)}."]
    for section in card.sections:
        blocks = []
        if section.fields:
            blocks.append("\n".join(f"- **{k}:** {_cell(v)}" for k, v in section.fields))
        if section.text:
            blocks.append(section.text)
        for table in section.tables:
            lines = [f"*{_cell(table.caption)}*", ""] if table.caption else []
            lines.append("| " + " | ".join(table.columns) + " |")
            lines.append("|" + "---|" * len(table.columns))
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
            blocks.append("\n".join(lines))
        out += ["", f"## {section.title}", "", "\n\n".join(blocks)]
    return "\n".join(out).rstrip() + "\n"


STYLE = (  # inline: the page loads nothing from elsewhere
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 "
    "1rem;color:#222} h1{font-size:1.6rem} h2{border-bottom:1px solid "
    "#ccc;padding-bottom:.2rem;margin-top:2rem} table{border-collapse:collapse;margin:.5rem 0 "
    "1rem;font-size:13px} caption{text-align:left;font-style:italic} th,td{border:1px solid "
    "#ccc;padding:.2rem .5rem;text-align:left;vertical-align:top} th{background:#f3f3f3} "
    "dt{font-weight:600;float:left;clear:left;width:9rem} dd{margin-left:10rem} "
    "code{background:#f3f3f3;padding:0 .2rem} .failed{color:#b00;font-weight:600} "
)


def _inline(text: str) -> Markup:
    """Escape, then the two inline marks the docs use: `code` and **bold** (markup the
    template must not escape again)."""
    escaped = html.escape(text, quote=True)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    marked = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    return Markup(marked)  # noqa: S704 -- escaped above; only the two marks are markup


def _prose_blocks(text: str) -> list[tuple[str, list[Markup]]]:
    """Paragraphs (`p`), `- ` lists (`ul`) and `### ` headings (`h3`), each item escaped text
    with `_inline`'s marks: what the template shows of the docs' prose."""
    blocks: list[tuple[str, list[Markup]]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines and lines[0].startswith("#"):
            blocks.append(("h3", [_inline(lines.pop(0).lstrip("#").strip())]))
        if lines and all(line.startswith(("- ", "* ")) for line in lines):
            blocks.append(("ul", [_inline(item[2:]) for item in lines]))
        elif lines:
            blocks.append(("p", [_inline(" ".join(lines))]))
    return blocks


def page_templates(package: str) -> jinja2.Environment:
    """The Jinja2 templates in `package`'s `templates/` folder, for a standalone page: every
    value autoescaped, an unknown name an error rather than blank text."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader(package),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def to_html(card: ModelCard) -> str:
    """The card as one standalone HTML page (`templates/card.html.j2`, autoescaped): inline
    style, no scripts, every value escaped.

    Example:
        >>> "<!DOCTYPE html>" in to_html(ModelCard("churn:3", 0.0, ()))
        True
    """
    template = page_templates("mloop.services.registry").get_template("card.html.j2")
    return template.render(
        card=card, generated=stamp(card.generated), style=STYLE, prose=_prose_blocks
    )
