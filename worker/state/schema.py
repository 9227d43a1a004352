"""The state database's schema, as numbered migrations applied in order on open.

A migration, once released, is never edited: a change is a new migration. Each one
has its PostgreSQL port, under the same name, in :mod:`worker.state.schema_pg`
(``tests/test_schema.py`` fails until it has).
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("invoice_worker")


@migrations()
def m001_schema(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            claimed_path TEXT NOT NULL UNIQUE,
            sha256 TEXT,
            size INTEGER,
            kind TEXT,
            state TEXT NOT NULL,
            duplicate_of INTEGER REFERENCES files(id),
            error_code TEXT,
            error_message TEXT,
            error_line INTEGER,
            rows INTEGER,
            valid INTEGER,
            rejected INTEGER,
            created INTEGER,
            chunks INTEGER,
            number_base INTEGER,
            unknown_columns TEXT,
            result_name TEXT,
            final_path TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            lease_until REAL,
            enqueued_at REAL,
            received_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            approved_at TEXT
        );
        CREATE INDEX files_sha256 ON files(sha256);
        CREATE INDEX files_state ON files(state);
        CREATE TABLE transitions (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id),
            state TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE invoices (
            invoice_number INTEGER PRIMARY KEY,
            merchant_reference TEXT UNIQUE,
            transaction_id TEXT UNIQUE,
            file_id INTEGER NOT NULL,
            line_number INTEGER,
            type TEXT NOT NULL,
            status TEXT NOT NULL,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            language TEXT,
            customer_email TEXT,
            customer_name TEXT,
            customer_phone TEXT,
            notification_type TEXT,
            expires_at TEXT,
            order_description TEXT,
            payment_account TEXT,
            link_command TEXT,
            return_url TEXT,
            token TEXT NOT NULL UNIQUE,
            payment_link_url TEXT NOT NULL,
            batch_number INTEGER,
            description TEXT,
            email_state TEXT,
            sms_state TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            paid_at TEXT
        );
        CREATE INDEX invoices_file ON invoices(file_id, line_number);
        CREATE INDEX invoices_email ON invoices(email_state) WHERE email_state = 'pending';
        CREATE INDEX invoices_batch ON invoices(batch_number) WHERE batch_number IS NOT NULL;
        CREATE TABLE chunks (
            file_id INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            created INTEGER NOT NULL,
            done_at TEXT NOT NULL,
            PRIMARY KEY (file_id, chunk)
        );
        CREATE TABLE late_rejections (
            file_id INTEGER NOT NULL,
            line_number INTEGER NOT NULL,
            code TEXT NOT NULL,
            PRIMARY KEY (file_id, line_number)
        );
        CREATE TABLE payments (
            payment_reference TEXT PRIMARY KEY,
            file_id INTEGER NOT NULL,
            line_number INTEGER NOT NULL,
            invoice_number INTEGER NOT NULL,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            paid_at TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            file_id INTEGER,
            recipients TEXT NOT NULL,
            subject TEXT NOT NULL,
            message BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        CREATE INDEX outbox_pending ON outbox(state, next_attempt_at);
        CREATE TABLE webhooks (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            invoice_number INTEGER NOT NULL,
            body BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        """
    )


@migrations()
def m002_batches_and_payments(db: sqlite_utils.Database) -> None:
    # A batch request's decision commits with the batch it creates (or with nothing),
    # so a re-run answers a decided request from here instead of deciding it again.
    db.executescript(
        """
        CREATE TABLE batch_requests (
            file_id INTEGER NOT NULL,
            position INTEGER NOT NULL,
            transaction_id TEXT,
            status TEXT NOT NULL,
            http_status INTEGER NOT NULL,
            invoice_number INTEGER,
            result TEXT NOT NULL,
            decided_at TEXT NOT NULL,
            PRIMARY KEY (file_id, position)
        );
        CREATE INDEX payments_file ON payments(file_id);
        CREATE INDEX payments_invoice ON payments(invoice_number);
        CREATE INDEX webhooks_pending ON webhooks(state, next_attempt_at);
        """
    )


@migrations()
def m003_customer_emails(db: sqlite_utils.Database) -> None:
    """Customer emails are sent from the invoices table itself: each invoice is its own
    outbox row (email_state pending -> sending -> sent | failed). ``leases`` holds the
    one sender allowed at a time, so the configured rate is the rate of the system."""
    db.executescript(
        """
        ALTER TABLE invoices ADD COLUMN email_attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE invoices ADD COLUMN email_next_at REAL NOT NULL DEFAULT 0;
        ALTER TABLE invoices ADD COLUMN email_first_at REAL;
        ALTER TABLE invoices ADD COLUMN email_sent_at TEXT;
        ALTER TABLE invoices ADD COLUMN email_error TEXT;
        -- Replaces invoices_email: the same rows, in the order they fall due, so the
        -- claim reads the first due rows and stops instead of sorting every pending one.
        DROP INDEX invoices_email;
        CREATE INDEX invoices_email_due ON invoices(email_next_at)
            WHERE email_state = 'pending';
        CREATE INDEX invoices_email_sending ON invoices(file_id) WHERE email_state = 'sending';
        CREATE INDEX invoices_email_failed ON invoices(file_id) WHERE email_state = 'failed';
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            until REAL NOT NULL
        );
        CREATE VIEW sms_pending AS
            SELECT invoice_number, file_id, customer_phone, customer_name, language,
                   amount, currency, expires_at, order_description, payment_link_url
            FROM invoices WHERE sms_state = 'pending';
        """
    )


@migrations()
def m004_result_names(db: sqlite_utils.Database) -> None:
    """Each new file asks whether its result name is taken: an index, not a scan of
    every file ever received."""
    db.executescript("CREATE INDEX files_result_name ON files(result_name);")


@migrations()
def m005_cheaper_invoice_indexes(db: sqlite_utils.Database) -> None:
    """Two indexes cost most of what creating an invoice costs, for nothing in return.

    - ``token UNIQUE``: 128 random bits are unique by themselves (two equal among
      10M tokens: about 1e-25), nothing looks an invoice up by its token, and random
      keys write all over a B-tree: this index took a third of a 1M-row load.
    - ``transaction_id UNIQUE`` held a NULL entry for every single invoice; only
      batch invoices have one, so the unique index is now partial.

    SQLite cannot drop a column constraint, so the table is rebuilt (SQLite's documented
    procedure: new table, copy, drop, rename, then its indexes and view again).
    """
    columns = ", ".join(r[1] for r in db.execute("PRAGMA table_info(invoices)").fetchall())
    for sql in (
        "DROP VIEW sms_pending",
        """
        CREATE TABLE invoices_new (
            invoice_number INTEGER PRIMARY KEY,
            merchant_reference TEXT UNIQUE,
            transaction_id TEXT,
            file_id INTEGER NOT NULL,
            line_number INTEGER,
            type TEXT NOT NULL,
            status TEXT NOT NULL,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            language TEXT,
            customer_email TEXT,
            customer_name TEXT,
            customer_phone TEXT,
            notification_type TEXT,
            expires_at TEXT,
            order_description TEXT,
            payment_account TEXT,
            link_command TEXT,
            return_url TEXT,
            token TEXT NOT NULL,
            payment_link_url TEXT NOT NULL,
            batch_number INTEGER,
            description TEXT,
            email_state TEXT,
            sms_state TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            paid_at TEXT,
            email_attempts INTEGER NOT NULL DEFAULT 0,
            email_next_at REAL NOT NULL DEFAULT 0,
            email_first_at REAL,
            email_sent_at TEXT,
            email_error TEXT
        )
        """,
        # Copied by name: a column the new table lacked would fail the migration, which
        # then rolls back whole, rather than be dropped.
        "INSERT INTO invoices_new ({columns}) SELECT {columns} FROM invoices",
        "DROP TABLE invoices",
        "ALTER TABLE invoices_new RENAME TO invoices",
        "CREATE UNIQUE INDEX invoices_transaction ON invoices(transaction_id)"
        " WHERE transaction_id IS NOT NULL",
        "CREATE INDEX invoices_file ON invoices(file_id, line_number)",
        "CREATE INDEX invoices_batch ON invoices(batch_number) WHERE batch_number IS NOT NULL",
        "CREATE INDEX invoices_email_due ON invoices(email_next_at) WHERE email_state = 'pending'",
        "CREATE INDEX invoices_email_sending ON invoices(file_id) WHERE email_state = 'sending'",
        "CREATE INDEX invoices_email_failed ON invoices(file_id) WHERE email_state = 'failed'",
        """
        CREATE VIEW sms_pending AS
            SELECT invoice_number, file_id, customer_phone, customer_name, language,
                   amount, currency, expires_at, order_description, payment_link_url
            FROM invoices WHERE sms_state = 'pending'
        """,
    ):
        db.execute(sql.format(columns=columns))


@migrations()
def m006_final_paths(db: sqlite_utils.Database) -> None:
    """An original's place in archive/ or rejected/ is chosen against the names other
    files were given (and may not have moved to yet): an index, not a scan."""
    db.executescript("CREATE INDEX files_final_path ON files(final_path);")


@migrations()
def m007_claimed_mtime(db: sqlite_utils.Database) -> None:
    """A claimed file's modification time, beside its size: a file that changes after its
    claim (a writer still had it open) is read again, not processed from what was read."""
    db.executescript("ALTER TABLE files ADD COLUMN mtime_ns INTEGER;")


@migrations()
def m008_sftp(db: sqlite_utils.Database) -> None:
    """SFTP pull and push. A fetch is recorded once its local copy is whole, so a crash
    before the remote file is removed never downloads it a second time; an upload is
    recorded so each version of a result file goes to the server once."""
    db.executescript(
        """
        CREATE TABLE sftp_fetches (
            id INTEGER PRIMARY KEY,
            remote_path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            local_path TEXT NOT NULL,
            file_id INTEGER REFERENCES files(id),
            state TEXT NOT NULL,
            archived_to TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX sftp_fetches_open ON sftp_fetches(state) WHERE state != 'removed';
        CREATE TABLE sftp_uploads (
            name TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            remote_path TEXT NOT NULL,
            uploaded_at TEXT NOT NULL
        );
        """
    )


@migrations()
def m010_cancellations(db: sqlite_utils.Database) -> None:
    """Cancellation files. An invoice is cancelled once ever, so its number is the key:
    a chunk applied twice (a crash, then a restart) cannot record it twice. A cancelled
    batch's invoices are released (``batch_number`` NULL); ``released`` keeps which they
    were. A webhook names its event, now that there are two (paid, cancelled)."""
    db.executescript(
        """
        CREATE TABLE cancellations (
            invoice_number INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id),
            line_number INTEGER NOT NULL,
            type TEXT NOT NULL,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            reason TEXT,
            released TEXT NOT NULL DEFAULT '[]',
            cancelled_at TEXT NOT NULL
        );
        CREATE INDEX cancellations_file ON cancellations(file_id);
        ALTER TABLE webhooks ADD COLUMN event TEXT NOT NULL DEFAULT 'invoice.paid';
        """
    )


@migrations()
def m011_status_files(db: sqlite_utils.Database) -> None:
    """Status files and retries. A trigger records each status change of an invoice in
    the transaction that makes it, whatever code makes it (payments, cancellations), as
    it is then; a status file is recorded with the changes it takes before it is
    written, so a crash rewrites the same file. A retry records the move of a rejected
    original back to a claim folder with the state change, so a crash finishes it."""
    db.executescript(
        """
        CREATE TABLE status_files (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            changes INTEGER NOT NULL,
            recorded_at REAL NOT NULL,
            written_at TEXT
        );
        CREATE TABLE status_changes (
            id INTEGER PRIMARY KEY,
            invoice_number INTEGER NOT NULL,
            merchant_reference TEXT,
            type TEXT NOT NULL,
            status TEXT NOT NULL,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            changed_at TEXT NOT NULL,
            payment_reference TEXT,
            batch_number INTEGER,
            status_file INTEGER REFERENCES status_files(id)
        );
        CREATE INDEX status_changes_file ON status_changes(status_file);
        CREATE TRIGGER invoices_status_changed AFTER UPDATE OF status ON invoices
        WHEN NEW.status IS NOT OLD.status AND NEW.status IN ('PAID', 'CANCELLED')
        BEGIN
            INSERT INTO status_changes (invoice_number, merchant_reference, type, status,
                amount, currency, changed_at, payment_reference, batch_number)
            VALUES (NEW.invoice_number, NEW.merchant_reference, NEW.type, NEW.status,
                NEW.amount, NEW.currency, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
                CASE WHEN NEW.status = 'PAID' THEN coalesce(
                    (SELECT payment_reference FROM payments
                     WHERE invoice_number = NEW.invoice_number ORDER BY rowid DESC LIMIT 1),
                    (SELECT payment_reference FROM payments
                     WHERE invoice_number = NEW.batch_number ORDER BY rowid DESC LIMIT 1))
                END,
                NEW.batch_number);
        END;
        CREATE TABLE retries (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id),
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            requested_at TEXT NOT NULL,
            moved_at TEXT
        );
        CREATE INDEX retries_file ON retries(file_id);
        """
    )


@migrations()
def m012_existing_rows(db: sqlite_utils.Database) -> None:
    """Sending a corrected file again (SPEC 13). A row naming an invoice with the same
    content is recorded with the chunk it is in, in the chunk's transaction, so a results
    file written again after a crash shows it and a re-run records it once. ``existing``
    counts them per file, apart from the valid and rejected rows. Invoices store every
    compared field but ``service_command``, which is PAYMENT_LINK for each of them."""
    db.executescript(
        """
        CREATE TABLE existing_rows (
            file_id INTEGER NOT NULL,
            line_number INTEGER NOT NULL,
            invoice_number INTEGER NOT NULL,
            PRIMARY KEY (file_id, line_number)
        );
        ALTER TABLE files ADD COLUMN existing INTEGER;
        """
    )


@migrations()
def m013_decided_chunks(db: sqlite_utils.Database) -> None:
    """A payment or cancellation chunk's decisions (its result rows, as Arrow IPC) are
    stored with its done mark, in its transaction, rather than beside its chunk under
    ``var/``: a host that dies mid-file takes its ``var/`` with it, and the host that
    finishes the file must still tell what each applied row became."""
    db.executescript(
        """
        CREATE TABLE decided_chunks (
            file_id INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            results BLOB NOT NULL,
            PRIMARY KEY (file_id, chunk)
        );
        """
    )
