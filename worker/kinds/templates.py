"""``invoice-worker template KIND --format xlsx``: a kind's template as a workbook.

The same header and example row as the CSV template, the header row frozen, and the
columns with fixed values offering them as a dropdown.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.worksheet.datavalidation import DataValidation

from rules import values
from worker.kinds import context
from worker.pipeline.kind import FileKind
from worker.settings import Settings

#: The sheet the dropdowns' values are kept on (hidden): a list typed into the validation
#: itself is comma-separated, and ``EMAIL,SMS`` is one value.
LISTS_SHEET = "lists"
#: Columns written as number cells: a whole amount is a number in a spreadsheet.
NUMBER_COLUMNS = frozenset({"amount"})


def choices(settings: Settings) -> dict[str, list[str]]:
    """The values each fixed-value column offers; ``rules/`` decides what is accepted
    (tests check that every value offered here is)."""
    ctx = context.for_settings(settings)
    return {
        "service_command": ["PAYMENT_LINK"],
        "currency": sorted(ctx.currencies),
        "language": list(values.LANGUAGES),
        "notification_type": [*values.NOTIFICATIONS, "EMAIL,SMS"],
        "link_command": ["AUTHORIZATION", "PURCHASE"],
    }


def write_xlsx(kind: FileKind, expiry: datetime, settings: Settings, target: Path) -> Path:
    header, example = kind.template(expiry)
    book = Workbook()
    sheet = book.active
    assert sheet is not None  # a new workbook has its one sheet
    sheet.title = kind.name
    sheet.append(header)
    sheet.append(
        [
            int(value) if name in NUMBER_COLUMNS and value.isdigit() else value
            for name, value in zip(header, example, strict=True)
        ]
    )
    sheet.freeze_panes = "A2"
    for index, name in enumerate(header, start=1):
        sheet.column_dimensions[sheet.cell(1, index).column_letter].width = max(12, len(name) + 2)
    offered = {name: v for name, v in choices(settings).items() if name in header}
    if offered:
        lists = book.create_sheet(LISTS_SHEET)
        lists.sheet_state = "hidden"
        for number, (name, options) in enumerate(offered.items(), start=1):
            letter = lists.cell(1, number).column_letter
            for row, option in enumerate(options, start=1):
                lists.cell(row, number, option)
            column = sheet.cell(1, header.index(name) + 1).column_letter
            # A warning, not a stop: the rules also take other spellings ("email, sms").
            rule = DataValidation(
                type="list",
                formula1=f"{LISTS_SHEET}!${letter}$1:${letter}${len(options)}",
                allow_blank=True,
                errorStyle="warning",
                error=f"{name}: one of the values offered",
            )
            rule.add(f"{column}2:{column}1048576")
            sheet.add_data_validation(rule)
    target.parent.mkdir(parents=True, exist_ok=True)
    book.save(target)
    return target
