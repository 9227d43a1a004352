"""`make bench`: the benchmark that holds invoice-worker against its floors (issue 5)."""
