"""The shipped deployment forms, each built and run: image, compose, Kubernetes, systemd."""
