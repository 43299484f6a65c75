"""The chaos nodes' timing and the checker's bounds; derived in :mod:`tests.chaos.engine`."""

TTL = 2.0  # the nodes' lease TTL (the default), s
DRAIN = 0.5  # their --drain-time, s
SWITCHOVER_TIMEOUT = 10.0  # their --switchover-timeout, s
NODE_BOUND = 10.0  # a master again within this after a node fault heals, s
ETCD_MEMBER_BOUND = 12.0  # ...after an etcd member (the leader) is lost
QUORUM_BOUND = 15.0  # ...after the quorum returns
ISOLATED_LEADER_BOUND = 15.0  # ...after the etcd leader's cut from its peers heals
