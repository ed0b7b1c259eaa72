"""Install a previous release on the local cluster, run from that release's worktree.

`python old_release.py [SETTING=VALUE ...]` with the worktree as the working directory and
first on PYTHONPATH: the release's own harness builds its runtime, builder and operator
images (cached by content, like `up`'s) and applies its own `manifests/overlays/local`, with
those images in place of the ones the running cluster's `up` built (`install` alone would
take the cluster's). Extra settings go into the overlay's settings (e.g. a queue limit).
Prints the images as JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.cluster import images, install  # the release's, from the worktree
from tests.cluster.config import Paths


def main(argv: list[str]) -> None:
    extra = dict(arg.split("=", 1) for arg in argv)
    paths = Paths.from_env()
    # The binary itself: the release tars it into the builder image (a link would dangle).
    crane = (paths.state / "path" / "crane").resolve()
    runtime = images.runtime_image(paths)
    images.push(paths, runtime)
    built = {
        "runtime": runtime.ref,
        "builder": images.builder_image(paths, runtime, crane).ref,
        "operator": images.operator_image(paths, runtime, crane).ref,
    }
    site_settings = install.site_settings
    write_overlay = install.write_local_overlay

    def settings(info: dict[str, Any]) -> dict[str, str]:
        return {**site_settings(info), **extra}

    def overlay(info: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        write_overlay({**info, "images": {**info["images"], **built}}, *args, **kwargs)

    install.site_settings = settings
    install.write_local_overlay = overlay
    install.install(paths)
    print(json.dumps(built))


if __name__ == "__main__":
    main(sys.argv[1:])
