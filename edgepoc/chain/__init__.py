"""The proof-of-contribution blockchain (SPEC §6-7): provider nodes, consensus, arbitration, ledger.

Layout (names after CometBFT): `crypto` (keys, canonical JSON), `types` (TaskRequest, Vote, Block,
Commit, Evidence, Proposal), `genesis`, `contribution` (Shapley values), `consensus` (pure rules),
`state_machine` (Tendermint rounds), `store` (SQLite), `node` (one provider's process), `arbiter`,
`allocator`, `network` (local testnets), `verify` (chain verify from the store).
"""
