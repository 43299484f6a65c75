"""vipmon: tells a load balancer which node of a cluster holds the master role."""

__version__ = "0.1.0"
