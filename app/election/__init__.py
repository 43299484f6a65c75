"""The election: the lease deadline rule, the elector, and the thread it runs on."""
