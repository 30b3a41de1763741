"""Training data: accepted formats, validation before staking, and a job's training set.

`records` (one `Example` schema for alpaca, ShareGPT, OpenAI messages, text JSONL and .txt),
`validate` (file checks whose errors name file, line, field and fix), `dedup` (exact and
MinHash/LSH near duplicates, credit to the earliest contribution) and `manifest` (every kept
example with its contributor, and the Merkle data root committed on-chain). Pure functions: no
chain or storage I/O here. Import the submodules directly; this package imports nothing so that
validating a file does not load numpy.
"""
