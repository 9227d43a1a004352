"""Rows that look like an ERP's export: the default shape of every benchmark file.

Real files do not have sequential references or a handful of expiry values, and
both flatter the product: sequential keys are B-tree appends, and repeated
values compress and cache. Here every value is still a pure function of the
row's index and the seed (so a 10M-row file is written in slices with flat
memory, and the bytes do not depend on the slicing), but through a hash:

- ``merchant_reference``: about half UUIDs (version 4 layout), half the file's
  prefix plus 14 random capital letters. Both are a bijection of the index
  (splitmix64's finaliser), so they are unique by construction, not by luck.
- ``request_expiry_date``: a unique instant per row (a bijection of the index
  onto 2^27 seconds, about four years from 2090), written with an offset from
  -05:00 to +05:30, sometimes with milliseconds, sometimes ``Z`` or a space.
- ``order_description``: long, quoted (commas, some double quotes, non-ASCII).
- optional columns filled at the rates in :data:`FILL`, blank otherwise.

No third-party random generator: polars' own wrapping ``UInt64`` arithmetic
computes the hash, which keeps the bytes the same across polars versions.
"""

from __future__ import annotations

import polars as pl

#: Share of rows with each optional column filled (the rest are blank).
FILL = {
    "customer_name": 0.92,
    "customer_phone": 0.65,
    "order_description": 0.85,
    "payment_account": 0.40,
    "link_command": 0.75,
    "return_url": 0.55,
}
#: Share of references that are UUIDs; the others are the prefix plus letters.
UUID_SHARE = 0.5
LETTERS = 14
#: The expiry instants: 2090-01-01T00:00:00Z plus a permutation of [0, 2^27) seconds.
EXPIRY_BASE = 3_786_825_600
EXPIRY_BITS = 27
MAX_ROWS = 1 << EXPIRY_BITS
#: (as written, minutes east of UTC): from -05:00 to +05:30, as ERPs around the world write.
OFFSETS = (
    ("-05:00", -300), ("-04:00", -240), ("-03:00", -180), ("-01:00", -60), ("+00:00", 0),
    ("Z", 0), ("+01:00", 60), ("+02:00", 120), ("+03:00", 180), ("+04:00", 240),
    ("+04:30", 270), ("+05:00", 300), ("+05:30", 330),
)  # fmt: skip
# Weighted choices are lists with repeats, indexed by a hash modulo their length.
CURRENCIES = ("USD",) * 6 + ("RWF",) * 6 + ("EUR",) * 3 + ("KES",) * 3 + ("JOD",) * 2
LANGUAGES = ("en",) * 9 + ("fr",) * 4 + ("rw",) * 4 + ("ar",) * 2 + ("EN",)
LINK_COMMANDS = ("PURCHASE",) * 4 + ("AUTHORIZATION",)
FIRST = (
    ("Amina", "amina"), ("José", "jose"), ("Jean-Paul", "jeanpaul"), ("Zoë", "zoe"),
    ("Mohammed", "mohammed"), ("Aline", "aline"), ("Eric", "eric"), ("Grace", "grace"),
    ("Olivier", "olivier"), ("Fatima", "fatima"), ("Chloé", "chloe"), ("Samuel", "samuel"),
    ("Noura", "noura"), ("Patrick", "patrick"), ("Divine", "divine"), ("Yusuf", "yusuf"),
)  # fmt: skip
LAST = (
    ("Uwimana", "uwimana"), ("Nshimiyimana", "nshimiyimana"), ("Müller", "mueller"),
    ("O'Brien", "obrien"), ("Al-Hassan", "alhassan"), ("Mukamana", "mukamana"),
    ("Habimana", "habimana"), ("Dubois", "dubois"), ("García", "garcia"), ("Kamau", "kamau"),
    ("Otieno", "otieno"), ("Haddad", "haddad"), ("Ndayisaba", "ndayisaba"),
    ("Lefèvre", "lefevre"), ("Mutesi", "mutesi"), ("Okafor", "okafor"),
)  # fmt: skip
DOMAINS = (
    "example.com", "example.org", "mail.example.net", "example.rw", "corp.example.co.ke",
    "example.jo", "students.example.ac.rw", "example.fr",
)  # fmt: skip
SEPARATORS = (".", "_", "", ".")
PHONE_PREFIXES = ("+2507", "+2507", "+2507", "+2547", "+9627", "07", "+3306")
LEADS = (
    "Invoice for order #", "Subscription renewal, contract ", "Pro forma ",
    "Monthly service fee, account ", "School fees, term 2, student ", "Balance due on PO-",
)  # fmt: skip
ITEMS = (
    "2 x office chairs, black", 'cable 12" HDMI, 3 pieces', "annual maintenance, on-site",
    "consulting hours (March, April)", "delivery to Kigali, Gasabo", "water & electricity",
    "café supplies: beans, milk, cups", "licence renewal - 25 seats", "spare parts: filters, belts",
    "transport Nairobi-Mombasa", "freight, insurance and handling", "رسوم الخدمة الشهرية",
    "frais de dossier, TVA comprise", "hosting plan \"Business\", 12 months",
)  # fmt: skip
TAILS = ("VAT incl.", "due on receipt", "thank you for your business", "net 30", "")
HEX = "0123456789abcdef"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MASK64 = (1 << 64) - 1

# Streams: each random column draws its own hash of (row, stream).
(
    S_SHAPE, S_AMOUNT, S_AMOUNT_DIGITS, S_CURRENCY, S_LANGUAGE, S_FIRST, S_LAST, S_SEP,
    S_EMAIL_DIGITS, S_DOMAIN, S_OFFSET, S_FRACTION, S_NAME, S_PHONE, S_PHONE_DIGITS, S_DESC,
    S_LEAD, S_ITEM1, S_ITEM2, S_ITEM3, S_TAIL, S_ACCOUNT, S_LINK, S_URL, S_UUID_LOW, S_SPACE,
) = range(26)  # fmt: skip
STREAMS = 32


def splitmix(x: int) -> int:
    """splitmix64 of a Python int: the per-seed keys."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _u(value: int) -> pl.Expr:
    return pl.lit(value, pl.UInt64)


def mix(x: pl.Expr) -> pl.Expr:
    """splitmix64's finaliser on ``UInt64``: a bijection, so distinct in means distinct out."""
    z = x.xor(x // _u(1 << 30)) * _u(0xBF58476D1CE4E5B9)
    z = z.xor(z // _u(1 << 27)) * _u(0x94D049BB133111EB)
    return z.xor(z // _u(1 << 31))


def _permute27(x: pl.Expr, key: int) -> pl.Expr:
    """A bijection of [0, 2^27): add, xor-shift, multiply by odd numbers, all modulo 2^27."""
    m = _u(1 << EXPIRY_BITS)
    z = (x + _u(key % (1 << EXPIRY_BITS))) % m
    z = z.xor(z // _u(1 << 14))
    z = (z * _u(0x5BD1E99)) % m
    z = z.xor(z // _u(1 << 13))
    z = (z * _u(0x1B873593)) % m
    return z.xor(z // _u(1 << 14))


def _pick(choices: tuple[str, ...], h: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(list(choices))).gather(h % _u(len(choices)))


def _filled(h: pl.Expr, share: float) -> pl.Expr:
    return (h % _u(10_000)) < _u(round(share * 10_000))


def _digits(h: pl.Expr, width: int) -> pl.Expr:
    return (h % _u(10**width)).cast(pl.String).str.zfill(width)


class Realistic:
    """Rows of an ERP-like invoice file for one seed and reference prefix."""

    name = "realistic"

    def __init__(self, seed: int, prefix: str, notification: str) -> None:
        self.key = splitmix(seed)
        self.prefix = prefix
        self.notification = notification

    def _h(self, stream: int) -> pl.Expr:
        return mix(pl.col("u") * _u(STREAMS) + _u(stream) + _u(self.key))

    def _unique(self, salt: int) -> pl.Expr:
        """A hash of the index alone: unique per row."""
        return mix(pl.col("u") + _u(splitmix(self.key ^ salt)))

    def reference(self) -> pl.Expr:
        z = self._unique(1)
        letters = [_pick(tuple(ALPHABET), z // _u(26**k)) for k in range(LETTERS)]
        prefixed = pl.concat_str([pl.lit(self.prefix + "-"), *letters])
        return pl.when(_filled(self._h(S_SHAPE), UUID_SHARE)).then(self._uuid()).otherwise(prefixed)

    def _uuid(self) -> pl.Expr:
        """Version 4, variant 10: the 64 unique bits fill every free nibble of the first 16."""
        high, low = self._unique(2), self._h(S_UUID_LOW)

        def nibbles(z: pl.Expr, first: int, count: int) -> list[pl.Expr]:
            return [_pick(tuple(HEX), z // _u(16 ** (15 - k))) for k in range(first, first + count)]

        variant = _pick(("8", "9", "a", "b"), low)
        return pl.concat_str(
            [
                *nibbles(high, 0, 8),
                pl.lit("-"),
                *nibbles(high, 8, 4),
                pl.lit("-4"),
                *nibbles(high, 12, 3),
                pl.lit("-"),
                variant,
                *nibbles(high, 15, 1),
                *nibbles(low, 1, 2),
                pl.lit("-"),
                *nibbles(low, 4, 12),
            ]
        )

    def expiry(self) -> pl.Expr:
        seconds = (_permute27(pl.col("u"), self.key) + _u(EXPIRY_BASE)).cast(pl.Int64)
        h = self._h(S_OFFSET)
        offset = pl.lit(pl.Series([m for _, m in OFFSETS], dtype=pl.Int64)).gather(
            h % _u(len(OFFSETS))
        )
        local = pl.from_epoch(seconds + offset * 60, time_unit="s")
        separator = pl.when(_filled(self._h(S_SPACE), 0.1)).then(pl.lit(" ")).otherwise(pl.lit("T"))
        fraction = pl.when(_filled(self._h(S_FRACTION), 0.35)).then(
            pl.lit(".") + _digits(self._h(S_FRACTION) // _u(10_000), 3)
        )
        return pl.concat_str(
            [
                local.dt.strftime("%Y-%m-%d"),
                separator,
                local.dt.strftime("%H:%M:%S"),
                fraction.fill_null(""),
                _pick(tuple(text for text, _ in OFFSETS), h),
            ]
        )

    def _description(self) -> pl.Expr:
        third = pl.when(_filled(self._h(S_ITEM3), 0.6)).then(
            pl.lit(", ") + _pick(ITEMS, self._h(S_ITEM3) // _u(10_000))
        )
        tail = _pick(TAILS, self._h(S_TAIL))
        text = pl.concat_str(
            [
                _pick(LEADS, self._h(S_LEAD)),
                _digits(self._h(S_LEAD) // _u(64), 6),
                pl.lit(", "),
                _pick(ITEMS, self._h(S_ITEM1)),
                pl.lit(", "),
                _pick(ITEMS, self._h(S_ITEM2)),
                third.fill_null(""),
                pl.when(tail != "").then(pl.lit(", ") + tail).otherwise(pl.lit("")),
            ]
        )
        return text.str.slice(0, 150).str.strip_chars_end(" ,")

    def _optional(self, column: str, stream: int, value: pl.Expr) -> pl.Expr:
        share = 1.0 if column == "customer_phone" and "SMS" in self.notification else FILL[column]
        return pl.when(_filled(self._h(stream), share)).then(value).alias(column)

    def frame(self, start: int, end: int) -> pl.DataFrame:
        """Rows ``start``..``end`` (global indices) with column ``i`` and every invoice column."""
        if end > MAX_ROWS:
            raise ValueError(f"at most {MAX_ROWS:,} rows: the expiry instants would repeat")
        index = pl.DataFrame({"i": pl.int_range(start, end, dtype=pl.Int64, eager=True)})
        first, last = self._h(S_FIRST) % _u(len(FIRST)), self._h(S_LAST) % _u(len(LAST))
        names = pl.Series([f for f, _ in FIRST]), pl.Series([a for _, a in FIRST])
        surnames = pl.Series([f for f, _ in LAST]), pl.Series([a for _, a in LAST])
        lo = self._h(S_AMOUNT_DIGITS) % _u(5)
        low_bound = pl.lit(pl.Series([10**k for k in range(2, 7)], dtype=pl.UInt64)).gather(lo)
        amount = low_bound + self._h(S_AMOUNT) % (low_bound * _u(9))
        email_digits = pl.when(_filled(self._h(S_EMAIL_DIGITS), 0.4)).then(
            (self._h(S_EMAIL_DIGITS) // _u(10_000) % _u(1000)).cast(pl.String)
        )
        return (
            # Lazy, so that a hash used twice is computed once (common subexpressions).
            index.lazy()
            .with_columns(u=pl.col("i").cast(pl.UInt64))
            .select(
                pl.col("i"),
                pl.lit("PAYMENT_LINK").alias("service_command"),
                self.reference().alias("merchant_reference"),
                amount.cast(pl.String).alias("amount"),
                _pick(CURRENCIES, self._h(S_CURRENCY)).alias("currency"),
                _pick(LANGUAGES, self._h(S_LANGUAGE)).alias("language"),
                pl.concat_str(
                    [
                        pl.lit(names[1]).gather(first),
                        _pick(SEPARATORS, self._h(S_SEP)),
                        pl.lit(surnames[1]).gather(last),
                        email_digits.fill_null(""),
                        pl.lit("@"),
                        _pick(DOMAINS, self._h(S_DOMAIN)),
                    ]
                ).alias("customer_email"),
                self.expiry().alias("request_expiry_date"),
                pl.lit(self.notification).alias("notification_type"),
                self._optional(
                    "customer_name",
                    S_NAME,
                    pl.lit(names[0]).gather(first) + pl.lit(" ") + pl.lit(surnames[0]).gather(last),
                ),
                self._optional(
                    "customer_phone",
                    S_PHONE,
                    _pick(PHONE_PREFIXES, self._h(S_PHONE_DIGITS) // _u(10**8))
                    + _digits(self._h(S_PHONE_DIGITS), 8),
                ),
                self._optional("order_description", S_DESC, self._description()),
                self._optional(
                    "payment_account",
                    S_ACCOUNT,
                    pl.lit("RW-ACC-") + _digits(self._h(S_ACCOUNT) // _u(10_000) % _u(40), 7),
                ),
                self._optional(
                    "link_command", S_LINK, _pick(LINK_COMMANDS, self._h(S_LINK) // _u(10_000))
                ),
                self._optional(
                    "return_url",
                    S_URL,
                    pl.lit("https://shop.example.com/orders/")
                    + _digits(self._h(S_URL) // _u(10_000), 9)
                    + pl.lit("/paid?utm_source=erp&lang=")
                    + _pick(LANGUAGES, self._h(S_LANGUAGE)).str.to_lowercase(),
                ),
            )
            .collect()
        )

    def references(self, indices: list[int]) -> list[str]:
        """The references of rows at ``indices`` (for the duplicate-reference bad rows)."""
        frame = pl.DataFrame({"u": pl.Series(indices, dtype=pl.UInt64)})
        return frame.select(self.reference()).to_series().to_list()
