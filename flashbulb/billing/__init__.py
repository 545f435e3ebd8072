"""Billing: what a call costs and who paid it.

    money.py   integer micro-USD and its USD text
    prices.py  list prices per model, the operator's [prices] schedules (the `PriceBook`)
    quotes.py  a request's quote (the hold) and its charge
    ledger.py  accounts' books: holds, settle/release, grants, refunds, referrals
    usage.py   the usage record of every call, summaries and exports

Nothing here knows a wire format or runs a model; the gateway calls it around each request.
"""
