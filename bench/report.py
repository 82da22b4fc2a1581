"""Render bench results as the README's Performance section (a Markdown table + notes).

`python bench/run.py` rewrites the README between the markers below, the way
`python -m bigmodel_cli.config.reference README.md` rewrites the config reference.
"""

from __future__ import annotations

from pathlib import Path

START = "<!-- performance:start -->\n"
END = "\n<!-- performance:end -->"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def table(benchmarks: list[dict]) -> list[str]:
    """One row per benchmark: what, target, measured figures, ratio, met or not."""
    lines = [
        "| benchmark | target | measured (median) | ratio / value | met |",
        "|---|---|---|---|---|",
    ]
    for bench in benchmarks:
        met = "met" if bench["met"] else "**not met**"
        cells = [bench["title"], bench["target"], bench["measured"], bench["value"], met]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def render(results: dict) -> str:
    """The whole Performance region: how it was measured, the table, why targets failed."""
    machine = results["machine"]
    lines = [
        f"Measured by `make bench` on {machine['cpu']} ({machine['cores']} cores, "
        f"TensorFlow {machine['tensorflow']}, {machine['precision_note']}): "
        f"{results['repetitions']} repetitions per training figure, sides alternated "
        f"(A B, B A, A B), medians shown; ratios are medians of the per-repetition "
        f"ratios of runs made in the same repetition. The whole bench took "
        f"{results['total_seconds'] / 60:.1f} minutes. Raw figures: `bench/results.json`.",
        "",
        *table(results["benchmarks"]),
        "",
    ]
    missed = [b for b in results["benchmarks"] if not b["met"] and b.get("why")]
    if missed:
        lines.append("Targets not met:")
        lines.append("")
        lines += [f"- **{b['title']}**: {b['why']}" for b in missed]
        lines.append("")
    lines += [f"- {note}" for note in results.get("notes", [])]
    return "\n".join(lines).strip()


def rewrite_readme(readme: Path, body: str) -> None:
    """Replace exactly the text between the performance markers."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: no {START.strip()} ... {END.strip()} region to rewrite")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(head + START + body + END + tail, encoding="utf-8")
