"""Emails and webhooks: rendering (jinja2), building, and delivery with retries.

This package knows messages, not files: callers hand it plain data.
"""
