"""One podman set-up and one image build, shared by every deploy test of a run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import podman as pm


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> pm.Podman:
    return pm.engine(tmp_path_factory.mktemp("podman-build"))


@pytest.fixture(scope="session")
def images(podman: pm.Podman) -> Iterator[pm.Images]:
    built = pm.build_images(podman)
    try:
        yield built
    finally:
        podman.run("rmi", "--force", built.vipmon, check=False, timeout=120)
