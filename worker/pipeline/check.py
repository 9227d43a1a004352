"""``invoice-worker validate``'s report: what a kind's check found, as a person reads it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

_CODE = re.compile(r"([A-Z_]+)\(([a-z_]+)\)")
#: Words for the codes every kind shares; a kind adds its own (``Report.messages``).
COMMON_MESSAGES = {"REQUIRED": "a value is required", "TOO_LONG": "longer than allowed"}


@dataclass
class Report:
    kind: str
    rows: int = 0
    rejected: int = 0
    #: Rows naming what exists already with the same content: nothing to create, no error.
    exists: int = 0
    unknown_columns: list[str] = field(default_factory=list)
    #: (line_number, codes as ``CODE(column);...``) of each rejected row.
    errors: list[tuple[int, str]] = field(default_factory=list)
    #: Errors already worded (batch requests name invoices, not columns).
    notes: list[str] = field(default_factory=list)
    #: What the file is made of: rows, or batch requests.
    unit: str = "rows"
    #: ``CODE(column)`` (or ``CODE``) -> why, for the lines printed.
    messages: Mapping[str, str] = field(default_factory=dict)

    def _why(self, code: str, column: str) -> str:
        return (
            self.messages.get(f"{code}({column})")
            or self.messages.get(code)
            or COMMON_MESSAGES.get(code, "")
        )

    def lines(self, name: str, limit: int) -> Iterator[str]:
        shown = 0
        for note in self.notes:
            if shown < limit:
                yield f"{name}:{note}"
            shown += 1
        for line, codes in self.errors:
            for code, column in _CODE.findall(codes):
                if shown < limit:
                    why = self._why(code, column)
                    yield f"{name}:{line}: {column}: {code}" + (f" ({why})" if why else "")
                shown += 1
        if shown > limit:
            yield f"... {shown - limit} more errors"
        if self.unknown_columns:
            yield f"{name}: columns ignored: {', '.join(self.unknown_columns)}"
        valid = self.rows - self.rejected - self.exists
        exists = f", {self.exists} exist already (EXISTS)" if self.exists else ""
        yield (
            f"{name}: {self.kind} file, {self.rows} {self.unit}, "
            f"{valid} valid{exists}, {self.rejected} with errors"
        )
