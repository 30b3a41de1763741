"""The training daemon: the job state machine and the loop that drives it.

- `store`: the persisted job records (SQLite) and their states;
- `eligibility`: whether this node can and may run a job, before it claims;
- `steps`: one idempotent step function per state (claim, data, train, attribute, upload, submit);
- `outputs`: the documents a run publishes (metrics, attribution) and atomic writes;
- `loop`: the `Daemon` that watches the chain and calls the steps in order.

Nothing is imported here, so reading a job document (`node.daemon.outputs`) does not load the loop.
"""
