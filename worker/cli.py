"""The ``invoice-worker`` command: a thin click layer over the library."""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from worker import log
from worker import settings as settings_module
from worker.errors import FileRejected, InvoiceWorkerError
from worker.settings import Settings
from worker.state import leases

EXIT_OK = 0
EXIT_INVALID_ROWS = 1
EXIT_UNUSABLE = 2
#: Seconds a one-off command waits for an unreachable PostgreSQL (a service waits on).
CLI_WAIT = 10.0

pass_settings = click.make_pass_decorator(Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="INVOICE_WORKER_HOME",
    help="Home folder (inbox/, outbox/, ...). Default: the current directory.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="One key=value line per event (text) or one JSON object per line.",
)
@click.option("--log-level", default="INFO", show_default=True)
@click.version_option(package_name="invoice-worker")
@click.pass_context
def main(ctx: click.Context, home: Path | None, log_format: str | None, log_level: str) -> None:
    """Batch invoicing with a file-drop interface.

    Drop invoice files into inbox/; results appear in outbox/, originals in
    archive/ or rejected/, reports in mail/ (or over SMTP).

    \b
    Examples:
      invoice-worker run                 # watch ./inbox until Ctrl-C
      invoice-worker run --once          # process what is there, then exit
      invoice-worker template invoices > inbox/.march.csv.tmp
      invoice-worker template invoices --format xlsx --output march.xlsx
      invoice-worker validate march.csv  # check a file (CSV or workbook) without processing it
    """
    try:
        settings = settings_module.load(home=home, log_format=log_format)
    except InvoiceWorkerError as exc:
        raise click.ClickException(str(exc)) from exc
    log.setup(settings.log_format, log_level)
    leases.set_host(settings.host_name)
    ctx.obj = settings


def _service(settings: Settings, **kwargs: object) -> None:
    from worker.service import run as service

    try:
        sys.exit(service.run(settings, **kwargs))  # type: ignore[arg-type]
    except InvoiceWorkerError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option(
    "--once", is_flag=True, help="Process everything in inbox/ to a final state, then exit 0."
)
@pass_settings
def run(settings: Settings, once: bool) -> None:
    """Watcher and workers in one foreground process (embedded Redis unless a URL is set).

    Stops cleanly on Ctrl-C or SIGTERM: jobs in flight finish first.
    """
    _service(settings, once=once)


@main.command()
@pass_settings
def watch(settings: Settings) -> None:
    """Only the watcher: claims files and enqueues jobs (pair it with `worker`)."""
    _service(settings, watch=True, work=False)


@main.command()
@pass_settings
def worker(settings: Settings) -> None:
    """Only the workers: run the jobs the watcher enqueues."""
    _service(settings, watch=False, work=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--limit", default=50, show_default=True, help="Rows with errors to print.")
@pass_settings
def validate(settings: Settings, file: Path, limit: int) -> None:
    """Check FILE without processing it.

    Prints FILE:LINE: column: CODE for each error. Exit 0 when every row is
    valid, 1 when some rows are not, 2 when the file cannot be used at all.
    """
    from worker import kinds

    with tempfile.TemporaryDirectory() as work:
        try:
            report = kinds.check(settings, file, Path(work))
        except FileRejected as why:
            where = f":{why.line}" if why.line else ""
            click.echo(f"{file.name}{where}: {why.code}: {why.message}", err=True)
            sys.exit(EXIT_UNUSABLE)
    for line in report.lines(file.name, limit):
        click.echo(line)
    sys.exit(EXIT_OK if report.rejected == 0 else EXIT_INVALID_ROWS)


def _kind_names() -> list[str]:
    from worker.kinds import KINDS

    return KINDS.names


@main.command()
@click.argument("kind", type=click.Choice(_kind_names()))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    default="csv",
    show_default=True,
    help="csv: printed, or written to --output. xlsx: a workbook, written to --output.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write (needed with --format xlsx).",
)
@pass_settings
def template(settings: Settings, kind: str, fmt: str, output: Path | None) -> None:
    """The template of KIND: its header and an example row.

    \b
    Examples:
      invoice-worker template invoices > inbox/.march.csv.tmp
      invoice-worker template invoices --format xlsx --output march.xlsx
    """
    from worker.kinds import KINDS

    file_kind = KINDS.get(kind)
    assert file_kind is not None  # click checked the choice
    expiry = datetime.now(UTC) + timedelta(days=30)
    if fmt == "xlsx":
        from worker.kinds import templates

        if output is None:
            raise click.UsageError("--format xlsx writes a workbook: name it with --output FILE")
        templates.write_xlsx(file_kind, expiry, settings, output)
        click.echo(f"Wrote {output}", err=True)
    elif output is not None:
        output.write_text(file_kind.csv_template(expiry), encoding="utf-8")
    else:
        click.echo(file_kind.csv_template(expiry), nl=False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array of files.")
@click.option("--limit", default=50, show_default=True)
@pass_settings
def status(settings: Settings, as_json: bool, limit: int) -> None:
    """Files with their states and counts, newest first.

    EXISTS counts the rows that name an invoice with the same content: neither
    valid (nothing was created for them) nor rejected.
    """
    from worker import state
    from worker.state import files

    rows = []
    if settings.database_url or settings.state_db.exists():
        try:
            rows = files.listing(state.connect(settings, wait=CLI_WAIT), limit)
        except InvoiceWorkerError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("No files yet.")
        return
    click.echo(
        f"{'ID':>5}  {'STATE':<18} {'KIND':<9} {'ROWS':>8} {'VALID':>8} {'REJ':>6} "
        f"{'EXISTS':>6} {'CREATED':>8}  NAME"
    )
    for r in rows:
        name = json.dumps(r["name"], ensure_ascii=False)[1:-1]
        note = f"  [{r['error_code']}]" if r["error_code"] else ""
        click.echo(
            f"{r['id']:>5}  {r['state']:<18} {r['kind'] or '-':<9} {r['rows'] or 0:>8} "
            f"{r['valid'] or 0:>8} {r['rejected'] or 0:>6} {r['existing'] or 0:>6} "
            f"{r['created'] or 0:>8}  {name}{note}"
        )


@main.command()
@click.argument("file_id", type=int)
@pass_settings
def approve(settings: Settings, file_id: int) -> None:
    """Release FILE_ID, validated and waiting for approval, to be processed."""
    from worker import state
    from worker.pipeline.stages import approve as approve_file

    try:
        approve_file(state.connect(settings, wait=CLI_WAIT), file_id)
    except InvoiceWorkerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"File {file_id} approved; the running worker processes it within seconds.")


@main.command()
@click.argument("file_id", type=int)
@pass_settings
def retry(settings: Settings, file_id: int) -> None:
    """Take FILE_ID, rejected as a whole, again from rejected/ with today's configuration.

    It keeps its id, ends in archive/ or rejected/ again, and its new results are
    named apart from the earlier ones (e.g. march.csv.retry1.results.csv).

    \b
    Examples:
      invoice-worker status              # the id, with the code it was rejected for
      invoice-worker retry 42            # after adding an account or raising max_error_rate
    """
    from worker import state
    from worker.intake import claim

    settings.ensure_folders()
    try:
        claim.retry(settings, state.connect(settings, wait=CLI_WAIT), file_id)
    except InvoiceWorkerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"File {file_id} is taken again: a running worker processes it within seconds,"
        " or the next `invoice-worker run`."
    )


if __name__ == "__main__":
    main()
