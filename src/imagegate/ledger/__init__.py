"""Prices and the ledger: what each image cost, booked once per client request and attempt."""
