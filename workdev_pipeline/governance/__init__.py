"""Data governance, plain Python (the Dagster assets call it): the retention policy applied to the event store
and to the warehouses (:mod:`.retention`), and GDPR erasure with its ledger (:mod:`.erasure`). Each warehouse
engine takes part through :class:`.warehouse.GovernedWarehouse`."""
