"""The proof-of-contribution blockchain (SPEC §6-7): provider nodes on CometBFT, arbitration, ledger.

Layout: `crypto` (keys, canonical JSON), `genesis`, `contribution` (Shapley values), `consensus`
(pure rules: state, block instance, effects, tolerance), `allocator` (the proposer's student), and
`abci/` (the ABCI++ application `app`, its `store`, the `wire` transactions, the `node` process beside
cometbft, `network` (init/up/down), `arbiter`, `verify`, `client`); `api/` serves the HTTP API.
"""
