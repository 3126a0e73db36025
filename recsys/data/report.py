"""Validation report: errors block an import, warnings don't, notes only say what the import will do (a column
used as the item id). Each names file, column and rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``"1 row"``, ``"2 rows"``, ``"1,024 rows"``: a count with its noun in the right number."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


# what an import counts (``CatalogBundle.counts``), in the order a replacement's losses are listed
COUNTED = (
    ("items", "item"),
    ("users", "user"),
    ("interactions", "interaction"),
    ("items_with_image", "item with a picture"),
)


def replacement_losses(
    current: dict[str, Any],
    incoming: dict[str, Any],
    current_columns: dict[str, list[str]] | None = None,
    incoming_columns: dict[str, list[str]] | None = None,
) -> list[str]:
    """What importing a bundle with ``incoming`` counts over a stored dataset with ``current`` counts (its
    manifest's) takes away: one phrase per count that falls, e.g. ``"pictures: 720 items have one now, 0 in
    this bundle"``, and, given each side's used columns per table (``{"users": ["age_band"], ...}``), one per
    table that loses columns (a users.csv left out drops the columns the fairness report groups by, with the
    same number of users). Empty when nothing is lost. A re-import that forgot the pictures .zip, or a
    trimmed export, replaces a good dataset silently otherwise."""
    losses = []
    for key, noun in COUNTED:
        now, then = current.get(key), incoming.get(key)
        if not isinstance(now, int) or not isinstance(then, int) or then >= now:
            continue
        if key == "items_with_image":
            losses.append(f"pictures: {counted(now, noun, 'items with a picture')} now, {then:,} in this bundle")
        else:
            losses.append(f"{counted(now, noun)} now, {then:,} in this bundle")
    for table in ("items", "interactions", "users"):
        before = (current_columns or {}).get(table) or []
        after = set((incoming_columns or {}).get(table) or [])
        gone = [column for column in before if column not in after]
        if gone and incoming_columns is not None:
            what = "the users table" if table == "users" and not after else f"the {table} table's columns"
            losses.append(f"{what} ({', '.join(gone)}) not in this bundle")
    return losses


def used_columns(schema: dict[str, Any]) -> dict[str, list[str]]:
    """The columns a schema (``schema.json``'s form) uses per table, ids and ignored columns left out."""
    out: dict[str, list[str]] = {}
    for table in ("items", "interactions", "users"):
        roles = schema.get(table)
        if isinstance(roles, dict):
            out[table] = [str(c) for c, r in roles.items() if r not in ("id", "ignore")]
    return out


ERROR = "error"
WARNING = "warning"
NOTE = "note"


@dataclass
class Issue:
    level: str  # "error", "warning" or "note"
    code: str  # stable machine-readable name, e.g. "duplicate_item_ids"
    message: str  # one plain sentence a person can act on
    file: str | None = None
    column: str | None = None
    rows: list[Any] = field(default_factory=list)  # example row numbers (1-based, as in a spreadsheet) or values

    def format(self) -> str:
        return f"[{self.level}] {self.describe()}"

    def describe(self) -> str:
        """The issue as a sentence without its level tag (for a page that says the level its own way)."""
        where = ", ".join(part for part in (self.file, f"column '{self.column}'" if self.column else None) if part)
        rows = ""
        if len(self.rows) == 1:
            rows = f" (row {self.rows[0]})"
        elif self.rows:
            rows = f" (e.g. rows {', '.join(map(str, self.rows[:5]))})"
        return f"{where + ': ' if where else ''}{self.message}{rows}"


@dataclass
class ValidationReport:
    issues: list[Issue] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.level == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.level == WARNING]

    @property
    def notes(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.level == NOTE]

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(
        self, code: str, message: str, file: str | None = None, column: str | None = None, rows: Sequence[Any] = ()
    ) -> None:
        self.issues.append(Issue(ERROR, code, message, file, column, list(rows)[:10]))

    def warning(
        self, code: str, message: str, file: str | None = None, column: str | None = None, rows: Sequence[Any] = ()
    ) -> None:
        self.issues.append(Issue(WARNING, code, message, file, column, list(rows)[:10]))

    def note(self, code: str, message: str, file: str | None = None, column: str | None = None) -> None:
        self.issues.append(Issue(NOTE, code, message, file, column))

    def codes(self, level: str | None = None) -> list[str]:
        return [issue.code for issue in self.issues if level is None or issue.level == level]

    def format(self) -> str:
        lines = [issue.format() for issue in self.errors + self.warnings + self.notes]
        if not lines:
            lines = ["no problems found"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": [asdict(issue) for issue in self.errors],
            "warnings": [asdict(issue) for issue in self.warnings],
            "notes": [asdict(issue) for issue in self.notes],
            "counts": dict(self.counts),
        }


class BundleError(ValueError):
    """Raised when a bundle cannot be used; carries the full report."""

    def __init__(self, report: ValidationReport):
        self.report = report
        first = report.errors[0].format() if report.errors else "invalid bundle"
        more = f" (+{len(report.errors) - 1} more errors)" if len(report.errors) > 1 else ""
        super().__init__(first + more)
