"""Supervision reports: period figures from recorded data, money against entitlement, and writers.

`build.build_report` assembles a `model.Report` from set-based SQL aggregates (`figures`,
`money`); `xlsx_writer`, `csv_writer` and `html_writer` turn it into files; `chat` gives the
short summary and chart for `/report`.
"""
