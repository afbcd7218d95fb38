"""What `python -m esrgan_jax.compare` writes as text: report.json, report.md and the console table.

One row per model (bicubic, the models, the interpolation sweep), one column per metric mean (and
set metric: FID, KID, IS), then the speed. Every header carries its direction (↑ higher is better,
↓ lower is better) and the best value of each column is marked: bold in report.md, `*` on the
console.
"""

import json
import math
import os
from typing import Optional, Sequence

from esrgan_jax.evaluation.compare_models import Result
from esrgan_jax.weights import generator as generator_weights

SPEED = "seconds_per_mp"
REPORT_JSON, REPORT_MD = "report.json", "report.md"


def arrow(higher_is_better: bool) -> str:
  return "\u2191" if higher_is_better else "\u2193"


def table_metrics(results: Sequence[Result], directions: dict[str, bool]) -> list[str]:
  """The metric columns: every mean with a known direction (a `_std` spread stays in the JSON)."""
  return [m for m in results[0].means if m in directions]


def best_rows(results: Sequence[Result], directions: dict[str, bool]) -> dict[str, set[int]]:
  """Column -> the indices of the rows holding its best value (ties all marked; NaN never)."""
  columns = {**{m: [r.means[m] for r in results] for m in table_metrics(results, directions)},
             SPEED: [r.seconds_per_mp for r in results]}
  higher = {**directions, SPEED: False}
  best = {}
  for column, values in columns.items():
    finite = [v for v in values if not math.isnan(v)]
    if finite:
      target = max(finite) if higher[column] else min(finite)
      best[column] = {i for i, v in enumerate(values) if v == target}
  return best


def model_entry(result: Result) -> dict:
  candidate = result.candidate
  arch = candidate.arch
  entry = {"name": candidate.name, "checkpoint": candidate.checkpoint,
           "arch": generator_weights.arch_name(arch) if arch else "bicubic",
           "arch_record": arch, "params": result.params,
           **result.means, "per_image": result.per_image, SPEED: result.seconds_per_mp}
  if candidate.step is not None:
    entry["step"] = candidate.step
  if candidate.alpha is not None:
    entry["alpha"] = candidate.alpha
  return entry


def report(results: Sequence[Result], directions: dict[str, bool], settings: dict) -> dict:
  return {"models": [model_entry(r) for r in results],
          "directions": {m: arrow(directions[m]) for m in table_metrics(results, directions)},
          "settings": settings}


def _cell(column: str, value) -> str:
  if column == SPEED:
    return f"{value:.3f}"
  return f"{value:.4f}"


def _params(count: Optional[int]) -> str:
  return "-" if count is None else f"{count:,}"


def _rows(results, directions):
  """Header and cell strings of every row, and the best cells' (row, column) positions."""
  metrics = table_metrics(results, directions)
  headers = (["model", "arch", "params"] + [f"{m} {arrow(directions[m])}" for m in metrics]
             + [f"s/MP {arrow(False)}"])
  best = best_rows(results, directions)
  rows, marked = [], set()
  for i, result in enumerate(results):
    entry = model_entry(result)
    cells = [entry["name"], entry["arch"], _params(result.params)]
    for j, column in enumerate(metrics + [SPEED]):
      value = result.means[column] if column != SPEED else result.seconds_per_mp
      cells.append(_cell(column, value))
      if i in best.get(column, ()):
        marked.add((i, 3 + j))
    rows.append(cells)
  return headers, rows, marked


def markdown(results: Sequence[Result], directions: dict[str, bool]) -> str:
  headers, rows, marked = _rows(results, directions)
  lines = ["| " + " | ".join(headers) + " |",
           "| " + " | ".join(["---"] * 2 + ["---:"] * (len(headers) - 2)) + " |"]
  for i, cells in enumerate(rows):
    cells = [f"**{c}**" if (i, j) in marked else c for j, c in enumerate(cells)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + ("\n\n\u2191 higher is better, \u2193 lower is better; **bold**: "
                             "the best of each column. s/MP: seconds per megapixel of output, "
                             "compile time left out.\n")


def console_table(results: Sequence[Result], directions: dict[str, bool]) -> str:
  headers, rows, marked = _rows(results, directions)
  rows = [[c + ("*" if (i, j) in marked else " ") if j >= 3 else c for j, c in enumerate(cells)]
          for i, cells in enumerate(rows)]
  widths = [max(len(headers[j]) + (1 if j >= 3 else 0), *(len(r[j]) for r in rows))
            for j in range(len(headers))]
  lines = ["  ".join(h.ljust(w) if j < 2 else (h + (" " if j >= 3 else "")).rjust(w)
                     for j, (h, w) in enumerate(zip(headers, widths)))]
  for cells in rows:
    lines.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                           for j, (c, w) in enumerate(zip(cells, widths))))
  return "\n".join(line.rstrip() for line in lines) + "\n(* the best of each column)"


def write(out_dir: str, results: Sequence[Result], directions: dict[str, bool],
          settings: dict) -> None:
  with open(os.path.join(out_dir, REPORT_JSON), "w", encoding="utf-8") as f:
    json.dump(report(results, directions, settings), f, indent=2)
  with open(os.path.join(out_dir, REPORT_MD), "w", encoding="utf-8") as f:
    f.write(markdown(results, directions))
