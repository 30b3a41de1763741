"""The node's chain client: artifacts, accounts, transactions, contract bindings, deployments,
the dev chain and the event watcher."""
