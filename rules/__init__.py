"""The declarative rules: column rules and batch rules as data.

``rules.columns`` holds the invoice file's columns and their codes,
``rules.payments`` the payment file's, ``rules.batch`` IremboPay's nine batch
rules. Nothing here imports the rest of the project.
"""
