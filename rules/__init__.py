"""The declarative rules, as data: one module a file kind, and the machinery they share.

``rules.columns`` is the machinery (columns, rules, the context), ``rules.values``
how text values are read; ``rules.invoices`` holds the invoice file's columns and
codes, ``rules.payments`` the payment file's, ``rules.batches`` IremboPay's nine batch
rules. Nothing here imports the rest of the project.
"""
